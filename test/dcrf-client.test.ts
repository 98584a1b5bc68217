/**
 * The real `dcrf-client` package (the front-end client of Django Channels REST Framework
 * backends), unchanged and unpatched, against the example's `/ws/multiplex/` (stream
 * `users`): CRUD, error rejections, instance subscriptions fired by changes made on other
 * sockets, and its reconnect-and-resubscribe.
 *
 * Configuration, all documented in dcrf-client's README:
 * - `websocket.WebSocket`: Node 20 has no global WebSocket, so the `ws` constructor is
 *   passed to reconnecting-websocket.
 * - `pkField: 'id'`: the example's serializer (response schema) has `id`, not `pk`; the
 *   client matches update events on `data[pkField]`.
 */
import dcrfModule, { type DCRFClient } from 'dcrf-client'
import type { WebSocket as ServerSocket } from 'ws'
import WebSocket from 'ws'
import t from 'tap'
import { deferred, within } from './helpers/async.js'
import { openClient } from './helpers/client.js'
import { startExample } from './helpers/server.js'

/** A subtest, as tap passes it to a `t.test` callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

/** dcrf-client is CommonJS with `exports.default = { connect, createClient }`; from ESM that is `.default`. */
const dcrf = dcrfModule.default

/** What dcrf-client options a test may add (reconnection delays, pkField…). */
type Options = NonNullable<Parameters<typeof dcrf.connect>[1]>

/** A dcrf-client connected to `url`, closed in teardown (which also stops reconnecting). */
function connectDcrf (t: Test, url: string, options: Options = {}): DCRFClient {
  const client = dcrf.connect(url, {
    pkField: 'id',
    ...options,
    websocket: { WebSocket, ...options.websocket }
  })
  t.teardown(() => client.close())
  return client
}

/** The value `promise` rejects with; fails (by throwing) when it resolves instead. */
async function rejection (promise: Promise<unknown>, what: string): Promise<any> {
  const outcome = await within(promise.then((value) => ({ value }), (reason: unknown) => ({ reason })), what)
  if (!('reason' in outcome)) throw new Error(`${what}: expected a rejection, resolved with ${JSON.stringify(outcome.value)}`)
  return outcome.reason
}

function user (username: string, email = `${username}@example.com`): Record<string, string> {
  return { username, email, password1: 'pw-1', password2: 'pw-1' }
}

/** One call of a subscription callback: what dcrf-client passed. */
interface Call { data: unknown, action: string }

/** A subscription callback recording its calls, with a promise for the next one. */
function recorder (): { calls: Call[], callback: (data: unknown, action: string) => void, next: () => Promise<Call> } {
  const calls: Call[] = []
  const waiting: Array<(call: Call) => void> = []
  let delivered = 0
  return {
    calls,
    callback: (data, action) => {
      const call = { data: structuredClone(data), action }
      calls.push(call)
      waiting.shift()?.(call)
    },
    next: async () => {
      const index = delivered++
      if (index < calls.length) return calls[index]
      const d = deferred<Call>()
      waiting.push(d.resolve)
      return await d.promise
    }
  }
}

t.test('CRUD through dcrf-client: each promise resolves with the reply\'s data', async (t) => {
  const { base } = await startExample(t)
  // Requests are queued until the socket opens: no need to wait for the connection.
  const client = connectDcrf(t, `${base}/ws/multiplex/`)

  const ann = await within(client.create('users', user('ann')), 'create')
  t.strictSame(ann, { id: ann.id, username: 'ann', email: 'ann@example.com' }, 'create → the created object (no password)')
  t.ok(Number.isInteger(ann.id) && ann.id > 0, 'with an integer id')
  const bob = await within(client.create('users', user('bob', '')), 'create bob')

  t.strictSame(await within(client.retrieve('users', ann.id), 'retrieve'), ann, 'retrieve → the object')
  t.strictSame(await within(client.list('users'), 'list'), [ann, bob], 'list → every object, ordered by id')
  t.strictSame(await within(client.list('users', { filter: { username: 'bob' } }), 'filtered list'), [ann, bob],
    'list(stream, data) sends its argument as `data`, which the list action ignores (DCRF\'s list takes no data either)')
  t.strictSame(await within(client.request('users', { action: 'list', filter: { username: 'bob' } }), 'filtered list by request'), [bob],
    'request(stream, payload) reaches the route\'s filter')

  const updated = await within(client.update('users', ann.id, { username: 'anna', email: 'anna@example.com' }), 'update')
  t.strictSame(updated, { id: ann.id, username: 'anna', email: 'anna@example.com' }, 'update → the object after the change')
  const patched = await within(client.patch('users', ann.id, { email: 'a@example.org' }), 'patch')
  t.strictSame(patched, { id: ann.id, username: 'anna', email: 'a@example.org' }, 'patch → the object, only email changed')

  t.equal(await within(client.delete('users', ann.id), 'delete'), null, 'delete resolves (with the reply\'s data: null)')
  t.strictSame(await within(client.list('users'), 'list after delete'), [bob])
})

