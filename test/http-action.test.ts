/**
 * HTTP routes over the socket (`httpAction`, DCRF's `view_as_consumer`): routes of the same
 * app run through `inject` with their own hooks, validation and serialization; the reply
 * carries the route's status in the protocol's shape. Real sockets; no database needed.
 */
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import wsRest, { action, httpAction, type ActionDefinition } from '../index.js'
import { deferred, within, type Teardown } from './helpers/async.js'
import { openClient, type TestClient } from './helpers/client.js'
import { thrownBy } from './helpers/throws.js'

/** A client whose upgrade request carries `headers` (identity forwarded to the HTTP routes). */
async function open (t: Teardown, url: string, headers: Record<string, string> = {}): Promise<TestClient> {
  return await openClient(t, url, { headers })
}

const FIVE_KEYS = ['errors', 'data', 'action', 'response_status', 'request_id']

// ---------------------------------------------------------------------------
// The HTTP API the socket exposes
// ---------------------------------------------------------------------------

const ItemParams = Type.Object({ id: Type.Integer() })
const ItemIn = Type.Object({ name: Type.String({ minLength: 1 }) })
/** What the HTTP API sends of an item: `secret` is not declared, so Fastify's serializer drops it. */
const ItemOut = Type.Object({ id: Type.Integer(), name: Type.String(), owner: Type.String(), seenBy: Type.String() })

interface StoredItem { id: number, name: string, owner: string, secret: string }

/** Counts of what the HTTP handlers actually ran, to show validation/auth/permissions stopped a request before them. */
interface Hits { retrieve: number, create: number, health: number }

/**
 * `GET /items/:id` and `POST /items` behind an `onRequest` auth hook that reads
 * `authorization: Bearer <user>` (401 otherwise), plus an open `GET /health`.
 */
function itemsApi (hits: Hits) {
  return async function (app: FastifyInstance): Promise<void> {
    const items = new Map<number, StoredItem>([[1, { id: 1, name: 'one', owner: 'alice', secret: 's3cr3t' }]])
    let nextId = 2
    const userOf = new WeakMap<FastifyRequest, string>()

    app.get('/health', async () => { hits.health++; return { ok: true } })

    await app.register(async (api) => {
      api.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
        const match = /^Bearer (\w+)$/.exec(request.headers.authorization ?? '')
        if (match === null) {
          await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Authentication required.' })
          return reply
        }
        userOf.set(request, match[1])
      })

      api.get<{ Params: { id: number } }>('/items/:id', {
        schema: { params: ItemParams, response: { 200: ItemOut } }
      }, async (request, reply) => {
        hits.retrieve++
        const item = items.get(request.params.id)
        if (item === undefined) return await reply.code(404).send({ statusCode: 404, error: 'Not Found', message: 'Not found' })
        return { ...item, seenBy: userOf.get(request) }
      })

      api.post<{ Body: { name: string } }>('/items', {
        schema: { body: ItemIn, response: { 201: ItemOut } }
      }, async (request, reply) => {
        hits.create++
        const user = userOf.get(request) ?? ''
        const item = { id: nextId++, name: request.body.name, owner: user, secret: `secret of ${user}` }
        items.set(item.id, item)
        return await reply.code(201).send({ ...item, seenBy: user })
      })
    })
  }
}

