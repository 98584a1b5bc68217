/**
 * The client `fastify-ws-rest/client` (client/), run in Node with `WebSocket` from `ws`:
 *
 * - against the example server in-process (`/ws/`, `/ws/stream/`, `/ws/multiplex/`):
 *   CRUD, error rejections, subscriptions and unsubscribe, multiplexed streams, streamed
 *   lists, and a forced disconnect (server-side sockets terminated) after which the
 *   client reconnects by itself, sends what was queued and restores its subscriptions;
 * - against a bare app with a custom action held at a gate: a request timing out;
 * - against a scripted WebSocket server (plain `ws`, frames written by the test): what
 *   the real server cannot be made to do on cue — frames in flight at the moment of a
 *   drop, bad frames, and the resumable-subscription contract (resume 201/200/410, `seq`
 *   numbering, duplicates, gaps), beside resuming against the example (/ws/jwt/, whose
 *   user is the principal) and its absence on /ws/ (no principal: onRefetch).
 *
 * No sleeps: every wait is an awaited event bounded by `within`.
 */
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import WebSocket, { WebSocketServer, type WebSocket as ServerSocket } from 'ws'
import {
  createClient,
  looksIdempotent,
  WsRestClient,
  WsRestClosedError,
  WsRestConnectionLostError,
  WsRestError,
  WsRestTakenOverError,
  WsRestTimeoutError,
  type ClientEvents,
  type ClientOptions,
  type SubscriptionEvent,
  type WebSocketConstructor
} from '../client/index.js'
import { backoffDelay, RECONNECT_DEFAULTS } from '../client/backoff.js'
import { action } from '../index.js'
import { deferred, gate, within } from './helpers/async.js'
import { Item } from './helpers/item.js'
import { startApp, startExample } from './helpers/server.js'

/** A subtest, as tap passes it to a `t.test` callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

/** Fast reconnection, so a test does not wait on the default 250 ms backoff. */
const FAST = { initialDelay: 5, maxDelay: 20 }

/** A client on `url` (with `ws` and fast reconnects unless overridden), closed in teardown. */
function open (t: Test, url: string, options: ClientOptions = {}): WsRestClient {
  const client = createClient(url, { WebSocket, reconnect: FAST, ...options })
  t.teardown(async () => await client.close())
  return client
}

/** The next time `client` emits `event` (register before causing it). */
async function next<K extends keyof ClientEvents> (client: WsRestClient, event: K): Promise<Parameters<ClientEvents[K]>> {
  const d = deferred<Parameters<ClientEvents[K]>>()
  const off = client.on(event, ((...args: Parameters<ClientEvents[K]>) => { off(); d.resolve(args) }) as ClientEvents[K])
  return await within(d.promise, `client event "${event}"`)
}

/** The value `promise` rejects with; fails (by throwing) when it resolves instead. */
async function rejection (promise: Promise<unknown>, what: string): Promise<any> {
  const outcome = await within(promise.then((value) => ({ value }), (reason: unknown) => ({ reason })), what)
  if (!('reason' in outcome)) throw new Error(`${what}: expected a rejection, resolved with ${JSON.stringify(outcome.value)}`)
  return outcome.reason
}

/** Values in arrival order, each awaitable (bounded) by the order it is asked for. */
class Inbox<T> {
  readonly all: T[] = []
  private taken = 0
  private readonly waiting: Array<(value: T) => void> = []

  readonly push = (value: T): void => {
    this.all.push(value)
    this.waiting.shift()?.(value)
  }

  async next (what: string): Promise<T> {
    const index = this.taken++
    if (index < this.all.length) return this.all[index]
    const d = deferred<T>()
    this.waiting.push(d.resolve)
    return await within(d.promise, what)
  }
}

/** A subscription callback recording its events. */
function events (): Inbox<SubscriptionEvent> & { onEvent: (event: SubscriptionEvent) => void } {
  const inbox = new Inbox<SubscriptionEvent>()
  return Object.assign(inbox, { onEvent: (event: SubscriptionEvent) => inbox.push(structuredClone(event)) })
}

/** An onRefetch callback counting its calls. */
function refetches (): Inbox<true> & { onRefetch: () => void } {
  const inbox = new Inbox<true>()
  return Object.assign(inbox, { onRefetch: () => inbox.push(true) })
}

function user (username: string, email = `${username}@example.com`): Record<string, string> {
  return { username, email, password1: 'pw-1', password2: 'pw-1' }
}

interface User { id: number, username: string, email: string }

/** The server-side sockets open right now (to cut them off later). */
function serverSockets (app: FastifyInstance): ServerSocket[] {
  return [...app.websocketServer.clients] as ServerSocket[]
}

/** The one server-side socket that is not `known`. */
function otherThan (app: FastifyInstance, known: ServerSocket): ServerSocket {
  const others = serverSockets(app).filter((socket) => socket !== known)
  if (others.length !== 1) throw new Error(`expected one other socket, found ${others.length}`)
  return others[0]
}

/**
 * A WebSocket constructor whose connections fail (HTTP 404: an unknown path) while held,
 * so a test can keep a client disconnected for as long as it needs, then let it back.
 */
interface Holdable { WebSocket: WebSocketConstructor, hold: () => void, release: () => void }