t.test('errors reject with the whole reply payload', async (t) => {
  const { base } = await startExample(t)
  const client = connectDcrf(t, `${base}/ws/multiplex/`)

  const missing = await rejection(client.retrieve('users', 4242), 'retrieve missing')
  t.strictSame(Object.keys(missing), ['errors', 'data', 'action', 'response_status', 'request_id'], 'the rejection is the five-key reply')
  t.match(missing, { errors: ['Not found'], data: null, action: 'retrieve', response_status: 404 }, 'retrieve of a missing pk → 404 Not found')
  t.type(missing.request_id, 'string', 'with the UUID request_id dcrf-client generated')
  t.strictSame(missing.errors, ['Not found'])

  const mismatch = await rejection(client.create('users', { ...user('ann'), password2: 'other' }), 'create with mismatched passwords')
  t.match(mismatch, { data: null, action: 'create', response_status: 400 })
  t.strictSame(mismatch.errors, [{ password2: ['Passwords do not match.'] }], 'errors keyed password2')

  await within(client.create('users', user('ann')), 'create ann')
  const duplicate = await rejection(client.create('users', user('ann')), 'duplicate username')
  t.match(duplicate, { response_status: 400 })
  t.strictSame(duplicate.errors, [{ username: ['user with this username already exists.'] }], 'errors keyed username')

  const unknown = await rejection(client.request('users', { action: 'frobnicate' }), 'unknown action')
  t.match(unknown, { response_status: 405, action: 'frobnicate', data: null })
  t.strictSame(unknown.errors, ['Method "frobnicate" not allowed.'])

  const noStream = await rejection(client.list('people'), 'list on an unmapped stream')
  t.match(noStream, { response_status: 404, action: 'list', data: null }, 'an unmapped stream rejects with a 404 (the reply comes on that stream)')

  const patchMissing = await rejection(client.patch('users', 4242, { email: '' }), 'patch missing')
  t.match(patchMissing, { response_status: 404, errors: ['Not found'] })
  const deleteMissing = await rejection(client.delete('users', 4242), 'delete missing')
  t.match(deleteMissing, { response_status: 404, errors: ['Not found'] })

  t.strictSame((await within(client.list('users'), 'list')).map((u: { username: string }) => u.username), ['ann'], 'the client still works')
})

t.test('subscribe: changes made by another client fire the callback with (object, "update") and ({id}, "delete")', async (t) => {
  const { base } = await startExample(t)
  const subscriber = connectDcrf(t, `${base}/ws/multiplex/`)
  const writer = connectDcrf(t, `${base}/ws/multiplex/`)
  const plain = await openClient(t, `${base}/ws/`)

  const ann = await within(writer.create('users', user('ann')), 'create')
  const other = await within(writer.create('users', user('other')), 'create other')
  const events = recorder()
  const subscription = subscriber.subscribe('users', ann.id, events.callback)
  t.equal(await within(subscription, 'subscription'), null, 'the subscription promise resolves (with the 201 reply\'s data, null)')

  // A change to another row fires nothing; the next call is ann's.
  await within(writer.patch('users', other.id, { email: 'elsewhere@example.com' }), 'patch other')
  await within(writer.patch('users', ann.id, { email: 'new@example.com' }), 'patch through another dcrf client')
  t.strictSame(await within(events.next(), 'update callback'), {
    data: { id: ann.id, username: 'ann', email: 'new@example.com' }, action: 'update'
  }, 'update by another dcrf client → callback(object, "update")')

  t.equal((await plain.request('update', { pk: ann.id, data: { username: 'anna', email: '' } })).response_status, 200)
  t.strictSame(await within(events.next(), 'second update callback'), {
    data: { id: ann.id, username: 'anna', email: '' }, action: 'update'
  }, 'update through the plain /ws/ route → the callback too')

  t.equal((await plain.request('delete', { pk: ann.id })).response_status, 204)
  t.strictSame(await within(events.next(), 'delete callback'), {
    data: { id: ann.id }, action: 'delete'
  }, 'delete → callback({id}, "delete"): the event\'s {"pk": id}, moved to pkField by ensurePkFieldInDeleteEvents')

  // A round trip on the subscriber: every frame before its reply has been dispatched.
  await within(subscriber.list('users'), 'list')
  t.equal(events.calls.length, 3, 'exactly three calls: no event for the other row, none twice')
  t.equal(subscription.cancel(), true, 'cancel() stops listening (dcrf-client sends no unsubscribe message)')
})

