/**
 * Bad input (docs/protocol.md "Bad input — better than DCRF" and the error rows of "Reply"),
 * over real sockets to the example server: every bad frame gets an error reply with
 * exactly the five keys, the socket stays open and still answers a valid `list`, other
 * sockets are unaffected, and nothing reaches the database.
 */
import t from 'tap'
import { mixins } from '../index.js'
import { User, UserPublic } from '../example/user.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { startApp, startExample, type Running } from './helpers/server.js'

/** A subtest, as tap passes it to a `t.test` callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const REPLY_KEYS = ['action', 'data', 'errors', 'request_id', 'response_status']

/** Check a reply is one of ours: exactly the five keys, and the expected status/action/request_id. */
function checkReply (
  t: Test,
  reply: WireReply,
  expected: { status: number, action: unknown, requestId?: unknown, errors?: unknown[] },
  what: string
): void {
  t.strictSame(Object.keys(reply).sort(), REPLY_KEYS, `${what}: exactly the five keys`)
  t.equal(reply.response_status, expected.status, `${what}: status ${expected.status}`)
  t.strictSame(reply.action, expected.action, `${what}: action`)
  t.strictSame(reply.request_id, expected.requestId ?? null, `${what}: request_id`)
  t.equal(reply.data, null, `${what}: data null`)
  if (expected.errors !== undefined) t.strictSame(reply.errors, expected.errors, `${what}: errors`)
}

/** A bad-frame reply carries one human-readable message (the exact text is ours to choose). */
function checkOneMessage (t: Test, reply: WireReply, what: string, pattern?: RegExp): void {
  t.equal(reply.errors.length, 1, `${what}: one error`)
  t.type(reply.errors[0], 'string', `${what}: the error is a message`)
  if (pattern !== undefined) t.match(reply.errors[0], pattern, `${what}: message`)
}

/** The socket survived: a valid list on it is answered normally. */
async function checkAlive (t: Test, client: TestClient, what: string, expectedCount?: number): Promise<void> {
  const reply = await client.request('list')
  t.equal(reply.response_status, 200, `${what}: socket still answers list`)
  t.ok(Array.isArray(reply.data), `${what}: list data is an array`)
  if (expectedCount !== undefined) t.equal(reply.data.length, expectedCount, `${what}: row count unchanged`)
}

async function open (t: Test, base: string, path = '/ws/'): Promise<TestClient> {
  return await openClient(t, `${base}${path}`)
}

/** Create users through the socket (the real path, passwords hashed) and return them. */
async function seed (t: Test, client: TestClient, names: string[]): Promise<Array<{ id: number, username: string, email: string }>> {
  const out = []
  for (const username of names) {
    const reply = await client.request('create', { data: { username, email: `${username}@example.com`, password1: 'pw-1', password2: 'pw-1' } })
    t.equal(reply.response_status, 201, `seed ${username}`)
    out.push(reply.data)
  }
  return out
}

/** Every row as stored, to prove a bad request changed nothing. */
async function rows (running: Running): Promise<unknown[]> {
  const all = await running.orm.em.fork().find(User, {}, { orderBy: { id: 'asc' } })
  return all.map((u) => ({ id: u.id, username: u.username, email: u.email, password: u.password }))
}

/** A frame of exactly `bytes` bytes that is a valid `list` request. */
function listFrameOfSize (bytes: number, requestId: string): string {
  const head = JSON.stringify({ action: 'list', request_id: requestId, pad: '' })
  const frame = head.replace('"pad":""', `"pad":"${'x'.repeat(bytes - Buffer.byteLength(head))}"`)
  if (Buffer.byteLength(frame) !== bytes) throw new Error('frame size miscomputed')
  return frame
}

t.test('a text frame that is not JSON → 400, action null; the socket stays open', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  for (const text of ['not json', '{', '{"action": "list"', "{'action': 'list'}", '', ' ', 'NaN', '{"action":"list",}']) {
    client.send(text)
    const reply = await client.next()
    checkReply(t, reply, { status: 400, action: null }, `not JSON ${JSON.stringify(text)}`)
    checkOneMessage(t, reply, `not JSON ${JSON.stringify(text)}`, /JSON/)
    await checkAlive(t, client, `after ${JSON.stringify(text)}`)
  }
})

