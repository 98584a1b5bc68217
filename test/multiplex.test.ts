/**
 * Multiplexed routes (docs/protocol.md "Multiplexing") over real sockets: every frame is an
 * envelope `{"stream", "payload"}` both ways. The example's `/ws/multiplex/` (stream
 * `users`, the `/ws/` actions) for CRUD, subscriptions and bad envelopes; bare apps for
 * two streams on two entities, per-stream and per-socket connect permissions, and
 * streams running beside each other.
 *
 * Every reply is asserted as the whole frame: exactly `stream` and `payload`, and a
 * payload of exactly the five DCRF keys.
 */
import type { MikroORM } from '@mikro-orm/core'
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { thrownBy } from './helpers/throws.js'
import { action, mixins, type Permission, type RouteOptions } from '../index.js'
import { gate, within } from './helpers/async.js'
import { openClient, upgradeStatus, type TestClient, type WireReply } from './helpers/client.js'
import { Item, itemModel } from './helpers/item.js'
import { startApp, startExample } from './helpers/server.js'

/** A subtest, as tap passes it to a `t.test` callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

/** A frame of a multiplexed socket. */
interface Envelope {
  stream: unknown
  payload: WireReply
}

const ENVELOPE_KEYS = ['stream', 'payload']
const REPLY_KEYS = ['errors', 'data', 'action', 'response_status', 'request_id']
const DENIED = ['You do not have permission to perform this action.']

/** A second entity, so two streams of one socket can be told apart by their tables and shapes. */
const Tag = defineEntity({
  name: 'Tag',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    label: p.string()
  })
})
type Tag = InferEntity<typeof Tag>
const TagInput = Type.Object({ label: Type.String({ minLength: 1 }) })
const TagPublic = Type.Object({ id: Type.Integer(), label: Type.String() })

const tagModel = { entity: Tag, schema: { create: TagInput, update: TagInput, response: TagPublic } }

/** A custom action answering which route ran it, so a 200 proves where a request went. */
function whoami (route: string) {
  return action('whoami', {}, async () => ({ data: { route } }))
}

/** The next frame of a multiplexed socket, checked to be an envelope of a five-key reply. */
async function nextEnvelope (t: Test, client: TestClient, what: string): Promise<Envelope> {
  const frame = await client.next() as unknown as Envelope
  t.strictSame(Object.keys(frame), ENVELOPE_KEYS, `${what}: exactly "stream" and "payload"`)
  t.strictSame(Object.keys(frame.payload ?? {}), REPLY_KEYS, `${what}: a payload of exactly the five keys, in order`)
  return frame
}

let counter = 0

/**
 * Send `{stream, payload: {action, request_id, ...args}}` and await the next frame, which
 * must be that request's reply (a stream answers in order; no subscription may interleave here).
 */
async function mux (
  t: Test,
  client: TestClient,
  stream: string,
  actionName: string,
  args: Record<string, unknown> = {},
  requestId: unknown = `${stream}-${actionName}-${++counter}`
): Promise<Envelope> {
  client.send({ stream, payload: { action: actionName, request_id: requestId, ...args } })
  const frame = await nextEnvelope(t, client, `${stream} ${actionName}`)
  if (frame.stream !== stream || JSON.stringify(frame.payload.request_id) !== JSON.stringify(requestId)) {
    throw new Error(`expected the reply to ${JSON.stringify(requestId)} on ${stream}, got ${JSON.stringify(frame)}`)
  }
  return frame
}

/** An error frame: stream, status, action and request_id as expected, data null, one message matching `message`. */
function checkError (
  t: Test,
  frame: Envelope,
  expected: { stream: string | null, status: number, action?: unknown, requestId?: unknown, message?: RegExp, errors?: unknown[] },
  what: string
): void {
  t.equal(frame.stream, expected.stream, `${what}: stream ${JSON.stringify(expected.stream)}`)
  const { payload } = frame
  t.equal(payload.response_status, expected.status, `${what}: status ${expected.status}`)
  t.strictSame(payload.action, expected.action ?? null, `${what}: action`)
  t.strictSame(payload.request_id, expected.requestId ?? null, `${what}: request_id`)
  t.equal(payload.data, null, `${what}: data null`)
  if (expected.errors !== undefined) {
    t.strictSame(payload.errors, expected.errors, `${what}: errors`)
  } else {
    t.equal(payload.errors.length, 1, `${what}: one error`)
    t.type(payload.errors[0], 'string', `${what}: the error is a message`)
    if (expected.message !== undefined) t.match(payload.errors[0], expected.message, `${what}: message`)
  }
}