t.test('subscribe to two rows on one client: each callback gets only its own row\'s events', async (t) => {
  const { base } = await startExample(t)
  const subscriber = connectDcrf(t, `${base}/ws/multiplex/`)
  const writer = connectDcrf(t, `${base}/ws/multiplex/`)
  const a = await within(writer.create('users', user('a')), 'create a')
  const b = await within(writer.create('users', user('b')), 'create b')
  const onA = recorder()
  const onB = recorder()
  await within(subscriber.subscribe('users', a.id, onA.callback), 'subscribe a')
  await within(subscriber.subscribe('users', b.id, onB.callback), 'subscribe b')

  await within(writer.patch('users', b.id, { email: 'b2@example.com' }), 'patch b')
  t.strictSame(await within(onB.next(), 'b update'), { data: { id: b.id, username: 'b', email: 'b2@example.com' }, action: 'update' })
  await within(writer.delete('users', a.id), 'delete a')
  t.strictSame(await within(onA.next(), 'a delete'), { data: { id: a.id }, action: 'delete' })
  await within(subscriber.list('users'), 'round trip')
  t.equal(onA.calls.length, 1, 'a got only its delete')
  t.equal(onB.calls.length, 1, 'b got only its update')
})

t.test('without pkField: "id", update events never match (dcrf-client looks for data.pk); deletes still do', async (t) => {
  const { base } = await startExample(t)
  // dcrf-client's default pkField is 'pk', DCRF's default serializer field; the example's is 'id'.
  const subscriber = dcrf.connect(`${base}/ws/multiplex/`, { websocket: { WebSocket } })
  t.teardown(() => subscriber.close())
  const writer = connectDcrf(t, `${base}/ws/multiplex/`)
  const ann = await within(writer.create('users', user('ann')), 'create')
  const events = recorder()
  await within(subscriber.subscribe('users', ann.id, events.callback), 'subscribe')

  await within(writer.patch('users', ann.id, { email: 'unseen@example.com' }), 'patch')
  await within(writer.delete('users', ann.id), 'delete')
  t.strictSame(await within(events.next(), 'first callback'), { data: { pk: ann.id }, action: 'delete' },
    'the first call is the delete: the update event (data {id, …}, no pk) matched no selector')
  await within(subscriber.list('users'), 'round trip')
  t.equal(events.calls.length, 1, 'the update never fired the callback')
})

t.test('after the connection drops, dcrf-client reconnects and resubscribes; events resume', async (t) => {
  const { app, base } = await startExample(t)
  const reconnected = deferred()
  const subscriber = connectDcrf(t, `${base}/ws/multiplex/`, {
    websocket: { minReconnectionDelay: 10, maxReconnectionDelay: 50 }
  })
  subscriber.transport.on('reconnect', () => reconnected.resolve())
  const ann = await within(subscriber.create('users', user('ann')), 'create')
  // The subscriber's socket, as the server holds it: the only one open so far.
  const serverSockets = [...app.websocketServer.clients] as ServerSocket[]
  t.equal(serverSockets.length, 1, 'one server-side socket: the subscriber\'s')

  const writer = connectDcrf(t, `${base}/ws/multiplex/`)
  const events = recorder()
  await within(subscriber.subscribe('users', ann.id, events.callback), 'subscribe')
  await within(writer.patch('users', ann.id, { email: 'one@example.com' }), 'first patch')
  t.strictSame(await within(events.next(), 'first update'), { data: { id: ann.id, username: 'ann', email: 'one@example.com' }, action: 'update' })

  // The network drops the subscriber (no close handshake).
  serverSockets[0].terminate()
  await within(reconnected.promise, 'reconnect')
  // The resubscription was sent on reconnect, before this request; one stream answers in order.
  await within(subscriber.list('users'), 'round trip after reconnect')

  await within(writer.patch('users', ann.id, { email: 'two@example.com' }), 'second patch')
  t.strictSame(await within(events.next(), 'update after reconnect'), {
    data: { id: ann.id, username: 'ann', email: 'two@example.com' }, action: 'update'
  }, 'the restored subscription delivers again')
  await within(subscriber.list('users'), 'round trip')
  t.equal(events.calls.length, 2, 'once per change: the dropped socket\'s subscription was released')
})