function holdable (): Holdable {
  let held = false
  class Held extends WebSocket {
    constructor (url: string, protocols?: string | string[]) {
      super(held ? new URL('/held-down/', url).href : url, protocols)
    }
  }
  return { WebSocket: Held, hold: () => { held = true }, release: () => { held = false } }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

t.test('request: CRUD resolves with each reply\'s data', async (t) => {
  const { base } = await startExample(t)
  // No waiting for the socket: requests made before it opens are queued.
  const client = open(t, `${base}/ws/`)
  t.equal(client.state, 'connecting')

  const ann = await within(client.request('create', { data: user('ann') }), 'create') as User
  t.strictSame(ann, { id: ann.id, username: 'ann', email: 'ann@example.com' }, 'create → the created object')
  t.equal(client.state, 'open')
  const bob = await within(client.request('create', { data: user('bob') }), 'create bob') as User

  t.strictSame(await within(client.request('retrieve', { pk: ann.id }), 'retrieve'), ann)
  t.strictSame(await within(client.request('list'), 'list'), [ann, bob])
  t.strictSame(await within(client.request('list', { filter: { username: 'bob' } }), 'filtered list'), [bob], 'args are sent as the frame\'s keys')
  t.strictSame(await within(client.request('update', { pk: ann.id, data: { username: 'anna', email: 'anna@example.com' } }), 'update'),
    { id: ann.id, username: 'anna', email: 'anna@example.com' })
  t.strictSame(await within(client.request('patch', { pk: ann.id, data: { email: 'a@example.org' } }), 'patch'),
    { id: ann.id, username: 'anna', email: 'a@example.org' })
  t.equal(await within(client.request('delete', { pk: ann.id }), 'delete'), null, 'delete → null (204)')
  t.strictSame(await within(client.request('list'), 'list after delete'), [bob])

  // Ten at once: each promise gets its own reply, correlated by request_id.
  const many = await within(Promise.all(Array.from({ length: 10 }, async () => await client.request('retrieve', { pk: bob.id }))), 'ten retrieves')
  t.strictSame(many, Array(10).fill(bob))
})

t.test('request: an error status rejects with WsRestError (status, errors, action, requestId, data)', async (t) => {
  const { base } = await startExample(t)
  const client = open(t, `${base}/ws/`)

  const missing = await rejection(client.request('retrieve', { pk: 4242 }), 'retrieve missing')
  t.ok(missing instanceof WsRestError, 'a WsRestError')
  t.match(missing, { name: 'WsRestError', status: 404, errors: ['Not found'], action: 'retrieve', data: null, stream: undefined })
  t.match(missing.requestId, /^[0-9a-f]{12}-\d+$/, 'the request_id the client generated (random prefix, counter)')
  t.match(missing.message, /retrieve failed with status 404/)

  const mismatch = await rejection(client.request('create', { data: { ...user('ann'), password2: 'other' } }), 'create mismatched')
  t.match(mismatch, { status: 400, action: 'create' })
  t.strictSame(mismatch.errors, [{ password2: ['Passwords do not match.'] }], 'errors keyed by field')

  const unknown = await rejection(client.request('frobnicate'), 'unknown action')
  t.match(unknown, { status: 405, action: 'frobnicate' })
  t.strictSame(unknown.errors, ['Method "frobnicate" not allowed.'])

  t.strictSame(await within(client.request('list'), 'list'), [], 'the client still works')
})

t.test('request: no reply within the timeout rejects with WsRestTimeoutError; the late reply is ignored', async (t) => {
  const held = gate()
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('hang', async () => { await held.wait(); return { data: 'late' } }),
        action('echo', (_ctx, args) => ({ data: args }))
      ]
    })
  })
  const client = open(t, `${base}/ws/`)
  const errors = new Inbox<Error>()
  client.on('error', errors.push)

  // Connected first: the 50 ms bound must not run out while a loaded machine still connects.
  t.strictSame(await within(client.request('echo', { n: 0 }), 'echo'), { n: 0 }, 'connected')
  const hanging = client.request('hang', {}, { timeout: 50 })
  // Awaited from the start: the bound may run out before the server has even entered hang.
  const timingOut = rejection(hanging, 'hang')
  await within(held.entered, 'the server runs hang')
  const timedOut = await timingOut
  t.ok(timedOut instanceof WsRestTimeoutError, 'a WsRestTimeoutError')
  t.match(timedOut, { name: 'WsRestTimeoutError', action: 'hang', timeout: 50 })
  t.type(timedOut.requestId, 'string')

  held.open()
  // Actions of one socket are answered in order: hang's late reply arrives before echo's.
  t.strictSame(await within(client.request('echo', { n: 1 }), 'echo'), { n: 1 }, 'the next request gets its own reply')
  t.strictSame(errors.all, [], 'the late reply was dropped quietly')
})

t.test('request: a streamed list through onReply — one call per page, resolves with the page onReply marks as the last', async (t) => {
  const { base } = await startExample(t)
  const writer = open(t, `${base}/ws/`)
  for (const name of ['a', 'b', 'c', 'd', 'e']) await within(writer.request('create', { data: user(name) }), `create ${name}`)

  const client = open(t, `${base}/ws/stream/`)
  const pages: Array<{ count: number, limit: number, offset: number, results: User[] }> = []
  const last = await within(client.request('list', {}, {
    onReply: (page) => {
      const p = page as (typeof pages)[number]
      pages.push(p)
      return p.offset + p.limit >= p.count
    }
  }), 'streamed list')
  t.strictSame(pages.map((p) => [p.offset, p.results.map((u) => u.username)]), [[0, ['a', 'b']], [2, ['c', 'd']], [4, ['e']]], 'every page, in order')
  t.equal(last, pages[2], 'the promise resolves with the last page')
})

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

