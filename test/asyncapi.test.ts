/**
 * The AsyncAPI 3.0 document: the example's, fetched over HTTP as a user would and checked
 * with the official parser (zero errors), and a bare app's, whose custom action's TypeBox
 * schema must show through.
 */
import { DiagnosticSeverity, Parser, type AsyncAPIDocumentInterface } from '@asyncapi/parser'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import wsRest, { action, type AsyncApiDocument, type WsRestOptions } from '../index.js'
import { UserCreate } from '../example/user.js'
import { startExample } from './helpers/server.js'

type Json = Record<string, any>

/** Follow a local `$ref` (`#/a/b`) inside `doc`. */
function resolve (doc: Json, node: Json): Json {
  if (typeof node.$ref !== 'string') return node
  const target = (node.$ref as string).slice(2).split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<Json>((at, part) => at[part], doc)
  return resolve(doc, target)
}

/** Parse with @asyncapi/parser; fails the test on any diagnostic of severity error. */
async function parse (t: Test, doc: unknown): Promise<AsyncAPIDocumentInterface> {
  const { document, diagnostics } = await new Parser().parse(JSON.parse(JSON.stringify(doc)))
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error)
  t.strictSame(errors.map((d) => `${d.path.join('.')}: ${d.message}`), [], 'the parser reports no errors')
  if (document === undefined) throw new Error('the parser returned no document')
  return document
}

/** The payload of the n-th message an operation sends (or of its reply), resolved. */
function payloadOf (doc: Json, ref: Json): Json {
  return resolve(doc, resolve(doc, ref).payload)
}