/** An app with the items API and a wsRest route exposing it, listening on an ephemeral port. */
async function startApi (
  t: Teardown,
  actions: ActionDefinition[] = [
    httpAction('retrieve', { method: 'GET', url: '/items/:id' }),
    httpAction('create', { method: 'POST', url: '/items' }),
    httpAction('health', { method: 'GET', url: '/health' })
  ],
  extra: (app: FastifyInstance) => void | Promise<void> = () => {},
  fastifyOptions: FastifyServerOptions = { logger: false }
): Promise<{ app: FastifyInstance, base: string, hits: Hits }> {
  const hits: Hits = { retrieve: 0, create: 0, health: 0 }
  const app = Fastify(fastifyOptions)
  t.teardown(async () => await app.close())
  await app.register(wsRest)
  await app.register(itemsApi(hits))
  await extra(app)
  app.wsRest.route('/ws/', { actions })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, base: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`, hits }
}

const alice = { authorization: 'Bearer alice' }

// ---------------------------------------------------------------------------
// Status, serialization, validation, auth
// ---------------------------------------------------------------------------

t.test('retrieve through GET /items/:id: the route\'s status and its response serialization (secret stripped)', async (t) => {
  const { base, hits } = await startApi(t)
  const client = await open(t, `${base}/ws/`, alice)

  client.send({ action: 'retrieve', request_id: { job: [7, 'x'] }, id: 1 })
  const reply = await client.next()
  t.strictSame(Object.keys(reply), FIVE_KEYS, 'exactly the five keys, in DCRF\'s order')
  t.strictSame(reply, {
    errors: [],
    data: { id: 1, name: 'one', owner: 'alice', seenBy: 'alice' },
    action: 'retrieve',
    response_status: 200,
    request_id: { job: [7, 'x'] }
  }, 'the body as the route serialized it; request_id echoed verbatim')
  t.notOk('secret' in reply.data, 'the route\'s response schema dropped the secret')

  const missing = await client.request('retrieve', { id: 99 })
  t.strictSame(missing, {
    errors: [], data: { statusCode: 404, error: 'Not Found', message: 'Not found' }, action: 'retrieve', response_status: 404, request_id: missing.request_id
  }, 'the route\'s 404 passes through with its body as data, as DCRF\'s view_as_consumer')
  t.strictSame(Object.keys(missing), FIVE_KEYS)

  const hitsBefore = hits.retrieve
  const badParam = await client.request('retrieve', { id: 'abc' })
  t.strictSame([badParam.response_status, badParam.errors, badParam.data.message], [400, [], 'params/id must be integer'],
    'the route\'s params schema applies: Fastify\'s validation 400 and its message')
  t.equal(hits.retrieve, hitsBefore, 'the handler never ran for the invalid param')
})

t.test('create through POST /items: 201 with the serialized body; the route\'s body validation → 400', async (t) => {
  const { base, hits } = await startApi(t)
  const client = await open(t, `${base}/ws/`, alice)

  const created = await client.request('create', { data: { name: 'two' } })
  t.strictSame(created, {
    errors: [], data: { id: 2, name: 'two', owner: 'alice', seenBy: 'alice' }, action: 'create', response_status: 201, request_id: created.request_id
  }, '201 passes through; `data` was the JSON body; secret stripped by the 201 response schema')
  t.strictSame(Object.keys(created), FIVE_KEYS)
  t.equal((await client.request('retrieve', { id: 2 })).data.name, 'two', 'the item exists afterwards')

  const before = hits.create
  const invalid = await client.request('create', { data: { name: '' } })
  t.strictSame([invalid.response_status, invalid.errors, invalid.data.message], [400, [], 'body/name must NOT have fewer than 1 characters'])
  t.strictSame((await client.request('create', { data: {} })).data.message, 'body must have required property \'name\'')
  t.strictSame((await client.request('create', { data: 'just text' })).data.message, 'body must be object')
  t.strictSame((await client.request('create')).response_status, 400, 'no data → no body → the route\'s schema refuses it')
  t.equal(hits.create, before, 'the route\'s handler never ran for an invalid body')
  t.equal((await client.request('retrieve', { id: 3 })).response_status, 404, 'nothing was created')
})

t.test('the route\'s auth hook sees the forwarded authorization: without it 401 in the reply, the socket stays open', async (t) => {
  const { base, hits } = await startApi(t)
  const anonymous = await open(t, `${base}/ws/`)
  const wrong = await open(t, `${base}/ws/`, { authorization: 'Basic YWxpY2U6cHc=' })
  const bob = await open(t, `${base}/ws/`, { authorization: 'Bearer bob' })

  const denied = await anonymous.request('retrieve', { id: 1 })
  t.strictSame(denied, {
    errors: [], data: { statusCode: 401, error: 'Unauthorized', message: 'Authentication required.' }, action: 'retrieve', response_status: 401, request_id: denied.request_id
  })
  t.strictSame(Object.keys(denied), FIVE_KEYS)
  t.strictSame((await wrong.request('retrieve', { id: 1 })).response_status, 401, 'a header the hook refuses → 401 too')
  t.strictSame((await anonymous.request('create', { data: { name: 'sneaky' } })).response_status, 401)
  t.equal(hits.retrieve + hits.create, 0, 'no handler ran for an unauthenticated request')

  // The socket is still open and answering.
  const health = await anonymous.request('health')
  t.strictSame([health.response_status, health.data], [200, { ok: true }], 'the same socket keeps working')
  t.equal(hits.health, 1)

  // Each connection carries its own identity to the route.
  t.equal((await bob.request('retrieve', { id: 1 })).data.seenBy, 'bob')
  t.equal((await bob.request('create', { data: { name: 'bobs' } })).data.owner, 'bob')
  t.equal((await bob.request('retrieve', { id: 2 })).data.name, 'bobs', 'the 401 create above created nothing (id 2 is bob\'s)')
})

// ---------------------------------------------------------------------------
// Filling the request from the message
// ---------------------------------------------------------------------------

t.test('URL parameters: top-level, `pk` for :id, DCRF\'s `parameters`; encoded into their segment; bad ones → 400 keyed', async (t) => {
  let tailHits = 0
  const { base } = await startApi(t, [
    httpAction('retrieve', { method: 'GET', url: '/items/:id' }),
    httpAction('echo', { method: 'GET', url: '/echo/:a/tail' }),
    httpAction('two', { method: 'GET', url: '/pair/:a-:b' }),
    httpAction('maybe', { method: 'GET', url: '/maybe/:id?' }),
    httpAction('digits', { method: 'GET', url: '/digits/:n(^\\d+$)' })
  ], (app) => {
    app.get<{ Params: { a: string } }>('/echo/:a/tail', async (request) => ({ a: request.params.a }))
    app.get('/tail', async () => { tailHits++; return { reached: 'tail' } })
    app.get<{ Params: { a: string, b: string } }>('/pair/:a-:b', async (request) => request.params)
    app.get<{ Params: { id?: string } }>('/maybe/:id?', async (request) => ({ id: request.params.id ?? null }))
    app.get<{ Params: { n: string } }>('/digits/:n(^\\d+$)', async (request) => ({ n: request.params.n }))
  })
  const client = await open(t, `${base}/ws/`, alice)
  const pick = (r: { response_status: number, data: unknown, errors: unknown[] }): unknown[] => [r.response_status, r.data, r.errors]

  t.equal((await client.request('retrieve', { id: 1 })).data.id, 1, 'top-level `id`')
  t.equal((await client.request('retrieve', { id: '1' })).data.id, 1, 'a numeric string, coerced by the route\'s params schema')
  t.equal((await client.request('retrieve', { pk: 1 })).data.id, 1, '`pk` fills `:id`, as a DCRF front end sends it')
  t.equal((await client.request('retrieve', { parameters: { id: 1 } })).data.id, 1, 'DCRF\'s `parameters`')
  t.equal((await client.request('retrieve', { parameters: { id: 1 }, id: 99, pk: 98 })).data.id, 1, '`parameters` wins over top-level keys')
  t.equal((await client.request('retrieve', { id: 1, pk: 99 })).data.id, 1, '`id` wins over `pk`')

  t.strictSame(pick(await client.request('retrieve')), [400, null, [{ id: ['This field is required.'] }]])
  t.strictSame(pick(await client.request('retrieve', { id: { $gt: 0 } })), [400, null, [{ id: ['A valid string or number is required.'] }]])
  t.strictSame(pick(await client.request('retrieve', { id: [1] })), [400, null, [{ id: ['A valid string or number is required.'] }]])
  t.strictSame(pick(await client.request('retrieve', { id: true })), [400, null, [{ id: ['A valid string or number is required.'] }]])
  t.strictSame(pick(await client.request('retrieve', { id: '' })), [400, null, [{ id: ['This field may not be blank.'] }]])
  t.strictSame(pick(await client.request('retrieve', { parameters: 'id=1' })), [400, null, [{ parameters: ['Expected a dictionary of URL parameters.'], id: ['This field is required.'] }]],
    'every bad parameter at once')
  t.strictSame(pick(await client.request('two', {})), [400, null, [{ a: ['This field is required.'], b: ['This field is required.'] }]])

  // Values stay inside their path segment: no other route is reachable through them.
  t.strictSame(pick(await client.request('echo', { a: '../..' })), [200, { a: '../..' }, []], 'slashes are encoded')
  t.strictSame(pick(await client.request('echo', { a: 'x?y=1#z' })), [200, { a: 'x?y=1#z' }, []], '? and # are encoded')
  t.strictSame(pick(await client.request('echo', { a: '%2E%2E' })), [200, { a: '%2E%2E' }, []], 'a literal percent is encoded')
  t.strictSame(pick(await client.request('echo', { a: '..' })), [400, null, [{ a: ['Enter a valid value.'] }]],
    '`..` would be resolved as a dot segment: refused')
  t.strictSame(pick(await client.request('echo', { a: '.' })), [400, null, [{ a: ['Enter a valid value.'] }]])
  t.strictSame(pick(await client.request('echo', { a: 'ünï cødé' })), [200, { a: 'ünï cødé' }, []], 'unicode round-trips')
  t.equal(tailHits, 0, 'GET /tail was never reached')

  t.strictSame(pick(await client.request('two', { a: 'x', b: 'y' })), [200, { a: 'x', b: 'y' }, []], 'several parameters in one segment')
  t.strictSame(pick(await client.request('maybe')), [200, { id: null }, []], 'an optional parameter may be left out')
  t.strictSame(pick(await client.request('maybe', { id: 'z' })), [200, { id: 'z' }, []])
  t.strictSame(pick(await client.request('digits', { n: 42 })), [200, { n: '42' }, []], 'a parameter\'s regex is the route\'s to check')
  t.equal((await client.request('digits', { n: 'abc' })).response_status, 404, 'a value the regex refuses matches no route')
})

t.test('`query` → the querystring, through the route\'s querystring schema; a bad `query` → 400 keyed query', async (t) => {
  const { base } = await startApi(t, [httpAction('search', { method: 'GET', url: '/search' })], (app) => {
    app.get('/search', {
      schema: {
        querystring: Type.Object({
          q: Type.String(),
          limit: Type.Integer({ default: 10 }),
          tags: Type.Optional(Type.Array(Type.String())),
          exact: Type.Optional(Type.Boolean())
        })
      }
    }, async (request) => request.query)
  })
  const client = await open(t, `${base}/ws/`)
  const pick = (r: { response_status: number, data: unknown, errors: unknown[] }): unknown[] => [r.response_status, r.data, r.errors]

  t.strictSame(pick(await client.request('search', { query: { q: 'a b&c=d', limit: '5', tags: ['x', 'y'], exact: true } })),
    [200, { q: 'a b&c=d', limit: 5, tags: ['x', 'y'], exact: true }, []], 'values encoded, then coerced by the route\'s schema')
  t.strictSame(pick(await client.request('search', { query: { q: 'z' } })), [200, { q: 'z', limit: 10 }, []], 'the schema\'s defaults apply')
  const badLimit = await client.request('search', { query: { q: 'z', limit: 'many' } })
  t.strictSame([badLimit.response_status, badLimit.data.message], [400, 'querystring/limit must be integer'], 'the route\'s querystring validation applies')
  t.strictSame((await client.request('search')).data.message, 'querystring must have required property \'q\'')

  const expected = [400, null, [{ query: ['Expected a dictionary of strings, numbers, booleans or lists of them.'] }]]
  t.strictSame(pick(await client.request('search', { query: 'q=z' })), expected, 'a string is not a dictionary')
  t.strictSame(pick(await client.request('search', { query: ['q'] })), expected)
  t.strictSame(pick(await client.request('search', { query: { q: { $ne: '' } } })), expected, 'nested objects are refused')
  t.strictSame(pick(await client.request('search', { query: { q: [['z']] } })), expected)
})

t.test('replies: text, empty and JSON bodies; a 4xx carries the route\'s body as data; a 5xx never leaks', async (t) => {
  const { base } = await startApi(t, [
    httpAction('text', { method: 'GET', url: '/text' }),
    httpAction('empty', { method: 'GET', url: '/empty' }),
    httpAction('list', { method: 'GET', url: '/list' }),
    httpAction('moved', { method: 'GET', url: '/moved' }),
    httpAction('drf', { method: 'GET', url: '/drf' }),
    httpAction('detail', { method: 'GET', url: '/detail' }),
    httpAction('text_error', { method: 'GET', url: '/text-error' }),
    httpAction('bare_error', { method: 'GET', url: '/bare-error' }),
    httpAction('many_errors', { method: 'GET', url: '/many-errors' }),
    httpAction('boom', { method: 'GET', url: '/boom' }),
    httpAction('bad_gateway', { method: 'GET', url: '/bad-gateway' }),
    httpAction('nowhere', { method: 'GET', url: '/nowhere' })
  ], (app) => {
    app.get('/text', async (_request, reply) => await reply.type('text/plain').send('pong'))
    app.get('/empty', async (_request, reply) => await reply.code(204).send())
    app.get('/list', async () => [1, 'two', null])
    app.get('/moved', async (_request, reply) => await reply.redirect('/text', 302))
    app.get('/drf', async (_request, reply) => await reply.code(400).send({ name: ['This name is reserved.'] }))
    app.get('/detail', async (_request, reply) => await reply.code(403).send({ detail: 'Nope.' }))
    app.get('/text-error', async (_request, reply) => await reply.code(409).type('text/plain').send('already taken'))
    app.get('/bare-error', async (_request, reply) => await reply.code(418).send())
    app.get('/many-errors', async (_request, reply) => await reply.code(422).send(['first', 'second']))
    app.get('/boom', async () => { throw new Error('SELECT secret FROM users WHERE 1') })
    app.get('/bad-gateway', async (_request, reply) => await reply.code(502).send({ message: 'upstream 10.0.0.3:5432 refused', stack: 'at db.ts:1' }))
  })
  const client = await open(t, `${base}/ws/`)
  const pick = (r: { response_status: number, data: unknown, errors: unknown[] }): unknown[] => [r.response_status, r.data, r.errors]

  t.strictSame(pick(await client.request('text')), [200, 'pong', []], 'a text body is the data')
  t.strictSame(pick(await client.request('empty')), [204, null, []], 'an empty body is null')
  t.strictSame(pick(await client.request('list')), [200, [1, 'two', null], []], 'any JSON body')
  t.strictSame(pick(await client.request('moved')), [302, null, []], 'a redirect\'s status passes through (it is not followed)')
  // A 4xx is the view's answer as DCRF's view_as_consumer gives it: the body as data, no errors.
  t.strictSame(pick(await client.request('drf')), [400, { name: ['This name is reserved.'] }, []], 'a DRF-shaped body is the data')
  t.strictSame(pick(await client.request('detail')), [403, { detail: 'Nope.' }, []], 'DRF\'s {detail}')
  t.strictSame(pick(await client.request('text_error')), [409, 'already taken', []], 'a text error')
  t.strictSame(pick(await client.request('bare_error')), [418, null, []], 'an empty error body is null')
  t.strictSame(pick(await client.request('many_errors')), [422, ['first', 'second'], []], 'a list')
  const nowhere = await client.request('nowhere')
  t.strictSame([nowhere.response_status, nowhere.data.message], [404, 'Route GET:/nowhere not found'], 'no such route → Fastify\'s 404')

  for (const [name, status] of [['boom', 500], ['bad_gateway', 502]] as const) {
    const reply = await client.request(name)
    t.strictSame(reply, { errors: ['Internal server error'], data: null, action: name, response_status: status, request_id: reply.request_id },
      `${name}: the status, and nothing of the route's body`)
    t.notMatch(JSON.stringify(reply), /SELECT|10\.0\.0\.3|stack|db\.ts/, `${name}: no internals`)
  }
  t.equal((await client.request('text')).data, 'pong', 'the socket is still answering')
})