t.test('subscribe: events reach onEvent as {action, data, status}; after unsubscribe() none do', async (t) => {
  const { base } = await startExample(t)
  const client = open(t, `${base}/ws/`)
  const writer = open(t, `${base}/ws/`)
  const ann = await within(writer.request('create', { data: user('ann') }), 'create') as User

  const seen = events()
  const sub = await within(client.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent), 'subscribe')
  t.match(sub, { action: 'subscribe_instance', args: { pk: ann.id }, active: true, stream: undefined })

  await within(writer.request('patch', { pk: ann.id, data: { email: 'one@example.com' } }), 'patch')
  t.strictSame(await seen.next('update event'), { action: 'update', data: { ...ann, email: 'one@example.com' }, status: 200 })

  // A second subscription to the same row: once it has an event, the first would have had it too.
  const witness = events()
  await within(client.subscribe('subscribe_instance', { pk: ann.id }, witness.onEvent), 'witness subscribe')
  await within(sub.unsubscribe(), 'unsubscribe')
  t.equal(sub.active, false, 'inactive after unsubscribe()')
  await within(sub.unsubscribe(), 'unsubscribe again is harmless')

  await within(writer.request('patch', { pk: ann.id, data: { email: 'two@example.com' } }), 'second patch')
  t.strictSame(await witness.next('witness update'), { action: 'update', data: { ...ann, email: 'two@example.com' }, status: 200 })
  await within(writer.request('delete', { pk: ann.id }), 'delete')
  t.strictSame(await witness.next('witness delete'), { action: 'delete', data: { pk: ann.id }, status: 204 })
  t.equal(seen.all.length, 1, 'nothing reached the unsubscribed callback')
})

t.test('subscribe: an error status rejects with WsRestError; subscribe_list delivers creates, updates, deletes', async (t) => {
  const { base } = await startExample(t)
  const client = open(t, `${base}/ws/`)

  const missing = await rejection(client.subscribe('subscribe_instance', { pk: 4242 }, () => {}), 'subscribe to a missing row')
  t.match(missing, { name: 'WsRestError', status: 404, errors: ['Not found'], action: 'subscribe_instance' })
  const badFilter = await rejection(client.subscribe('subscribe_list', { filter: { password: 'x' } }, () => {}), 'undeclared filter field')
  t.match(badFilter, { status: 400 })

  const seen = events()
  const sub = await within(client.subscribe('subscribe_list', { filter: { username: { $contains: 'a' } } }, seen.onEvent), 'subscribe_list')
  const ann = await within(client.request('create', { data: user('ann') }), 'create ann') as User
  await within(client.request('create', { data: user('bob') }), 'create bob (not matching)')
  t.strictSame(await seen.next('create event'), { action: 'create', data: ann, status: 201 })
  await within(client.request('patch', { pk: ann.id, data: { username: 'zed' } }), 'patch out of the filter')
  t.strictSame(await seen.next('leaves the filter'), { action: 'delete', data: { pk: ann.id }, status: 204 })
  await within(sub.unsubscribe(), 'unsubscribe_list')
})

// ---------------------------------------------------------------------------
// Multiplexing
// ---------------------------------------------------------------------------

t.test('multiplex: client.stream() scopes request and subscribe to a stream; an unmapped stream rejects with 404', async (t) => {
  const { base } = await startExample(t)
  const client = open(t, `${base}/ws/multiplex/`, { multiplex: true })
  const users = client.stream('users')

  const ann = await within(users.request('create', { data: user('ann') }), 'create') as User
  t.strictSame(await within(users.request('retrieve', { pk: ann.id }), 'retrieve'), ann)
  t.strictSame(await within(client.request('list', {}, { stream: 'users' }), 'list by stream option'), [ann])

  const seen = events()
  const sub = await within(users.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent), 'subscribe')
  t.equal(sub.stream, 'users')
  await within(users.request('patch', { pk: ann.id, data: { email: 'new@example.com' } }), 'patch')
  t.strictSame(await seen.next('update event'), { action: 'update', data: { ...ann, email: 'new@example.com' }, status: 200 })
  await within(sub.unsubscribe(), 'unsubscribe')

  const unmapped = await rejection(client.stream('people').request('list'), 'unmapped stream')
  t.match(unmapped, { name: 'WsRestError', status: 404, stream: 'people', action: 'list' })

  const noStream = await rejection(client.request('list'), 'no stream on a multiplexed client')
  t.match(noStream, { name: 'TypeError', message: /needs \{ stream \}/ })
  const plain = open(t, `${base}/ws/`)
  t.throws(() => plain.stream('users'), /multiplexed client/, 'stream() on a plain client throws')
  t.match(await rejection(plain.request('list', {}, { stream: 'users' }), 'stream on a plain client'), { name: 'TypeError' })
})

// ---------------------------------------------------------------------------
// Dropped connections
// ---------------------------------------------------------------------------

t.test('forced disconnect: the client reconnects by itself, answers requests made while down, restores subscriptions', async (t) => {
  const { app, base } = await startExample(t)
  const client = open(t, `${base}/ws/`)
  const ann = await within(client.request('create', { data: user('ann') }), 'create') as User
  const [subscriberSocket] = serverSockets(app)
  const writer = open(t, `${base}/ws/`)

  const seen = events()
  const refetch = refetches()
  const sub = await within(client.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent, { onRefetch: refetch.onRefetch }), 'subscribe')
  await within(writer.request('patch', { pk: ann.id, data: { email: 'one@example.com' } }), 'patch')
  t.equal((await seen.next('first update')).action, 'update')

  const reconnecting = next(client, 'reconnecting')
  const reopened = next(client, 'open')
  subscriberSocket.terminate() // the network drops it: no close handshake
  const [{ attempt, delay }] = await reconnecting
  t.equal(attempt, 1, 'reconnecting: first attempt')
  t.ok(delay >= FAST.initialDelay / 2 && delay <= FAST.initialDelay, 'after the initial delay, with jitter')
  t.equal(client.state, 'reconnecting')

  // Made while down: queued, sent once the socket is back.
  const listed = client.request('list')
  const created = client.request('create', { data: user('bob') })
  await reopened
  t.equal(client.state, 'open')
  t.strictSame(await within(listed, 'queued list'), [{ ...ann, email: 'one@example.com' }])
  const bob = await within(created, 'queued create') as User
  t.equal(bob.username, 'bob', 'a queued write is sent once')
  t.equal((await within(client.request('list'), 'list') as User[]).length, 2)

  // The re-subscribe went out before the queued requests, so it is in place by now.
  await within(writer.request('patch', { pk: ann.id, data: { email: 'two@example.com' } }), 'patch after reconnect')
  t.strictSame(await seen.next('update after reconnect'), { action: 'update', data: { ...ann, email: 'two@example.com' }, status: 200 },
    'the restored subscription delivers again')
  t.equal(sub.active, true)
  if (sub.resumable) {
    t.equal(refetch.all.length, 0, 'resumed by the server: no refetch')
  } else {
    t.equal(refetch.all.length, 1, 'no resume message from the server: onRefetch once, after the re-subscribe')
  }
  await within(client.request('list'), 'round trip')
  t.equal(seen.all.length, 2, 'once per change: the subscription is not doubled')
})