t.test('JSON that is not an object → 400, action null, never run as a request', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  // The last one wraps a valid request in an array: it must not be unwrapped and run.
  for (const text of ['[]', '"s"', '5', 'null', 'true', 'false', '1.5', '[{"action":"list","request_id":1}]']) {
    client.send(text)
    const reply = await client.next()
    checkReply(t, reply, { status: 400, action: null }, `JSON ${text}`)
    checkOneMessage(t, reply, `JSON ${text}`)
    await checkAlive(t, client, `after ${text}`)
  }
})

t.test('a binary frame → 400, never run even if it holds a valid request; the socket stays open', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  const frames = [
    Buffer.from(JSON.stringify({ action: 'list', request_id: 'bin' })),
    Buffer.from([0xff, 0x00, 0xfe, 0x01]),
    Buffer.alloc(0)
  ]
  for (const [i, frame] of frames.entries()) {
    client.send(frame, { binary: true })
    const reply = await client.next()
    checkReply(t, reply, { status: 400, action: null }, `binary frame ${i}`)
    checkOneMessage(t, reply, `binary frame ${i}`)
    await checkAlive(t, client, `after binary frame ${i}`)
  }
})

t.test('a detail action without pk → 400 keyed pk, action and request_id echoed', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  await seed(t, client, ['alice'])
  const before = await rows(running)
  const data = { username: 'changed', email: '' }
  for (const action of ['retrieve', 'update', 'patch', 'delete']) {
    client.send({ action, request_id: `no-pk-${action}`, data })
    const reply = await client.next()
    checkReply(t, reply, {
      status: 400, action, requestId: `no-pk-${action}`, errors: [{ pk: ['This field is required.'] }]
    }, `${action} without pk`)
    await checkAlive(t, client, `after ${action} without pk`, 1)
  }
  t.strictSame(await rows(running), before, 'no row changed')
})

t.test('a pk that is not a scalar of the key type → 404 Not found, and no row is touched', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  await seed(t, client, ['alice', 'bob'])
  const before = await rows(running)
  // Objects would act as MikroORM query operators ($gt: 0 matches every row); the rest are the wrong type.
  const badPks: unknown[] = [
    { $like: '%' }, { $gt: 0 }, { $ne: null }, { $in: [1, 2] }, {}, [1], [], 'abc', '%', '1 OR 1=1', '1.5',
    1.5, true, false, 1e300, 99999999999999999999
  ]
  for (const action of ['retrieve', 'update', 'patch', 'delete']) {
    for (const pk of badPks) {
      const what = `${action} pk ${JSON.stringify(pk)}`
      client.send({ action, request_id: what, pk, data: { username: 'hacked', email: 'hacked@example.com' } })
      const reply = await client.next()
      checkReply(t, reply, { status: 404, action, requestId: what, errors: ['Not found'] }, what)
      await checkAlive(t, client, `after ${what}`, 2)
    }
  }
  t.strictSame(await rows(running), before, 'no row updated or deleted')

  // The operator pk that would match every row, on delete: nothing deleted.
  client.send({ action: 'delete', request_id: 'gt', pk: { $gt: 0 } })
  checkReply(t, await client.next(), { status: 404, action: 'delete', requestId: 'gt', errors: ['Not found'] }, 'delete $gt')
  t.equal((await rows(running)).length, 2, 'delete with {"$gt":0} deleted nothing')
})