t.test('forwardHeaders: identity headers by default, a configurable list; the client IP goes along', async (t) => {
  const { base } = await startApi(t, [
    httpAction('whoami', { method: 'GET', url: '/whoami' }),
    httpAction('whoami_key', { method: 'GET', url: '/whoami', forwardHeaders: ['X-Api-Key', 'cookie'] }),
    httpAction('whoami_none', { method: 'GET', url: '/whoami', forwardHeaders: [] })
  ], (app) => {
    app.get('/whoami', async (request) => ({
      authorization: request.headers.authorization ?? null,
      cookie: request.headers.cookie ?? null,
      key: request.headers['x-api-key'] ?? null,
      other: request.headers['x-other'] ?? null,
      ip: request.ip
    }))
  }, { logger: false, trustProxy: true })
  const client = await open(t, `${base}/ws/`, {
    authorization: 'Bearer alice', cookie: 'sid=abc', 'x-api-key': 'k-1', 'x-other': 'o', 'x-forwarded-for': '203.0.113.7'
  })

  t.strictSame((await client.request('whoami')).data,
    { authorization: 'Bearer alice', cookie: 'sid=abc', key: null, other: null, ip: '203.0.113.7' },
    'default: authorization and cookie only; request.ip is the socket client\'s')
  t.strictSame((await client.request('whoami_key')).data,
    { authorization: null, cookie: 'sid=abc', key: 'k-1', other: null, ip: '203.0.113.7' },
    'the configured list (case-insensitive) replaces the default')
  t.strictSame((await client.request('whoami_none')).data,
    { authorization: null, cookie: null, key: null, other: null, ip: '203.0.113.7' }, 'an empty list forwards nothing')
})