t.test('forced disconnect on a multiplexed socket: the stream\'s subscription is restored', async (t) => {
  const { app, base } = await startExample(t)
  const client = open(t, `${base}/ws/multiplex/`, { multiplex: true })
  const users = client.stream('users')
  const ann = await within(users.request('create', { data: user('ann') }), 'create') as User
  const seen = events()
  await within(users.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent), 'subscribe')

  const reopened = next(client, 'open')
  for (const socket of serverSockets(app)) socket.terminate()
  await reopened
  await within(users.request('patch', { pk: ann.id, data: { email: 'after@example.com' } }), 'patch after reconnect')
  t.strictSame(await seen.next('update'), { action: 'update', data: { ...ann, email: 'after@example.com' }, status: 200 })
})

/**
 * A subscription the server does not resume: after a cut and a re-subscribe the client calls
 * onRefetch once, the change missed while down is not replayed, events flow again, and the
 * client reconnects once (no loop). `resume` is the client's option (undefined: the default).
 */
async function refetchesOnceAfterCut (t: Test, resume: false | undefined, why: string): Promise<void> {
  const { app, base } = await startExample(t)
  const writer = open(t, `${base}/ws/`)
  const ann = await within(writer.request('create', { data: user('ann') }), 'create') as User
  const [writerSocket] = serverSockets(app)
  const socket = holdable()
  const client = open(t, `${base}/ws/`, { ...(resume === undefined ? {} : { resume }), WebSocket: socket.WebSocket })
  const seen = events()
  const refetch = refetches()
  const sub = await within(client.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent, { onRefetch: refetch.onRefetch }), 'subscribe')
  t.equal(sub.resumable, false, why)
  t.equal(refetch.all.length, 0, 'no refetch on the first subscribe')
  const clientSocket = otherThan(app, writerSocket)
  let opened = 0
  client.on('open', () => { opened++ })

  await whileDown(client, socket, clientSocket, async () => {
    // Missed while down: nobody can replay it to this client.
    await within(writer.request('patch', { pk: ann.id, data: { email: 'missed@example.com' } }), 'patch while down')
  })

  await within(refetch.next('onRefetch'), 'onRefetch after the re-subscribe')
  t.equal(sub.resumable, false)
  await within(writer.request('patch', { pk: ann.id, data: { email: 'live@example.com' } }), 'patch after reconnect')
  t.strictSame(await seen.next('live update'), { action: 'update', data: { ...ann, email: 'live@example.com' }, status: 200 })
  // A round trip after the live event: anything the re-subscribe set off has arrived by now.
  await within(client.request('list'), 'round trip')
  t.equal(seen.all.length, 1, 'the change made while down was not replayed (hence the refetch)')
  t.equal(refetch.all.length, 1, 'one refetch')
  t.equal(opened, 1, 'opened once after the cut: the client does not loop')
  t.equal(serverSockets(app).length, 2, 'the writer and the client, one socket each')
}

t.test('DCRF-style server (no resume message): onRefetch is called after the re-subscribe; events flow again', async (t) => {
  // resume: false sends no resume key, so even a server with the extension answers like DCRF.
  await refetchesOnceAfterCut(t, false, 'no resume key sent, no "resume" frame')
})

t.test('resume asked of a route without a principal (the example\'s /ws/, no users): not resumable, so onRefetch once after the re-subscribe; no loop', async (t) => {
  // resume on (the default): the client sends a key, which the server ignores here.
  await refetchesOnceAfterCut(t, undefined, 'no "resume" frame came: the server does not resume for an anonymous connection')
})

/**
 * Cut the client's socket on the server side, keep it from reconnecting while `meanwhile`
 * runs (other clients writing), then let it reconnect and wait until it is open again.
 */
async function whileDown (client: WsRestClient, socket: Holdable, clientSocket: { terminate: () => void }, meanwhile: () => Promise<void>): Promise<void> {
  socket.hold()
  const reconnecting = next(client, 'reconnecting')
  clientSocket.terminate()
  await reconnecting
  await meanwhile()
  const reopened = next(client, 'open')
  socket.release()
  await reopened
}

/** A token of the example's `POST /token` for a user made with {@link user} (password `pw-1`). */
async function tokenFor (app: FastifyInstance, username: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/token', payload: { username, password: 'pw-1' } })
  if (response.statusCode !== 200) throw new Error(`POST /token: ${response.statusCode} ${response.body}`)
  return (response.json() as { token: string }).token
}