/** The example's document over HTTP: valid, complete, and faithful to the route options. */
t.test('the example serves a valid AsyncAPI 3.0 document at /asyncapi.json', async (t) => {
  const { app, base } = await startExample(t)
  const response = await fetch(`${base.replace(/^ws/, 'http')}/asyncapi.json`)
  t.equal(response.status, 200)
  t.match(response.headers.get('content-type'), /^application\/json/)
  const doc = await response.json() as AsyncApiDocument
  const parsed = await parse(t, doc)

  t.equal(doc.asyncapi, '3.0.0')
  t.equal(doc.info.title, 'fastify-ws-rest example')
  t.equal(typeof doc.info.version, 'string')
  t.match(doc.servers, { default: { host: new URL(base).host, protocol: 'ws' } }, 'the server is the one the request reached')

  t.test('every route of the example is a channel', async (t) => {
    const addresses = parsed.channels().all().map((c) => c.address())
    for (const path of ['/ws/', '/ws/multiplex/', '/ws/paginated/', '/ws/cursor/', '/ws/stream/', '/ws/secure/']) {
      t.ok(addresses.includes(path), `${path} is a channel`)
    }
    for (const address of addresses) {
      t.ok(app.hasRoute({ method: 'GET', url: address as string }), `${String(address)} is a route of the app`)
    }
  })

  t.test('create on /ws/: a send operation with data of UserCreate, replying with the response schema', async (t) => {
    const operation = doc.operations['ws.create']
    t.equal(operation.action, 'send')
    t.equal(resolve(doc, operation.channel).address, '/ws/')
    const request = payloadOf(doc, operation.messages[0])
    t.equal(request.properties.action.const, 'create')
    t.ok(request.required.includes('data'), 'data is required')
    const data = resolve(doc, request.properties.data)
    const expected = JSON.parse(JSON.stringify(UserCreate)) as Json
    t.strictSame(Object.keys(data.properties), Object.keys(expected.properties), 'every field of UserCreate')
    t.strictSame(data.required, expected.required)
    t.strictSame(data.properties.username, { type: 'string', minLength: 1, maxLength: 150 })
    t.notOk('trim' in data.properties.password1, 'TypeBox-only keywords are dropped')

    const [ok, error] = operation.reply.messages as Json[]
    const reply = payloadOf(doc, ok)
    t.strictSame(reply.properties.data, { $ref: '#/components/schemas/User' }, 'data references the response schema')
    t.strictSame(reply.properties.response_status, { type: 'integer', const: 201 })
    t.strictSame(reply.required, ['errors', 'data', 'action', 'response_status', 'request_id'])
    t.strictSame(payloadOf(doc, error), doc.components.schemas.ErrorReply, 'error replies are a message too')
    t.strictSame(Object.keys(doc.components.schemas.User.properties), ['id', 'username', 'email'])

    const message = parsed.operations().all().find((o) => o.id() === 'ws.create')?.messages().all()[0]
    t.equal(message?.contentType(), 'application/json')
    t.equal(message?.name(), 'create.request')
    t.ok(message?.title())
  })

  t.test('the password never appears in what the server sends', async (t) => {
    t.notMatch(JSON.stringify(doc.components.schemas.User), /password/)
    for (const operation of parsed.operations().all()) {
      const sent = operation.isReceive() ? operation.messages().all() : operation.reply()?.messages().all() ?? []
      for (const message of sent) t.notMatch(JSON.stringify(message.payload()?.json()), /password/, `${operation.id()}: no password`)
    }
  })

  t.test('subscribe_instance and subscribe_list have receive operations for their events', async (t) => {
    const subscribe = payloadOf(doc, doc.operations['ws.subscribe_instance'].messages[0])
    t.ok(subscribe.required.includes('pk') && subscribe.required.includes('request_id'), 'pk and request_id are required')
    const update = doc.operations['ws.subscribe_instance.update']
    t.equal(update.action, 'receive')
    t.match(payloadOf(doc, update.messages[0]).properties, {
      action: { const: 'update' }, response_status: { const: 200 }, data: { $ref: '#/components/schemas/User' }
    })
    const deleted = payloadOf(doc, doc.operations['ws.subscribe_instance.delete'].messages[0])
    t.match(deleted.properties, { action: { const: 'delete' }, response_status: { const: 204 }, data: { required: ['pk'] } })
    for (const kind of ['create', 'update', 'delete']) {
      t.equal(doc.operations[`ws.subscribe_list.${kind}`]?.action, 'receive', `subscribe_list → ${kind}`)
    }
    const receives = parsed.operations().all().filter((o) => o.isReceive() && o.channels().all()[0]?.address() === '/ws/')
    t.equal(receives.length, 5)
  })

  t.test('lists take the route\'s filter, ordering, search and paging arguments', async (t) => {
    const list = payloadOf(doc, doc.operations['ws.list'].messages[0]).properties
    t.strictSame(Object.keys(list.filter.properties), ['id', 'username', 'email'])
    t.strictSame(list.ordering.anyOf[0].enum, ['id', '-id', 'username', '-username'])
    t.equal(list.search.type, 'string')
    t.equal(payloadOf(doc, doc.operations['ws.list'].reply.messages[0]).properties.data.type, 'array')

    const paginated = doc.operations['ws_paginated.list']
    t.ok('limit' in payloadOf(doc, paginated.messages[0]).properties && 'offset' in payloadOf(doc, paginated.messages[0]).properties)
    t.strictSame(payloadOf(doc, paginated.reply.messages[0]).properties.data.required, ['count', 'results', 'limit', 'offset'])
    t.ok('cursor' in payloadOf(doc, doc.operations['ws_cursor.list'].messages[0]).properties)
    t.ok(doc.operations['ws_stream.list_cancel'], 'streamed list has list_cancel')
  })

  t.test('the multiplexed route models the {"stream", "payload"} envelope', async (t) => {
    const channel = parsed.channels().all().find((c) => c.address() === '/ws/multiplex/')
    t.ok(channel)
    const messages = channel?.messages().all() ?? []
    t.ok(messages.length > 2)
    for (const message of messages) {
      t.match(message.payload()?.json(), { type: 'object', required: ['stream', 'payload'] }, `${message.id()} is enveloped`)
    }
    const create = doc.operations['ws_multiplex.users.create']
    const request = payloadOf(doc, create.messages[0])
    t.strictSame(request.properties.stream, { type: 'string', const: 'users' })
    t.equal(request.properties.payload.properties.action.const, 'create')
    t.ok(request.properties.payload.required.includes('data'))
    const reply = payloadOf(doc, create.reply.messages[0])
    t.strictSame(reply.properties.payload.properties.data, { $ref: '#/components/schemas/User' })
    t.equal(resolve(doc, resolve(doc, create.messages[0]).correlationId).location, '$message.payload#/payload/request_id')
    const error = payloadOf(doc, create.reply.messages[1])
    t.strictSame(error.properties.payload, { $ref: '#/components/schemas/ErrorReply' })
    t.ok(doc.operations['ws_multiplex.users.subscribe_instance.update'], 'events come on the stream too')
  })
})