/** The socket survived: a valid `list` on `stream` is answered 200 (with `count` rows when given). */
async function checkAlive (t: Test, client: TestClient, what: string, stream = 'users', count?: number): Promise<void> {
  const frame = await mux(t, client, stream, 'list')
  t.equal(frame.payload.response_status, 200, `${what}: the socket still answers a list on ${stream}`)
  if (count !== undefined) t.equal(frame.payload.data.length, count, `${what}: ${count} rows`)
}

function user (username: string, email = `${username}@example.com`): Record<string, string> {
  return { username, email, password1: 'pw-1', password2: 'pw-1' }
}

function queryOf (request: FastifyRequest): Record<string, string | undefined> {
  return request.query as Record<string, string | undefined>
}

/** A connect-time permission that lets in only `?token=<token>`. */
function tokenIs (token: string): Permission {
  return { canConnect: (request) => queryOf(request).token === token }
}

async function count (orm: MikroORM, entity: 'Item' | 'Tag'): Promise<number> {
  return entity === 'Item' ? await orm.em.fork().count(Item, {}) : await orm.em.fork().count(Tag, {})
}

// ------------------------------------------------------------------ the example's /ws/multiplex/

t.test('CRUD through stream "users": every reply is {"stream":"users","payload":<five keys>}', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/multiplex/`)
  const frames: unknown[] = []
  client.socket.on('message', (data) => frames.push(JSON.parse(data.toString())))

  const created = await mux(t, client, 'users', 'create', { data: user('ann') }, 'c-1')
  const id = created.payload.data?.id as number
  t.ok(Number.isInteger(id) && id > 0, 'the created user has an integer id')
  const ann = { id, username: 'ann', email: 'ann@example.com' }
  t.strictSame(created, {
    stream: 'users',
    payload: { errors: [], data: ann, action: 'create', response_status: 201, request_id: 'c-1' }
  }, 'create → 201 with the public shape (no password)')

  const bob = (await mux(t, client, 'users', 'create', { data: user('bob', '') })).payload.data
  t.strictSame(bob, { id: bob.id, username: 'bob', email: '' })

  t.strictSame(await mux(t, client, 'users', 'retrieve', { pk: id }, 42), {
    stream: 'users',
    payload: { errors: [], data: ann, action: 'retrieve', response_status: 200, request_id: 42 }
  }, 'retrieve → 200, a numeric request_id echoed as a number')

  t.strictSame(await mux(t, client, 'users', 'list', {}, { any: ['json'] }), {
    stream: 'users',
    payload: { errors: [], data: [ann, bob], action: 'list', response_status: 200, request_id: { any: ['json'] } }
  }, 'list → 200, every user ordered by id; an object request_id echoed verbatim')

  t.strictSame(await mux(t, client, 'users', 'list', { filter: { username: 'bob' } }, 'l-f'), {
    stream: 'users',
    payload: { errors: [], data: [bob], action: 'list', response_status: 200, request_id: 'l-f' }
  }, 'list takes the route\'s filter through the stream too')

  const renamed = { id, username: 'anna', email: 'anna@example.com' }
  t.strictSame(await mux(t, client, 'users', 'update', { pk: id, data: { username: 'anna', email: 'anna@example.com' } }, 'u-1'), {
    stream: 'users',
    payload: { errors: [], data: renamed, action: 'update', response_status: 200, request_id: 'u-1' }
  }, 'update → 200 with the object after the change')

  t.strictSame(await mux(t, client, 'users', 'patch', { pk: id, data: { email: 'a@example.org' } }, 'p-1'), {
    stream: 'users',
    payload: { errors: [], data: { ...renamed, email: 'a@example.org' }, action: 'patch', response_status: 200, request_id: 'p-1' }
  }, 'patch → 200, only the given field changed')

  t.strictSame(await mux(t, client, 'users', 'delete', { pk: id }, 'd-1'), {
    stream: 'users',
    payload: { errors: [], data: null, action: 'delete', response_status: 204, request_id: 'd-1' }
  }, 'delete → 204, data null')

  t.strictSame(await mux(t, client, 'users', 'retrieve', { pk: id }, 'r-404'), {
    stream: 'users',
    payload: { errors: ['Not found'], data: null, action: 'retrieve', response_status: 404, request_id: 'r-404' }
  }, 'retrieve of the deleted pk → 404 Not found')

  t.strictSame(await mux(t, client, 'users', 'patch', { pk: 99999, data: { email: '' } }, 'p-404'), {
    stream: 'users',
    payload: { errors: ['Not found'], data: null, action: 'patch', response_status: 404, request_id: 'p-404' }
  }, 'patch of a missing pk → 404')

  t.strictSame(await mux(t, client, 'users', 'create', { data: { ...user('carl'), password2: 'other' } }, 'c-400'), {
    stream: 'users',
    payload: { errors: [{ password2: ['Passwords do not match.'] }], data: null, action: 'create', response_status: 400, request_id: 'c-400' }
  }, 'mismatched passwords → 400 keyed password2')

  t.strictSame(await mux(t, client, 'users', 'create', { data: user('bob') }, 'c-dup'), {
    stream: 'users',
    payload: { errors: [{ username: ['user with this username already exists.'] }], data: null, action: 'create', response_status: 400, request_id: 'c-dup' }
  }, 'a duplicate username → 400 keyed username')

  t.strictSame(await mux(t, client, 'users', 'frobnicate', {}, 'x-405'), {
    stream: 'users',
    payload: { errors: ['Method "frobnicate" not allowed.'], data: null, action: 'frobnicate', response_status: 405, request_id: 'x-405' }
  }, 'an unknown action → 405 on the stream')

  t.strictSame((await mux(t, client, 'users', 'list', {}, 'l-end')).payload.data, [bob], 'only bob is left')

  // Every frame the socket received, not only the ones awaited above.
  t.ok(frames.length >= 14, 'frames were recorded')
  t.strictSame(frames.filter((f) => Object.keys(f as object).join() !== 'stream,payload'), [], 'no frame outside the envelope')
})

t.test('subscribe_instance on the stream: changes made by other sockets arrive in the stream\'s envelope', async (t) => {
  const { base } = await startExample(t)
  const subscriber = await openClient(t, `${base}/ws/multiplex/`)
  const plain = await openClient(t, `${base}/ws/`)
  const otherMux = await openClient(t, `${base}/ws/multiplex/`)

  const created = await plain.request('create', { data: user('ann') })
  const id = created.data.id as number

  t.strictSame(await mux(t, subscriber, 'users', 'subscribe_instance', { pk: id }, 'sub-1'), {
    stream: 'users',
    payload: { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub-1' }
  }, 'subscribe_instance → 201, data null')

  // A patch through the plain route…
  t.equal((await plain.request('patch', { pk: id, data: { email: 'new@example.com' } })).response_status, 200)
  t.strictSame(await within(nextEnvelope(t, subscriber, 'update event'), 'update event'), {
    stream: 'users',
    payload: { errors: [], data: { id, username: 'ann', email: 'new@example.com' }, action: 'update', response_status: 200, request_id: 'sub-1' }
  }, 'the update event, with the subscription\'s request_id, wrapped for stream users')

  // …and one through another multiplexed socket.
  t.equal((await mux(t, otherMux, 'users', 'update', { pk: id, data: { username: 'anna', email: '' } })).payload.response_status, 200)
  t.strictSame(await nextEnvelope(t, subscriber, 'second update event'), {
    stream: 'users',
    payload: { errors: [], data: { id, username: 'anna', email: '' }, action: 'update', response_status: 200, request_id: 'sub-1' }
  }, 'an update made on another multiplexed socket arrives too')

  t.equal((await mux(t, otherMux, 'users', 'delete', { pk: id })).payload.response_status, 204)
  t.strictSame(await nextEnvelope(t, subscriber, 'delete event'), {
    stream: 'users',
    payload: { errors: [], data: { pk: id }, action: 'delete', response_status: 204, request_id: 'sub-1' }
  }, 'the delete event: data {"pk": id}, 204')

  // The subscriber is still an ordinary socket: its next frame is the reply to its next request.
  // The row is gone: DCRF looks it up, so unsubscribing answers 404.
  t.strictSame(await mux(t, subscriber, 'users', 'unsubscribe_instance', { pk: id }, 'unsub'), {
    stream: 'users',
    payload: { errors: ['Not found'], data: null, action: 'unsubscribe_instance', response_status: 404, request_id: 'unsub' }
  }, 'unsubscribe_instance of a deleted row → 404')
})

t.test('subscribe_list on the stream: a row entering the filter arrives as a create event on the stream', async (t) => {
  const { base } = await startExample(t)
  const subscriber = await openClient(t, `${base}/ws/multiplex/`)
  const plain = await openClient(t, `${base}/ws/`)

  t.strictSame(await mux(t, subscriber, 'users', 'subscribe_list', { filter: { username: { $contains: 'z' } } }, 'zs'), {
    stream: 'users',
    payload: { errors: [], data: null, action: 'subscribe_list', response_status: 201, request_id: 'zs' }
  })
  await plain.request('create', { data: user('ann') }) // outside the filter: nothing
  const zed = (await plain.request('create', { data: user('zed') })).data
  t.strictSame(await nextEnvelope(t, subscriber, 'create event'), {
    stream: 'users',
    payload: { errors: [], data: zed, action: 'create', response_status: 201, request_id: 'zs' }
  }, 'the first event is zed\'s (ann, outside the filter, sent nothing)')
})

t.test('an unmapped stream → 404 on that stream name, action and request_id echoed; the socket stays open', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/multiplex/`)

  client.send({ stream: 'nope', payload: { action: 'list', request_id: 'n-1' } })
  const frame = await nextEnvelope(t, client, 'stream nope')
  checkError(t, frame, { stream: 'nope', status: 404, action: 'list', requestId: 'n-1', message: /nope/ }, 'stream nope')
  await checkAlive(t, client, 'after stream nope')

  // Names that are not streams of this route, including case variants and Object.prototype keys.
  for (const stream of ['', 'Users', 'users ', 'user', '__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
    const what = `stream ${JSON.stringify(stream)}`
    client.send({ stream, payload: { action: 'create', request_id: what, data: user('mallory') } })
    checkError(t, await nextEnvelope(t, client, what), { stream, status: 404, action: 'create', requestId: what }, what)
    await checkAlive(t, client, `after ${what}`, 'users', 0)
  }

  // An unmapped stream whose payload is not a request: still the stream's 404, nothing to echo.
  client.send({ stream: 'nope', payload: 5 })
  checkError(t, await nextEnvelope(t, client, 'nope, payload 5'), { stream: 'nope', status: 404 }, 'nope, payload 5')
  await checkAlive(t, client, 'after nope with payload 5', 'users', 0)
  t.equal(client.socket.readyState, client.socket.OPEN, 'the socket is open')
})