t.test('resume against the example server (/ws/jwt/, whose user is the principal): missed events are replayed after a reconnect, without onRefetch', async (t) => {
  const { app, base } = await startExample(t)
  const writer = open(t, `${base}/ws/`)
  const ann = await within(writer.request('create', { data: user('ann') }), 'create') as User
  const [writerSocket] = serverSockets(app)
  const socket = holdable()
  // The token as subprotocols, on every connection the client makes (the reconnections too).
  const client = open(t, `${base}/ws/jwt/`, { WebSocket: socket.WebSocket, protocols: ['access_token', await tokenFor(app, 'ann')] })
  const seen = events()
  const refetch = refetches()
  const sub = await within(client.subscribe('subscribe_instance', { pk: ann.id }, seen.onEvent, { onRefetch: refetch.onRefetch }), 'subscribe')
  t.equal(sub.resumable, true, 'the server answered the resume key')
  const clientSocket = otherThan(app, writerSocket)
  await within(writer.request('patch', { pk: ann.id, data: { email: 'one@example.com' } }), 'live patch')
  t.strictSame(await seen.next('live event'), { action: 'update', data: { ...ann, email: 'one@example.com' }, status: 200 })

  await whileDown(client, socket, clientSocket, async () => {
    await within(writer.request('patch', { pk: ann.id, data: { email: 'two@example.com' } }), 'missed patch 1')
    await within(writer.request('patch', { pk: ann.id, data: { email: 'three@example.com' } }), 'missed patch 2')
  })

  t.strictSame(await seen.next('replayed 1'), { action: 'update', data: { ...ann, email: 'two@example.com' }, status: 200 })
  t.strictSame(await seen.next('replayed 2'), { action: 'update', data: { ...ann, email: 'three@example.com' }, status: 200 })
  t.equal(sub.resumable, true)
  await within(writer.request('patch', { pk: ann.id, data: { email: 'four@example.com' } }), 'live patch after')
  t.strictSame(await seen.next('live after'), { action: 'update', data: { ...ann, email: 'four@example.com' }, status: 200 })
  t.equal(refetch.all.length, 0, 'nothing was lost: no refetch')
  t.equal(seen.all.length, 4, 'no duplicates')
})

t.test('a request queued while disconnected still times out', async (t) => {
  const { app, base } = await startExample(t)
  // A long backoff keeps the client down for the whole test.
  const client = open(t, `${base}/ws/`, { reconnect: { initialDelay: 60_000, maxDelay: 60_000 } })
  await within(client.request('list'), 'connected')
  const reconnecting = next(client, 'reconnecting')
  for (const socket of serverSockets(app)) socket.terminate()
  await reconnecting
  const queued = await rejection(client.request('list', {}, { timeout: 30 }), 'queued list')
  t.match(queued, { name: 'WsRestTimeoutError', action: 'list', timeout: 30 })
  await client.close()
  t.equal(client.state, 'closed', 'close() while waiting to reconnect: closed, the retry cancelled')
})

// ---------------------------------------------------------------------------
// A scripted server: the frames the client sends, and replies written by the test
// ---------------------------------------------------------------------------

/** A frame as the client sent it. */
type Sent = Record<string, any>

/** One connection to the scripted server. */
interface Connection {
  socket: ServerSocket
  /** The upgrade request's Sec-WebSocket-Protocol header. */
  protocols: string | undefined
  /** The upgrade request's path and query. */
  url: string | undefined
  /** The frames the client sends on it, in order. */
  frames: Inbox<Sent>
  closed: Promise<number>
  /** Send a reply or event: `{errors: [], data, action, response_status, request_id, ...extra}`. */
  reply: (requestId: unknown, action: string | null, status: number, data?: unknown, extra?: Record<string, unknown>) => void
}

/** A WebSocket server that answers nothing by itself. */
async function scripted (t: Test): Promise<{ url: string, connections: Inbox<Connection> }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await new Promise<void>((resolve) => server.once('listening', resolve))
  const connections = new Inbox<Connection>()
  server.on('connection', (socket, request) => {
    const frames = new Inbox<Sent>()
    socket.on('message', (data) => frames.push(JSON.parse(data.toString()) as Sent))
    const closed = new Promise<number>((resolve) => socket.on('close', resolve))
    connections.push({
      socket,
      protocols: request.headers['sec-websocket-protocol'],
      url: request.url,
      frames,
      closed,
      reply: (requestId, action, status, data = null, extra = {}) => {
        socket.send(JSON.stringify({ errors: status >= 400 ? ['refused'] : [], data, action, response_status: status, request_id: requestId, ...extra }))
      }
    })
  })
  t.teardown(async () => {
    for (const socket of server.clients) socket.terminate()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as { port: number }
  return { url: `ws://127.0.0.1:${port}/`, connections }
}

t.test('in flight when the socket drops: reads are re-sent after the reconnect, a write rejects with WsRestConnectionLostError and is never re-sent', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const first = await server.connections.next('first connection')

  const read = client.request('list', { limit: 2 })
  const write = client.request('update', { pk: 1, data: { name: 'x' } })
  const declared = client.request('frobnicate', {}, { idempotent: true })
  const sent = [await first.frames.next('list'), await first.frames.next('update'), await first.frames.next('frobnicate')]
  t.strictSame(sent.map((f) => f.action), ['list', 'update', 'frobnicate'])
  t.strictSame(sent[0], { limit: 2, action: 'list', request_id: sent[0].request_id }, 'the frame: args, action, request_id')

  first.socket.terminate()
  const lost = await rejection(write, 'the write')
  t.ok(lost instanceof WsRestConnectionLostError, 'the write: WsRestConnectionLostError')
  t.match(lost, { name: 'WsRestConnectionLostError', action: 'update', requestId: sent[1].request_id, message: /outcome unknown/ })

  const second = await server.connections.next('second connection')
  const resent = [await second.frames.next('re-sent 1'), await second.frames.next('re-sent 2')]
  t.strictSame(resent, [sent[0], sent[2]], 'the read and the action declared idempotent, byte for byte (same request_id)')
  second.reply(sent[0].request_id, 'list', 200, ['a'])
  second.reply(sent[2].request_id, 'frobnicate', 200, 'done')
  t.strictSame(await within(read, 'read'), ['a'])
  t.equal(await within(declared, 'declared idempotent'), 'done')

  // Frames arrive in order: the next one after the re-sent reads is this one, not the write.
  const after = client.request('retrieve', { pk: 1 })
  const frame = await second.frames.next('retrieve')
  t.equal(frame.action, 'retrieve', 'the write was not re-sent')
  second.reply(frame.request_id, 'retrieve', 200, { id: 1 })
  t.strictSame(await within(after, 'retrieve'), { id: 1 })
})