t.test('10,000-level nesting in request_id or data → 400, action as sent or null, no crash', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const depth = 10_000
  const deepArray = '['.repeat(depth) + ']'.repeat(depth)
  const deepObject = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)

  for (const [name, deep] of [['array', deepArray], ['object', deepObject]]) {
    // Deep request_id: it cannot be echoed, so null; the action is a plain string and is echoed.
    client.send(`{"action":"list","request_id":${deep}}`)
    let reply = await client.next()
    checkReply(t, reply, { status: 400, action: 'list' }, `deep ${name} request_id`)
    checkOneMessage(t, reply, `deep ${name} request_id`)
    await checkAlive(t, client, `after deep ${name} request_id`, 0)

    // Deep data: the scalar request_id is echoed; nothing is created.
    client.send(`{"action":"create","request_id":"deep-${name}","data":${deep}}`)
    reply = await client.next()
    checkReply(t, reply, { status: 400, action: 'create', requestId: `deep-${name}` }, `deep ${name} data`)
    checkOneMessage(t, reply, `deep ${name} data`)
    await checkAlive(t, client, `after deep ${name} data`, 0)

    // Deep action: not a string, so null.
    client.send(`{"action":${deep},"request_id":"deep-action-${name}"}`)
    reply = await client.next()
    t.equal(reply.response_status, 400, `deep ${name} action: 400`)
    t.equal(reply.action, null, `deep ${name} action: action null`)
    t.strictSame(Object.keys(reply).sort(), REPLY_KEYS, `deep ${name} action: five keys`)
    await checkAlive(t, client, `after deep ${name} action`, 0)

    // A deep value that is the whole frame is simply "not an object".
    client.send(deep)
    reply = await client.next()
    checkReply(t, reply, { status: 400, action: null }, `deep ${name} frame`)

    await checkAlive(t, client, `after deep ${name}`, 0)
  }

  // Near the 1 MiB frame limit: 500,000 levels, still a reply and not a stack overflow.
  const huge = 500_000
  client.send(`{"action":"patch","request_id":"huge","pk":1,"data":${'['.repeat(huge) + ']'.repeat(huge)}}`)
  checkReply(t, await client.next(), { status: 400, action: 'patch', requestId: 'huge' }, '500,000-level data')
  await checkAlive(t, client, 'after 500,000 levels', 0)
  t.strictSame(await rows(running), [], 'nothing was written')
})

t.test('create/update/patch without data → 400 keyed data, nothing written', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const [alice] = await seed(t, client, ['alice'])
  const before = await rows(running)
  for (const [action, args] of [['create', {}], ['update', { pk: alice.id }], ['patch', { pk: alice.id }]] as const) {
    client.send({ action, request_id: `no-data-${action}`, ...args })
    checkReply(t, await client.next(), {
      status: 400, action, requestId: `no-data-${action}`, errors: [{ data: ['This field is required.'] }]
    }, `${action} without data`)
    await checkAlive(t, client, `after ${action} without data`, 1)
  }
  t.strictSame(await rows(running), before, 'no row created or changed')
})

t.test('an unknown action → 405 "Method \\"x\\" not allowed.", action echoed, case-sensitive', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  // 'Create' and 'LIST' differ from real actions only by case; 'list ' by a space.
  for (const action of ['x', 'Create', 'LIST', 'list ', 'Delete', '', 'subscribe', 'list_cancel']) {
    client.send({ action, request_id: `unknown-${action}`, data: { username: 'u', password1: 'p', password2: 'p' } })
    checkReply(t, await client.next(), {
      status: 405, action, requestId: `unknown-${action}`, errors: [`Method "${action}" not allowed.`]
    }, `action ${JSON.stringify(action)}`)
    await checkAlive(t, client, `after action ${JSON.stringify(action)}`, 0)
  }
  t.strictSame(await rows(running), [], '"Create" did not create')
})

t.test('{} and a frame without action → 405 "Unable to find action in message body.", action null', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const [alice] = await seed(t, client, ['alice'])
  client.send({})
  checkReply(t, await client.next(), {
    status: 405, action: null, requestId: null, errors: ['Unable to find action in message body.']
  }, '{}')
  await checkAlive(t, client, 'after {}', 1)

  // A frame with every argument but the action: nothing is guessed, nothing deleted.
  client.send({ request_id: 7, pk: alice.id })
  checkReply(t, await client.next(), {
    status: 405, action: null, requestId: 7, errors: ['Unable to find action in message body.']
  }, 'no action key')
  await checkAlive(t, client, 'after a frame without action', 1)
})