/** A bare app with the plugin (no ORM) and the routes `declare` adds. */
async function bareApp (t: Test, options: Omit<WsRestOptions, 'orm'> = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, options)
  return app
}

t.test('app.wsRest.asyncapi() reflects a custom action\'s TypeBox schema', async (t) => {
  const app = await bareApp(t)
  const rename = action('rename', {
    schema: Type.Object({
      pk: Type.Integer(),
      username: Type.String({ minLength: 1, trim: false, errorMessage: 'Enter a name.' }),
      note: Type.Optional(Type.String())
    }),
    doc: { summary: 'Rename a user.', status: 201, data: Type.Object({ at: Type.Date() }), events: true }
  }, () => ({ status: 201, data: { at: new Date() } }))
  app.wsRest.route('/ws/custom/', { actions: [rename, action('ping', () => ({ data: 'pong' }))] })

  const doc = app.wsRest.asyncapi({ info: { title: 'Bare', version: '1.2.3', description: 'A test.' } })
  await parse(t, doc)
  t.strictSame(doc.info, { title: 'Bare', version: '1.2.3', description: 'A test.' })
  t.notOk('servers' in doc, 'no servers unless given')
  t.equal(doc.channels.ws_custom.address, '/ws/custom/')

  const operation = doc.operations['ws_custom.rename']
  t.equal(operation.summary, 'Rename a user.')
  const request = payloadOf(doc, operation.messages[0])
  t.strictSame(request.properties, {
    action: { type: 'string', const: 'rename' },
    request_id: request.properties.request_id,
    pk: { type: 'integer' },
    username: { type: 'string', minLength: 1 },
    note: { type: 'string' }
  }, 'the schema\'s properties, without TypeBox-only keywords')
  t.strictSame(request.required, ['action', 'pk', 'username'])
  const reply = payloadOf(doc, operation.reply.messages[0])
  t.strictSame(reply.properties.response_status, { type: 'integer', const: 201 })
  t.strictSame(reply.properties.data.properties.at, { type: 'string', format: 'date-time' }, 'a Date as its ISO string')
  t.equal(doc.operations['ws_custom.rename.event']?.action, 'receive', 'a generic event for ctx.subscribe')

  const ping = payloadOf(doc, doc.operations['ws_custom.ping'].messages[0])
  t.strictSame(Object.keys(ping.properties), ['action', 'request_id'], 'an action without schema takes no declared arguments')
  t.strictSame(ping.required, ['action'])
  t.notOk(doc.operations['ws_custom.ping.event'], 'no events unless the action says so')
})

t.test('the asyncapi option serves routes declared after registration, under their prefix', async (t) => {
  const app = await bareApp(t, { asyncapi: { info: { title: 'Served' } } })
  app.wsRest.route('/ws/a/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  await app.register(async (child) => {
    child.wsRest.multiplex('/ws/m/', { streams: { one: { actions: [action('ping', () => ({ data: 'pong' }))] } } })
  }, { prefix: '/api' })

  const response = await app.inject({ method: 'GET', url: '/asyncapi.json' })
  t.equal(response.statusCode, 200)
  const doc = response.json() as AsyncApiDocument
  await parse(t, doc)
  t.equal(doc.info.title, 'Served')
  t.strictSame(Object.values(doc.channels).map((c) => c.address), ['/ws/a/', '/api/ws/m/'])
  t.strictSame(doc.servers, { default: { host: 'localhost:80', protocol: 'ws' } })
  t.strictSame(app.wsRest.asyncapi().channels, doc.channels, 'the method gives the same channels')
})

t.test('the asyncapi option is checked like the others', async (t) => {
  for (const asyncapi of [{ path: 'asyncapi.json' }, { info: { title: 1 } }, { servers: [] }, 'yes']) {
    await t.rejects(bareApp(t, { asyncapi } as never), { code: 'FST_WSREST_INVALID_OPTION' }, JSON.stringify(asyncapi))
  }
  const app = await bareApp(t, { asyncapi: true })
  t.equal((await app.inject({ method: 'GET', url: '/asyncapi.json' })).statusCode, 200, 'true: the default path')
  const off = await bareApp(t)
  t.equal((await off.inject({ method: 'GET', url: '/asyncapi.json' })).statusCode, 404, 'off by default')
  t.throws(() => off.wsRest.asyncapi({ info: { version: 2 } } as never), { code: 'FST_WSREST_INVALID_OPTION' })
})