t.test('protocols are offered on every connection, the reconnections too', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url, { protocols: ['access_token', 'a.b.c'] })
  const first = await server.connections.next('first connection')
  t.equal(first.protocols, 'access_token,a.b.c')
  t.equal(first.socket.protocol, 'access_token', 'the server picked one (ws picks the first)')
  const reopened = next(client, 'open')
  first.socket.terminate()
  t.equal((await server.connections.next('second connection')).protocols, 'access_token,a.b.c')
  await reopened
})

t.test('close(): pending requests reject with WsRestClosedError; no reconnect; later calls reject', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const conn = await server.connections.next('connection')
  const reconnects = new Inbox<unknown>()
  client.on('reconnecting', reconnects.push)

  const pending = client.request('list')
  await conn.frames.next('list sent')
  const closing = client.close()
  t.equal(client.state, 'closed')
  t.match(await rejection(pending, 'pending'), { name: 'WsRestClosedError', action: 'list' })
  await within(closing, 'close()')
  t.equal(await within(conn.closed, 'server sees the close'), 1000, 'a normal close (1000)')
  t.match(await rejection(client.request('list'), 'after close'), { name: 'WsRestClosedError' })
  t.match(await rejection(client.subscribe('subscribe_instance', { pk: 1 }, () => {}), 'subscribe after close'), { name: 'WsRestClosedError' })
  t.equal(reconnects.all.length, 0, 'no reconnect scheduled')
  t.ok(new WsRestClosedError('x') instanceof Error)
})

t.test('reconnect: false — a drop closes the client: in-flight writes are lost, queued and in-flight reads reject closed', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url, { reconnect: false })
  const conn = await server.connections.next('connection')
  const write = client.request('create', { data: {} })
  const read = client.request('list')
  await conn.frames.next('create sent')
  await conn.frames.next('list sent')
  const closed = next(client, 'close')
  conn.socket.terminate()
  t.equal((await closed)[0].code, 1006, 'close event: abnormal closure')
  t.match(await rejection(write, 'write'), { name: 'WsRestConnectionLostError' })
  t.match(await rejection(read, 'read'), { name: 'WsRestClosedError' }, 'the read would have been re-sent, but there is no reconnect')
  t.equal(client.state, 'closed')
})

t.test('bad frames from the server are ignored with an \'error\' event; the client keeps working', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const errors = new Inbox<Error>()
  client.on('error', errors.push)
  const conn = await server.connections.next('connection')

  conn.socket.send('not json {')
  t.match((await errors.next('non-JSON')).message, /not JSON/)
  conn.socket.send(Buffer.from([1, 2, 3]), { binary: true })
  t.match((await errors.next('binary')).message, /binary frame/)
  conn.socket.send('[1, 2]')
  t.match((await errors.next('not an object')).message, /not a reply/)
  conn.reply('nobody-asked', 'list', 200, [])   // a reply for an unknown request_id: ignored, no error

  const answered = client.request('list')
  const frame = await conn.frames.next('list')
  conn.reply(frame.request_id, 'list', 200, ['ok'])
  t.strictSame(await within(answered, 'list'), ['ok'])
  t.equal(errors.all.length, 3, 'one error per bad frame; the unknown request_id raised none')

  // A throwing callback is reported the same way, and the client carries on.
  const subscribing = client.subscribe('subscribe_instance', { pk: 1 }, () => { throw new Error('app bug') })
  const sub = await conn.frames.next('subscribe')
  conn.reply(sub.request_id, 'subscribe_instance', 201)
  await within(subscribing, 'subscribed')
  conn.reply(sub.request_id, 'update', 200, { id: 1 })
  t.match((await errors.next('throwing onEvent')).message, 'app bug')
})