t.test('subscribe_instance without request_id → 400 keyed request_id', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  const [alice] = await seed(t, client, ['alice'])
  client.send({ action: 'subscribe_instance', pk: alice.id })
  const reply = await client.next()
  t.equal(reply.response_status, 400, 'status 400')
  t.strictSame(reply.errors, [{ request_id: ['This field is required.'] }], 'keyed request_id')
  t.strictSame(Object.keys(reply).sort(), REPLY_KEYS, 'exactly the five keys')
  await checkAlive(t, client, 'after subscribe_instance without request_id', 1)
})

t.test('a frame over the plugin maxPayload → close 1009; one at the limit is answered', async (t) => {
  const running = await startApp(t, [User], (app) => {
    app.wsRest.route('/ws/', { entity: User, schema: { response: UserPublic }, actions: [mixins.list()] })
  }, { maxPayload: 1024 })
  const client = await open(t, running.base)
  const other = await open(t, running.base)

  // Exactly at the limit: a normal reply.
  client.send(listFrameOfSize(1024, 'at-limit'))
  const reply = await client.next()
  t.equal(reply.response_status, 200, '1024-byte frame answered')
  t.equal(reply.request_id, 'at-limit', 'its request_id echoed')

  // One byte over: the socket is closed with 1009.
  client.send(listFrameOfSize(1025, 'over'))
  t.equal((await client.waitClose()).code, 1009, '1025-byte frame → close 1009')

  // The other socket, and new connections, are unaffected.
  await checkAlive(t, other, 'other socket after a 1009', 0)
  await checkAlive(t, await open(t, running.base), 'new socket after a 1009', 0)
})

t.test('a frame over a route maxPayload → close 1009', async (t) => {
  const running = await startApp(t, [User], (app) => {
    app.wsRest.route('/small/', { entity: User, schema: { response: UserPublic }, actions: [mixins.list()], maxPayload: 256 })
  })
  const client = await open(t, running.base, '/small/')
  client.send(listFrameOfSize(256, 'at-limit'))
  t.equal((await client.next()).response_status, 200, '256-byte frame answered')
  client.send(listFrameOfSize(257, 'over'))
  t.equal((await client.waitClose()).code, 1009, '257-byte frame → close 1009')
})

t.test('a frame over 1 MiB on the example → close 1009, other sockets keep working', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  const other = await open(t, base)
  client.send(listFrameOfSize(1024 * 1024 + 1, 'too-big'))
  t.equal((await client.waitClose()).code, 1009, 'close 1009')
  await checkAlive(t, other, 'other socket after a 1009', 0)
})

t.test('a bad frame on one socket does not affect another open socket', async (t) => {
  const running = await startExample(t)
  const bad = await open(t, running.base)
  const good = await open(t, running.base)
  await seed(t, good, ['alice'])
  const depth = 10_000
  const badFrames: Array<string | Buffer> = [
    'not json', '[]', 'null', Buffer.from([0xff]), '{}', '{"action":"x"}', '{"action":"delete","pk":{"$gt":0}}',
    `{"action":"list","request_id":${'['.repeat(depth) + ']'.repeat(depth)}}`
  ]
  for (const [i, frame] of badFrames.entries()) {
    bad.send(frame)
    const reply = await bad.next()
    t.ok(reply.response_status >= 400, `bad frame ${i}: an error reply on its own socket`)
    // request() checks the next message on `good` is its own reply, not a stray one from `bad`.
    await checkAlive(t, good, `good socket after bad frame ${i}`, 1)
  }
  // Even a socket closed for an oversized frame leaves the other one working.
  bad.send('x'.repeat(1024 * 1024 + 1))
  t.equal((await bad.waitClose()).code, 1009, 'bad socket closed 1009')
  await checkAlive(t, good, 'good socket after the other closed 1009', 1)
})

t.test('a text frame that is not valid UTF-8 → close 1007 (RFC 6455), other sockets unaffected', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  const other = await open(t, base)
  // Sent as a *text* frame: the bytes cannot be decoded, so the RFC requires failing the connection.
  client.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false })
  t.equal((await client.waitClose()).code, 1007, 'close 1007')
  await checkAlive(t, other, 'other socket after a 1007', 0)
})