t.test('frames that are not an envelope → 400 (stream null when none could be read), never a close', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/multiplex/`)
  const request = { action: 'list', request_id: 'inner' }

  const noStream: Array<[string, string | Buffer, RegExp?]> = [
    ['not JSON', 'not json', /JSON/],
    ['truncated JSON', '{"stream":"users","payload":{"action":"list"}', /JSON/],
    ['empty text', ''],
    ['a JSON array', '[]', /array/],
    ['an envelope inside an array', JSON.stringify([{ stream: 'users', payload: request }]), /array/],
    ['a JSON string', '"users"', /string/],
    ['a JSON number', '5', /number/],
    ['JSON null', 'null', /null/],
    ['JSON true', 'true', /boolean/],
    ['an empty object', '{}'],
    ['an object without stream', JSON.stringify({ payload: request })],
    ['a bare DCRF request', JSON.stringify(request)],
    ['stream a number', JSON.stringify({ stream: 5, payload: request })],
    ['stream null', JSON.stringify({ stream: null, payload: request })],
    ['stream an array', JSON.stringify({ stream: ['users'], payload: request })],
    ['stream an object', JSON.stringify({ stream: { name: 'users' }, payload: request })],
    ['stream true', JSON.stringify({ stream: true, payload: request })]
  ]
  for (const [what, text, message] of noStream) {
    client.send(text)
    checkError(t, await nextEnvelope(t, client, what), { stream: null, status: 400, message }, what)
    await checkAlive(t, client, `after ${what}`, 'users', 0)
  }

  // Binary frames are never parsed, even when they hold a valid envelope.
  for (const [i, bytes] of [Buffer.from(JSON.stringify({ stream: 'users', payload: { action: 'create', request_id: 'bin', data: user('bin') } })), Buffer.from([0xff, 0x00]), Buffer.alloc(0)].entries()) {
    client.send(bytes, { binary: true })
    checkError(t, await nextEnvelope(t, client, `binary frame ${i}`), { stream: null, status: 400, message: /[Bb]inary/ }, `binary frame ${i}`)
    await checkAlive(t, client, `after binary frame ${i}`, 'users', 0)
  }

  // The stream could be read: the error goes out on it.
  const onStream: Array<[string, unknown, { status: number, action?: unknown, requestId?: unknown, message?: RegExp, errors?: unknown[] }]> = [
    ['payload 5', { stream: 'users', payload: 5 }, { status: 400, message: /number/ }],
    ['payload a string', { stream: 'users', payload: 'list' }, { status: 400, message: /string/ }],
    ['payload an array', { stream: 'users', payload: [request] }, { status: 400, message: /array/ }],
    ['payload null', { stream: 'users', payload: null }, { status: 400, message: /null/ }],
    ['payload true', { stream: 'users', payload: true }, { status: 400, message: /boolean/ }],
    ['no payload', { stream: 'users' }, { status: 400 }],
    ['payload without action', { stream: 'users', payload: { request_id: 'no-action' } },
      { status: 405, requestId: 'no-action', errors: ['Unable to find action in message body.'] }],
    ['an empty payload', { stream: 'users', payload: {} }, { status: 405, errors: ['Unable to find action in message body.'] }],
    ['action null', { stream: 'users', payload: { action: null, request_id: 'null-action' } },
      { status: 405, requestId: 'null-action', errors: ['Unable to find action in message body.'] }],
    ['action in the wrong case', { stream: 'users', payload: { action: 'LIST', request_id: 'upper' } },
      { status: 405, action: 'LIST', requestId: 'upper', errors: ['Method "LIST" not allowed.'] }],
    ['action not a string', { stream: 'users', payload: { action: 5, request_id: 'five' } },
      { status: 405, action: 5, requestId: 'five', errors: ['Method "5" not allowed.'] }]
  ]
  for (const [what, frame, expected] of onStream) {
    client.send(frame)
    checkError(t, await nextEnvelope(t, client, what), { stream: 'users', ...expected }, what)
    await checkAlive(t, client, `after ${what}`, 'users', 0)
  }

  // The action/request_id belong in the payload; at the envelope's top level they are ignored.
  client.send({ stream: 'users', action: 'create', request_id: 'outer', payload: { action: 'list', request_id: 'inner-2' } })
  t.strictSame(await nextEnvelope(t, client, 'keys outside the payload'), {
    stream: 'users',
    payload: { errors: [], data: [], action: 'list', response_status: 200, request_id: 'inner-2' }
  }, 'the payload is the request; extra envelope keys are ignored')

  t.equal(client.socket.readyState, client.socket.OPEN, 'the socket is still open')
})

t.test('a 10,000-level nested payload → 400 on the stream it names, never a crash', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/multiplex/`)
  const deep = '['.repeat(10_000) + ']'.repeat(10_000)
  client.send(`{"stream":"users","payload":{"action":"create","request_id":"deep","data":${deep}}}`)
  const frame = await nextEnvelope(t, client, 'deep data')
  checkError(t, frame, { stream: 'users', status: 400, action: 'create', requestId: 'deep' }, 'deep data')
  await checkAlive(t, client, 'after deep data', 'users', 0)
})