t.test('resume contract: a 128-bit key; events numbered; the re-subscribe carries {key, seq}; a 200 replays missed events, duplicates dropped, no refetch', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const seen = events()
  const refetch = refetches()
  const subscribing = client.subscribe('subscribe_instance', { pk: 1 }, seen.onEvent, { onRefetch: refetch.onRefetch })
  const first = await server.connections.next('first connection')
  const frame = await first.frames.next('subscribe')
  t.match(frame, { action: 'subscribe_instance', pk: 1, request_id: String })
  t.match(frame.resume.key, /^[0-9a-f]{32}$/, 'resume.key: 128 random bits, hex')
  t.strictSame(Object.keys(frame.resume), ['key'], 'no seq on the first subscribe')
  const { request_id: id, resume: { key } } = frame

  first.reply(id, 'resume', 201, { key, seq: 0 })
  first.reply(id, 'subscribe_instance', 201)
  const sub = await within(subscribing, 'subscribed')
  t.equal(sub.resumable, true, 'the server acknowledged the key')
  first.reply(id, 'update', 200, { n: 1 }, { seq: 1 })
  first.reply(id, 'update', 200, { n: 2 }, { seq: 2 })
  t.strictSame(await seen.next('event 1'), { action: 'update', data: { n: 1 }, status: 200 }, 'onEvent gets {action, data, status}; seq stays internal')
  await seen.next('event 2')

  first.socket.terminate()
  const second = await server.connections.next('second connection')
  const again = await second.frames.next('re-subscribe')
  t.strictSame(again, { pk: 1, action: 'subscribe_instance', request_id: id, resume: { key, seq: 2 } }, 'same action, args, request_id; resume {key, last seq}')
  second.reply(id, 'resume', 200, { key, seq: 2, replayed: 2 })
  second.reply(id, 'subscribe_instance', 201)
  second.reply(id, 'update', 200, { n: 2 }, { seq: 2 }) // already seen: dropped
  second.reply(id, 'update', 200, { n: 3 }, { seq: 3 })
  second.reply(id, 'delete', 204, { pk: 1 }, { seq: 4 })
  t.strictSame(await seen.next('replayed 3'), { action: 'update', data: { n: 3 }, status: 200 })
  t.strictSame(await seen.next('replayed 4'), { action: 'delete', data: { pk: 1 }, status: 204 })

  const unsubscribing = sub.unsubscribe()
  const unsub = await second.frames.next('unsubscribe')
  t.strictSame(unsub, { pk: 1, action: 'unsubscribe_instance', request_id: id }, 'unsubscribe: same request_id and args, no resume key')
  second.reply(id, 'update', 200, { n: 5 }, { seq: 5 }) // in flight while unsubscribing: not delivered
  second.reply(id, 'unsubscribe_instance', 204)
  await within(unsubscribing, 'unsubscribed')
  t.equal(seen.all.length, 4, 'events 1–4 once each, nothing after unsubscribe()')
  t.equal(refetch.all.length, 0, 'resumed: no refetch')
})

t.test('resume contract: a 410 means the missed events are gone — onRefetch, and numbering restarts at 1', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const seen = events()
  const refetch = refetches()
  const subscribing = client.subscribe('subscribe_list', { filter: { id: 1 } }, seen.onEvent, { onRefetch: refetch.onRefetch })
  const first = await server.connections.next('first connection')
  const { request_id: id, resume: { key } } = await first.frames.next('subscribe')
  first.reply(id, 'resume', 201, { key, seq: 0 })
  first.reply(id, 'subscribe_list', 201)
  await within(subscribing, 'subscribed')
  for (const seq of [1, 2, 3]) first.reply(id, 'create', 201, { seq }, { seq })
  for (const seq of [1, 2, 3]) t.equal(((await seen.next(`event ${seq}`)).data as { seq: number }).seq, seq)

  first.socket.terminate()
  const second = await server.connections.next('second connection')
  t.strictSame((await second.frames.next('re-subscribe')).resume, { key, seq: 3 })
  second.reply(id, 'resume', 410, null)
  second.reply(id, 'subscribe_list', 201)
  await refetch.next('onRefetch')
  second.reply(id, 'create', 201, { again: 1 }, { seq: 1 })
  t.strictSame(await seen.next('renumbered event'), { action: 'create', data: { again: 1 }, status: 201 }, 'seq 1 again is new, not a duplicate')

  // A gap in the numbering should not happen; when it does: onRefetch, and the event still arrives.
  second.reply(id, 'update', 200, { jumped: true }, { seq: 5 })
  await refetch.next('onRefetch on a gap')
  t.strictSame(await seen.next('event after the gap'), { action: 'update', data: { jumped: true }, status: 200 })
  t.equal(refetch.all.length, 2)
})

t.test('a re-subscribe refused with an error status ends the subscription: onError and an \'error\' event', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url, { resume: false })
  const errors = new Inbox<Error>()
  client.on('error', errors.push)
  const failures = new Inbox<WsRestError>()
  const subscribing = client.subscribe('subscribe_instance', { pk: 7 }, () => {}, { onError: failures.push })
  const first = await server.connections.next('first connection')
  const frame = await first.frames.next('subscribe')
  t.notOk('resume' in frame, 'resume: false sends no resume key')
  first.reply(frame.request_id, 'subscribe_instance', 201)
  const sub = await within(subscribing, 'subscribed')

  first.socket.terminate()
  const second = await server.connections.next('second connection')
  await second.frames.next('re-subscribe')
  second.reply(frame.request_id, 'subscribe_instance', 404, null)
  t.match(await failures.next('onError'), { name: 'WsRestError', status: 404, action: 'subscribe_instance' })
  t.match(await errors.next('error event'), { name: 'WsRestError', status: 404 })
  t.equal(sub.active, false, 'the subscription has ended')
})

t.test('resume 409: another connection took the key — the subscription ends (WsRestTakenOverError to onError and \'error\') and is not restored', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url)
  const errors = new Inbox<Error>()
  client.on('error', errors.push)
  const failures = new Inbox<WsRestError>()
  const seen = events()
  const subscribing = client.subscribe('subscribe_instance', { pk: 1 }, seen.onEvent, { onError: failures.push })
  const first = await server.connections.next('first connection')
  const { request_id: id, resume: { key } } = await first.frames.next('subscribe')
  first.reply(id, 'resume', 201, { key, seq: 0 })
  first.reply(id, 'subscribe_instance', 201)
  const sub = await within(subscribing, 'subscribed')

  // The server's frame, as it sends it to the connection that lost the key.
  first.socket.send(JSON.stringify({
    action: 'resume',
    response_status: 409,
    errors: ['This subscription was taken over by another connection with its resume key; it ends here.'],
    data: null,
    request_id: id
  }))
  const failure = await failures.next('onError')
  t.ok(failure instanceof WsRestTakenOverError, 'a WsRestTakenOverError')
  t.ok(failure instanceof WsRestError, 'which is a WsRestError (status 409)')
  t.match(failure, { name: 'WsRestTakenOverError', status: 409, action: 'resume', requestId: id })
  t.match(failure.errors[0], /taken over/)
  t.equal(await errors.next('error event'), failure, 'the same error on the client\'s \'error\' event')
  t.equal(sub.active, false, 'the subscription has ended')
  first.reply(id, 'update', 200, { n: 1 }, { seq: 1 }) // the other connection's now: not delivered here
  await within(sub.unsubscribe(), 'unsubscribe() of an ended subscription resolves at once')

  first.socket.terminate()
  const second = await server.connections.next('second connection')
  const reading = client.request('retrieve', { pk: 1 })
  const frame = await second.frames.next('first frame after the reconnect')
  t.equal(frame.action, 'retrieve', 'no re-subscribe: taking the key back would start a tug of war')
  second.reply(frame.request_id, 'retrieve', 200, { id: 1 })
  await within(reading, 'retrieve')
  t.equal(seen.all.length, 0, 'no event reached onEvent')
  t.equal(failures.all.length, 1)
})