t.test('method defaults follow DCRF action names; `data` is the body of POST/PUT/PATCH/DELETE only', async (t) => {
  const { base } = await startApi(t, ['list', 'retrieve', 'create', 'update', 'patch', 'delete'].map((name) => httpAction(name, { url: '/m' })), (app) => {
    app.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      url: '/m',
      handler: async (request) => ({
        method: request.method,
        body: request.body ?? null,
        type: request.headers['content-type'] ?? null
      })
    })
  })
  const client = await open(t, `${base}/ws/`)
  const expected: Record<string, string> = { list: 'GET', retrieve: 'GET', create: 'POST', update: 'PUT', patch: 'PATCH', delete: 'DELETE' }
  for (const [name, method] of Object.entries(expected)) {
    const sendsBody = method !== 'GET'
    t.strictSame((await client.request(name, { data: { n: 1 } })).data,
      { method, body: sendsBody ? { n: 1 } : null, type: sendsBody ? 'application/json' : null }, `${name} → ${method}`)
  }
  t.strictSame((await client.request('create')).data, { method: 'POST', body: null, type: null }, 'no `data` → no body at all')
  t.strictSame((await client.request('create', { data: null })).data, { method: 'POST', body: null, type: 'application/json' }, '`data: null` is sent as JSON null')
})