t.test('deep nesting on a multiplexed socket is refused without a crash (what the server does today)', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/multiplex/`)
  const deep = '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000)
  client.send(`{"stream":"users","payload":{"action":"create","request_id":"deep","data":${deep}}}`)
  const frame = await nextEnvelope(t, client, 'deep data')
  t.equal(frame.payload.response_status, 400, 'a 400')
  t.equal(frame.payload.data, null, 'data null')
  t.equal(frame.payload.errors.length, 1, 'one message')
  await checkAlive(t, client, 'after deep data', 'users', 0)
})

// ------------------------------------------------------------------ bare apps: several streams

t.test('two streams on two entities: each request goes to its own route, each event to the stream it was made on', async (t) => {
  const { base, orm } = await startApp(t, [Item, Tag], (app) => {
    app.wsRest.multiplex('/mux/', {
      streams: {
        items: { ...itemModel, actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.patch(), mixins.delete(), mixins.subscribeInstance(), whoami('items')] },
        tags: { ...tagModel, actions: [mixins.create(), mixins.list(), mixins.patch(), mixins.delete(), mixins.subscribeInstance(), whoami('tags')] }
      }
    })
  })
  const client = await openClient(t, `${base}/mux/`)
  const writer = await openClient(t, `${base}/mux/`)

  t.strictSame(await mux(t, client, 'items', 'create', { data: { name: 'i1' } }, 'ci'), {
    stream: 'items', payload: { errors: [], data: { id: 1, name: 'i1' }, action: 'create', response_status: 201, request_id: 'ci' }
  }, 'create on items makes an Item')
  t.strictSame(await mux(t, client, 'tags', 'create', { data: { label: 'red' } }, 'ct'), {
    stream: 'tags', payload: { errors: [], data: { id: 1, label: 'red' }, action: 'create', response_status: 201, request_id: 'ct' }
  }, 'create on tags makes a Tag (its own table: id 1 again, its own shape)')
  t.equal(await count(orm, 'Item'), 1)
  t.equal(await count(orm, 'Tag'), 1)

  t.strictSame((await mux(t, client, 'items', 'whoami')).payload.data, { route: 'items' })
  t.strictSame((await mux(t, client, 'tags', 'whoami')).payload.data, { route: 'tags' })
  t.strictSame((await mux(t, client, 'items', 'list')).payload.data, [{ id: 1, name: 'i1' }])
  t.strictSame((await mux(t, client, 'tags', 'list')).payload.data, [{ id: 1, label: 'red' }])
  t.strictSame(await mux(t, client, 'tags', 'retrieve', { pk: 1 }, 'rt'), {
    stream: 'tags', payload: { errors: ['Method "retrieve" not allowed.'], data: null, action: 'retrieve', response_status: 405, request_id: 'rt' }
  }, 'an action only the other stream has → 405 on this one')
  t.strictSame(await mux(t, client, 'tags', 'create', { data: { name: 'wrong-schema' } }, 'bad'), {
    stream: 'tags', payload: { errors: [{ label: ['This field is required.'] }], data: null, action: 'create', response_status: 400, request_id: 'bad' }
  }, 'each stream validates with its own schema')

  // One request_id for both subscriptions: only the envelope tells the events apart.
  t.equal((await mux(t, client, 'items', 'subscribe_instance', { pk: 1 }, 'sub')).payload.response_status, 201)
  t.equal((await mux(t, client, 'tags', 'subscribe_instance', { pk: 1 }, 'sub')).payload.response_status, 201)

  await mux(t, writer, 'items', 'patch', { pk: 1, data: { name: 'i1b' } })
  t.strictSame(await nextEnvelope(t, client, 'item event'), {
    stream: 'items', payload: { errors: [], data: { id: 1, name: 'i1b' }, action: 'update', response_status: 200, request_id: 'sub' }
  }, 'the Item change arrives on items')
  t.strictSame((await mux(t, client, 'tags', 'whoami')).payload.data, { route: 'tags' }, 'and nothing arrived on tags for it')

  await mux(t, writer, 'tags', 'patch', { pk: 1, data: { label: 'blue' } })
  t.strictSame(await nextEnvelope(t, client, 'tag event'), {
    stream: 'tags', payload: { errors: [], data: { id: 1, label: 'blue' }, action: 'update', response_status: 200, request_id: 'sub' }
  }, 'the Tag change arrives on tags')

  await mux(t, writer, 'tags', 'delete', { pk: 1 })
  t.strictSame(await nextEnvelope(t, client, 'tag delete'), {
    stream: 'tags', payload: { errors: [], data: { pk: 1 }, action: 'delete', response_status: 204, request_id: 'sub' }
  })
  await mux(t, writer, 'items', 'delete', { pk: 1 })
  t.strictSame(await nextEnvelope(t, client, 'item delete'), {
    stream: 'items', payload: { errors: [], data: { pk: 1 }, action: 'delete', response_status: 204, request_id: 'sub' }
  })
})

t.test('a stream whose canConnect refuses the upgrade: 403 on that stream, the other streams work', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', {
      streams: {
        items: { ...itemModel, actions: [mixins.list(), mixins.create()] },
        vault: { ...itemModel, permissions: [tokenIs('key')], actions: [mixins.list(), mixins.create()] }
      }
    })
  })
  t.equal(await upgradeStatus(`${base}/mux/`), 101, 'a refused stream does not refuse the socket')
  const client = await openClient(t, `${base}/mux/`)

  t.strictSame(await mux(t, client, 'vault', 'list', {}, 'v-1'), {
    stream: 'vault', payload: { errors: DENIED, data: null, action: 'list', response_status: 403, request_id: 'v-1' }
  }, 'list on the refused stream → 403, action and request_id echoed')
  t.strictSame(await mux(t, client, 'vault', 'create', { data: { name: 'smuggled' } }, 'v-2'), {
    stream: 'vault', payload: { errors: DENIED, data: null, action: 'create', response_status: 403, request_id: 'v-2' }
  }, 'create on the refused stream → 403')
  t.strictSame(await mux(t, client, 'vault', 'no-such-action', {}, 'v-3'), {
    stream: 'vault', payload: { errors: DENIED, data: null, action: 'no-such-action', response_status: 403, request_id: 'v-3' }
  }, 'any action on it → 403 (refused before the action is looked up)')
  client.send({ stream: 'vault', payload: 'x' })
  checkError(t, await nextEnvelope(t, client, 'vault, payload not an object'), { stream: 'vault', status: 403, errors: DENIED }, 'vault, payload not an object')
  t.equal(await count(orm, 'Item'), 0, 'nothing was written through the refused stream')

  t.strictSame(await mux(t, client, 'items', 'create', { data: { name: 'fine' } }, 'i-1'), {
    stream: 'items', payload: { errors: [], data: { id: 1, name: 'fine' }, action: 'create', response_status: 201, request_id: 'i-1' }
  }, 'the other stream works on the same socket')

  // With the token, the same stream is open.
  const keyed = await openClient(t, `${base}/mux/?token=key`)
  t.strictSame(await mux(t, keyed, 'vault', 'list', {}, 'k-1'), {
    stream: 'vault', payload: { errors: [], data: [{ id: 1, name: 'fine' }], action: 'list', response_status: 200, request_id: 'k-1' }
  }, 'a socket the stream accepts uses it')
  t.strictSame((await mux(t, client, 'vault', 'list')).payload.response_status, 403, 'the first socket is still refused on it')
})

t.test('a stream\'s hasPermission applies to that stream\'s actions only', async (t) => {
  const readOnly: Permission = { hasPermission: (_ctx, name) => name === 'list' }
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', {
      streams: {
        items: { ...itemModel, actions: [mixins.list(), mixins.create()] },
        readonly: { ...itemModel, permissions: [readOnly], actions: [mixins.list(), mixins.create()] }
      }
    })
  })
  const client = await openClient(t, `${base}/mux/`)
  t.strictSame(await mux(t, client, 'readonly', 'create', { data: { name: 'no' } }, 'ro'), {
    stream: 'readonly', payload: { errors: DENIED, data: null, action: 'create', response_status: 403, request_id: 'ro' }
  })
  t.equal((await mux(t, client, 'readonly', 'list')).payload.response_status, 200)
  t.equal((await mux(t, client, 'items', 'create', { data: { name: 'yes' } })).payload.response_status, 201)
  t.equal(await count(orm, 'Item'), 1)
})

t.test('the multiplexed route\'s own permissions refusing at connect → HTTP 403 on the upgrade', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', {
      permissions: [tokenIs('ok')],
      streams: { items: { ...itemModel, actions: [mixins.list()] } }
    })
  })
  t.equal(await upgradeStatus(`${base}/mux/`), 403, 'no token: refused before the socket opens')
  t.equal(await upgradeStatus(`${base}/mux/?token=wrong`), 403, 'a wrong token: refused')
  t.equal(await upgradeStatus(`${base}/mux/?token=ok`), 101, 'the right token: the socket opens')
  const client = await openClient(t, `${base}/mux/?token=ok`)
  t.equal((await mux(t, client, 'items', 'list')).payload.response_status, 200)
  t.equal(await upgradeStatus(`${base}/nope/`), 404, 'an unknown path → 404')
})

t.test('the multiplexed route\'s own onRequest hook can refuse the upgrade', async (t) => {
  const refuseWithoutHeader = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (queryOf(request).token !== 'ok') await reply.code(401).send({ error: 'no token' })
  }
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', { onRequest: refuseWithoutHeader, streams: { items: { ...itemModel, actions: [mixins.list()] } } })
  })
  t.equal(await upgradeStatus(`${base}/mux/`), 401)
  t.equal(await upgradeStatus(`${base}/mux/?token=ok`), 101)
})

t.test('a stream route\'s own upgrade hooks (which would never run) are refused at declaration, naming the option', async (t) => {
  const refuse = async (_request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    await reply.code(403).send({ error: 'refused by the stream\'s hook' })
  }
  const guarded: RouteOptions = { ...itemModel, onRequest: refuse, actions: [mixins.list(), mixins.create()] }
  await startApp(t, [Item], (app) => {
    t.match(thrownBy(() => app.wsRest.multiplex('/mux/', { streams: { items: { ...itemModel, actions: [mixins.list()] }, guarded } })),
      { code: 'FST_WSREST_INVALID_OPTION', message: /streams\.guarded\.onRequest/ }, 'a guard that would silently not guard is an error')
    for (const option of ['preValidation', 'preHandler', 'config', 'maxPayload'] as const) {
      const value = option === 'config' ? {} : option === 'maxPayload' ? 10 : refuse
      t.match(thrownBy(() => app.wsRest.multiplex(`/mux-${option}/`, { streams: { s: { ...itemModel, [option]: value, actions: [mixins.list()] } } })),
        { code: 'FST_WSREST_INVALID_OPTION', message: new RegExp(`streams\\.s\\.${option}`) })
    }
  })
})

t.test('two streams in flight on one socket do not block each other; each keeps its own order', async (t) => {
  const held = gate()
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', {
      streams: {
        slow: { actions: [action('hold', {}, async () => { await held.wait(); return { data: 'held' } }), whoami('slow')] },
        fast: { actions: [whoami('fast')] }
      }
    })
  })
  const client = await openClient(t, `${base}/mux/`)
  t.teardown(held.open)

  client.send({ stream: 'slow', payload: { action: 'hold', request_id: 'h' } })
  await within(held.entered, 'the slow action started')
  client.send({ stream: 'slow', payload: { action: 'whoami', request_id: 's-after' } })

  // The slow stream is busy; the fast one answers anyway.
  t.strictSame(await mux(t, client, 'fast', 'whoami', {}, 'f-1'), {
    stream: 'fast', payload: { errors: [], data: { route: 'fast' }, action: 'whoami', response_status: 200, request_id: 'f-1' }
  }, 'the fast stream answers while the slow one is held')
  t.strictSame((await mux(t, client, 'fast', 'whoami', {}, 'f-2')).payload.request_id, 'f-2', 'and again')

  held.open()
  t.strictSame(await nextEnvelope(t, client, 'held reply'), {
    stream: 'slow', payload: { errors: [], data: 'held', action: 'hold', response_status: 200, request_id: 'h' }
  }, 'the held action answers once released')
  t.strictSame(await nextEnvelope(t, client, 'queued reply'), {
    stream: 'slow', payload: { errors: [], data: { route: 'slow' }, action: 'whoami', response_status: 200, request_id: 's-after' }
  }, 'the slow stream\'s next request ran after it, in order')
})