t.test('unsubscribeAction: defaults only for the mixins; a custom subscribing action must name one, or null to send nothing', async (t) => {
  const server = await scripted(t)
  const client = open(t, server.url, { resume: false })
  const refused = await rejection(client.subscribe('join_room', { room: 'a' }, () => {}), 'custom action without unsubscribeAction')
  t.ok(refused instanceof TypeError, 'a TypeError, before anything is sent')
  t.match(refused.message, /unsubscribeAction/)
  t.ok((await rejection(client.subscribe('join_room', {}, () => {}, { unsubscribeAction: '' }), 'empty unsubscribeAction')) instanceof TypeError)

  const connection = await server.connections.next('connection')
  const named = client.subscribe('join_room', { room: 'a' }, () => {}, { unsubscribeAction: 'leave_room' })
  const join = await connection.frames.next('join_room')
  t.match(join, { action: 'join_room', room: 'a' }, 'the refused calls sent nothing: the first frame is this one')
  connection.reply(join.request_id, 'join_room', 200)
  const leaving = (await within(named, 'joined')).unsubscribe()
  t.strictSame(await connection.frames.next('leave_room'), { room: 'a', action: 'leave_room', request_id: join.request_id }, 'the named action, same request_id and args')
  connection.reply(join.request_id, 'leave_room', 204)
  await within(leaving, 'left')

  const seen = events()
  const silent = client.subscribe('watch', { topic: 't' }, seen.onEvent, { unsubscribeAction: null })
  const watch = await connection.frames.next('watch')
  connection.reply(watch.request_id, 'watch', 200)
  const sub = await within(silent, 'watching')
  await within(sub.unsubscribe(), 'unsubscribe() with unsubscribeAction null resolves at once')
  t.equal(sub.active, false)
  connection.reply(watch.request_id, 'watch', 200, { late: true }) // the server still sends: ignored
  const reading = client.request('retrieve', { pk: 1 })
  const next = await connection.frames.next('the next frame')
  t.equal(next.action, 'retrieve', 'nothing was sent for the unsubscribe')
  connection.reply(next.request_id, 'retrieve', 200, {})
  await within(reading, 'retrieve')
  t.equal(seen.all.length, 0, 'no event after unsubscribe()')
})

// ---------------------------------------------------------------------------
// Pure parts
// ---------------------------------------------------------------------------

t.test('looksIdempotent: reads by name, anything write-like or unknown is a write', async (t) => {
  for (const name of ['list', 'retrieve', 'get_profile', 'listUsers', 'search', 'count_active', 'list_cancel']) {
    t.equal(looksIdempotent(name), true, name)
  }
  for (const name of ['create', 'update', 'patch', 'delete', 'get_or_create', 'fetchAndDelete', 'subscribe_instance', 'frobnicate', '']) {
    t.equal(looksIdempotent(name), false, name)
  }
})

t.test('backoff: exponential, capped at maxDelay, jitter between half and all of the delay', async (t) => {
  const settings = { ...RECONNECT_DEFAULTS, jitter: false }
  t.strictSame([0, 1, 2, 3, 10].map((n) => backoffDelay(n, settings)), [250, 500, 1000, 2000, 10_000])
  t.equal(backoffDelay(2, RECONNECT_DEFAULTS, () => 0), 500, 'jitter low end: half')
  t.equal(backoffDelay(2, RECONNECT_DEFAULTS, () => 1), 1000, 'jitter high end: all')
})

t.test('createClient: without a WebSocket in Node 20 it throws a clear error', async (t) => {
  const global = globalThis as { WebSocket?: unknown }
  const saved = global.WebSocket
  delete global.WebSocket
  try {
    t.throws(() => createClient('ws://127.0.0.1:1/'), /No WebSocket implementation.*Pass one in the options/s)
  } finally {
    if (saved !== undefined) global.WebSocket = saved
  }
  t.throws(() => createClient('ws://127.0.0.1:1/', { WebSocket, timeout: 0 }), /timeout must be a positive number/)
})

t.test('a URL or protocols given as functions are asked again before every connection: a reconnect carries a fresh token', async (t) => {
  const { url, connections } = await scripted(t)
  let issued = 0
  const token = (): string => `t${++issued}`
  let current = ''
  const client = createClient(() => `${url}?token=${(current = token())}`, {
    WebSocket,
    reconnect: FAST,
    protocols: () => ['access_token', current]
  })
  t.teardown(async () => await client.close())
  const first = await connections.next('the first connection')
  t.strictSame([first.url, first.protocols], ['/?token=t1', 'access_token,t1'])
  t.equal(client.url, `${url}?token=t1`, 'client.url is the URL it connected to')
  first.socket.terminate()
  const second = await connections.next('the reconnection')
  t.strictSame([second.url, second.protocols], ['/?token=t2', 'access_token,t2'], 'asked again: a fresh token')
})
