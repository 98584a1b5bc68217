/**
 * Registration and shutdown: the plugin with or without @fastify/websocket registered by
 * the app, routes in encapsulated contexts, and `app.close()` letting in-flight actions
 * finish and commit before closing sockets with 1001.
 */
import websocket from '@fastify/websocket'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import wsRest, { action, mixins } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { Item, ItemCreate, ItemPublic } from './helpers/item.js'
import { deferred, within } from './helpers/async.js'
import { connect, openClient } from './helpers/client.js'
import { createDatabase, initOrm } from './helpers/database.js'


t.test('works when the app registered @fastify/websocket itself, beside its own websocket routes', async (t) => {
  const orm = await initOrm(t, [Item])
  const app = Fastify()
  t.teardown(async () => { await app.close(); await orm.close() })
  await app.register(websocket)
  app.get('/echo', { websocket: true }, (socket) => {
    socket.on('message', (data) => socket.send(data.toString()))
  })
  await app.register(wsRest, { orm })
  app.wsRest.route('/items/', {
    entity: Item,
    schema: { create: ItemCreate, response: ItemPublic },
    actions: [mixins.create(), mixins.list()]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const client = await openClient(t, `${base}/items/`)
  const created = await client.request('create', { data: { name: 'a' } })
  t.equal(created.response_status, 201)
  t.strictSame((await client.request('list')).data, [{ id: 1, name: 'a' }])

  // The app's own websocket route still works beside the plugin's.
  const echo = await openClient(t, `${base}/echo`)
  echo.send({ hello: 'echo' })
  t.strictSame(await echo.next(), { hello: 'echo' })
})

t.test('routes declared in an encapsulated plugin get that plugin\'s hooks, and its siblings do not', async (t) => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(wsRest)
  const seen: string[] = []
  await app.register(async (child) => {
    child.addHook('onRequest', async (request) => { seen.push(`child:${request.url}`) })
    child.wsRest.route('/inner/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  })
  app.wsRest.route('/outer/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  for (const path of ['/inner/', '/outer/']) {
    const client = await connect(`${base}${path}`)
    t.equal((await client.request('ping')).data, 'pong')
    client.close()
  }
  t.strictSame(seen, ['child:/inner/'], 'the child context hook ran for its own route only')
})

t.test('app.close() lets an in-flight write finish and commit, then closes with 1001', async (t) => {
  // A database that outlives its ORM (a SQLite file, or a PostgreSQL database).
  const database = await createDatabase(t, { reopenable: true })
  const orm = await database.open([Item])
  await updateSchema(orm)

  const started = deferred()
  const gate = deferred()
  const app = Fastify()
  await app.register(wsRest, { orm })
  app.wsRest.route('/items/', {
    entity: Item,
    schema: { response: ItemPublic },
    actions: [
      action('slow_create', { transaction: true }, async (ctx) => {
        const item = ctx.em.create(Item, { name: 'in-flight' })
        await ctx.em.flush()
        started.resolve()
        await gate.promise // the server is shutting down while this write is still open
        return { status: 201, data: { id: item.id, name: item.name } }
      })
    ]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const client = await connect(`${base}/items/`)
  client.send({ action: 'slow_create', request_id: 1 })
  await started.promise
  const closing = app.close()
  gate.resolve()

  const reply = await client.next()
  t.equal(reply.response_status, 201, 'the in-flight action was answered before the close')
  const { code } = await client.waitClose()
  t.equal(code, 1001)
  await closing
  await orm.close()

  // The acknowledged write is in the database: reopen it with a new ORM.
  const check = await database.open([Item])
  const rows = await check.em.fork().find(Item, {})
  t.strictSame(rows.map((r) => r.name), ['in-flight'])
})

t.test('app.close() waits for in-flight actions at most closeTimeout, then closes with 1001 anyway', async (t) => {
  const started = deferred()
  const app = Fastify()
  await app.register(wsRest, { closeTimeout: 200 })
  app.wsRest.route('/ws/', {
    actions: [action('stuck', async () => {
      started.resolve()
      return await new Promise<never>(() => {}) // never settles: a handler that hangs must not hang shutdown
    })]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await openClient(t, `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws/`)
  client.send({ action: 'stuck', request_id: 1 })
  await started.promise
  const closing = app.close()
  t.equal((await client.waitClose()).code, 1001)
  await within(closing, 'app.close()')
})

t.test('a plain HTTP GET on a websocket route is told to upgrade', async (t) => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(wsRest)
  app.wsRest.route('/ws/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  const res = await app.inject({ method: 'GET', url: '/ws/' })
  t.equal(res.statusCode, 426)
})