t.test('the action\'s permissions run before the HTTP route is called', async (t) => {
  const { base, hits } = await startApi(t, [
    httpAction('retrieve', { method: 'GET', url: '/items/:id', permissions: [{ hasPermission: (_ctx, _action, args) => args.id !== 1 }] })
  ])
  const client = await open(t, `${base}/ws/`, alice)
  t.strictSame((await client.request('retrieve', { id: 1 })).errors, ['You do not have permission to perform this action.'])
  t.equal(hits.retrieve, 0, 'the route never ran')
  t.equal((await client.request('retrieve', { id: 2 })).response_status, 404, 'control: an allowed message reaches the route')
  t.equal(hits.retrieve, 1)
})

t.test('shutdown: an HTTP action still queued once the app is closing gets 503, then the socket closes with 1001', async (t) => {
  const closing = deferred()
  const started = deferred()
  const app = Fastify({ logger: false })
  let closed = false
  t.teardown(async () => { if (!closed) await app.close() })
  // Added before the plugin, so it runs before the plugin's drain: Fastify is closing from here on.
  app.addHook('preClose', async () => { closing.resolve() })
  await app.register(wsRest)
  app.get('/health', async () => ({ ok: true }))
  app.wsRest.route('/ws/', {
    actions: [
      action('wait_for_close', async () => { started.resolve(); await within(closing.promise, 'app.close()'); return { data: 'done' } }),
      httpAction('health', { method: 'GET', url: '/health' })
    ]
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const client = await openClient(t, `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws/`)

  t.equal((await client.request('health')).response_status, 200, 'control: 200 while the app runs')
  client.send({ action: 'wait_for_close', request_id: 'w' })
  client.send({ action: 'health', request_id: 'h' })
  await within(started.promise, 'the first action to start')
  const closedApp = app.close().then(() => { closed = true })

  const [first, second] = await client.take(2)
  t.strictSame([first.request_id, first.response_status, first.data], ['w', 200, 'done'])
  t.strictSame(second, { errors: ['Internal server error'], data: null, action: 'health', response_status: 503, request_id: 'h' },
    'Fastify refuses new requests while closing; the reply says so')
  t.equal((await client.waitClose()).code, 1001)
  await within(closedApp, 'app.close()')
})

t.test('declaration: bad options fail fast with a coded error naming the option', async (t) => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['a name with no default method', () => httpAction('rename', { url: '/x' }), /"method"/],
    ['an unsupported method', () => httpAction('x', { method: 'TRACE' as never, url: '/x' }), /"method"/],
    ['a method that is not a string', () => httpAction('x', { method: 7 as never, url: '/x' }), /"method"/],
    ['a name that is an Object.prototype key', () => httpAction('toString', { url: '/x' }), /"method"/],
    ['no url', () => httpAction('retrieve', {} as never), /"url"/],
    ['a url without a leading slash', () => httpAction('retrieve', { url: 'items/:id' }), /"url"/],
    ['a url with a query string', () => httpAction('retrieve', { url: '/items?x=1' }), /"url"/],
    ['a url with a wildcard', () => httpAction('retrieve', { url: '/files/*' }), /"url"/],
    ['a parameter without a name', () => httpAction('retrieve', { url: '/items/:/x' }), /"url"/],
    ['an unclosed parameter regex', () => httpAction('retrieve', { url: '/items/:id(^\\d+' }), /"url"/],
    ['forwardHeaders not an array', () => httpAction('retrieve', { url: '/x', forwardHeaders: 'authorization' as never }), /"forwardHeaders"/],
    ['a forwarded body header', () => httpAction('retrieve', { url: '/x', forwardHeaders: ['Content-Type'] }), /"forwardHeaders"/],
    ['no options', () => httpAction('retrieve', undefined as never), /"options"/]
  ]
  for (const [what, fn, names] of cases) {
    const err = thrownBy(fn)
    t.equal(err.code, 'FST_WSREST_INVALID_OPTION', `${what}: coded error`)
    t.match(err.message, names, `${what}: names the option`)
  }

  // Control: good options give an action that needs no entity, so a route without an ORM takes it.
  const def = httpAction('retrieve', { url: '/items/:id(^\\d+$)', method: 'get', forwardHeaders: ['Authorization'] })
  t.strictSame([def.name, def.needsModel, def.transaction, def.stream, def.detached], ['retrieve', false, false, false, false])
  t.equal(httpAction('sync', { method: 'POST', url: '/sync', detached: true }).detached, true)
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest)
  t.doesNotThrow(() => app.wsRest.route('/ws/', { actions: [def] }))

  // Its permissions are checked where every action's are: when the route is declared.
  const badPermissions = thrownBy(() => app.wsRest.route('/ws/p/', {
    actions: [httpAction('retrieve', { url: '/x', permissions: {} as never })]
  }))
  t.equal(badPermissions.code, 'FST_WSREST_INVALID_OPTION', 'permissions not an array: coded error')
  t.match(badPermissions.message, /permissions/, 'permissions not an array: names the option')
})