t.test('__proto__ and constructor as action names → 405, no crash', async (t) => {
  const { base } = await startExample(t)
  const client = await open(t, base)
  for (const action of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__']) {
    client.send({ action, request_id: action })
    checkReply(t, await client.next(), {
      status: 405, action, requestId: action, errors: [`Method "${action}" not allowed.`]
    }, `action ${action}`)
    await checkAlive(t, client, `after action ${action}`, 0)
  }
})

t.test('__proto__ / constructor keys in frames and data are never written and pollute nothing', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const [alice] = await seed(t, client, ['alice'])

  // JSON.parse makes "__proto__" an own key; it must not supply the action or the pk.
  client.send('{"__proto__":{"action":"list"},"request_id":"p1"}')
  checkReply(t, await client.next(), {
    status: 405, action: null, requestId: 'p1', errors: ['Unable to find action in message body.']
  }, 'action only inside __proto__')
  await checkAlive(t, client, 'after action only inside __proto__', 1)
  client.send(`{"action":"delete","request_id":"p2","__proto__":{"pk":${alice.id}}}`)
  checkReply(t, await client.next(), {
    status: 400, action: 'delete', requestId: 'p2', errors: [{ pk: ['This field is required.'] }]
  }, 'pk only inside __proto__')
  await checkAlive(t, client, 'after pk only inside __proto__', 1)

  // Required fields hidden in __proto__ do not count as present.
  client.send('{"action":"create","request_id":"p3","data":{"__proto__":{"username":"x","password1":"p","password2":"p"}}}')
  checkReply(t, await client.next(), {
    status: 400,
    action: 'create',
    requestId: 'p3',
    errors: [{ username: ['This field is required.'], password1: ['This field is required.'], password2: ['This field is required.'] }]
  }, 'create fields only inside __proto__')
  await checkAlive(t, client, 'after create fields only inside __proto__', 1)

  // Beside valid fields, __proto__ / constructor keys are dropped: not written, no error.
  client.send('{"action":"create","request_id":"p4","data":{"username":"proto","password1":"pw","password2":"pw",' +
    '"__proto__":{"email":"evil@example.com","id":99,"polluted":true},"constructor":{"prototype":{"polluted":true}}}}')
  const created = await client.next()
  t.equal(created.response_status, 201, 'create with __proto__ keys: 201')
  t.strictSame(created.data, { id: 2, username: 'proto', email: '' }, 'created without anything from __proto__')

  client.send(`{"action":"patch","request_id":"p5","pk":${alice.id},"data":{"__proto__":{"username":"hacked","email":"evil@example.com"},"constructor":{"username":"hacked"}}}`)
  const patched = await client.next()
  t.equal(patched.response_status, 200, 'patch with only __proto__ / constructor keys: 200 (an empty patch)')
  t.strictSame(patched.data, alice, 'reply shows alice unchanged')

  client.send('{"action":"retrieve","request_id":"p6","pk":"__proto__"}')
  checkReply(t, await client.next(), { status: 404, action: 'retrieve', requestId: 'p6', errors: ['Not found'] }, 'pk "__proto__"')
  await checkAlive(t, client, 'after pk "__proto__"', 2)
  client.send('{"action":"retrieve","request_id":"p7","pk":"constructor"}')
  checkReply(t, await client.next(), { status: 404, action: 'retrieve', requestId: 'p7', errors: ['Not found'] }, 'pk "constructor"')
  await checkAlive(t, client, 'after pk "constructor"', 2)

  const stored = await rows(running) as Array<{ id: number, username: string, email: string }>
  t.strictSame(stored.map(({ id, username, email }) => ({ id, username, email })), [alice, { id: 2, username: 'proto', email: '' }], 'rows as expected')
  // The server runs in this process: its Object.prototype must be untouched.
  const probe = {} as Record<string, unknown>
  for (const key of ['polluted', 'username', 'email', 'pk', 'action', 'id']) t.equal(probe[key], undefined, `Object.prototype.${key} not set`)
})
