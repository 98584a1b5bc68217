/**
 * Scaling out: two app instances sharing one database and one Redis act as one service —
 * a subscriber connected to instance A gets the events of writes made through instance B.
 * Also: a Redis connection killed (`CLIENT KILL`) is replaced and events resume, actions
 * keep working while Redis is away, and 1,000 connect-subscribe-close cycles leave no
 * channel subscribed in Redis. And two example server processes started with one
 * REDIS_URL and one database, tried from outside.
 */
import type { MikroORM } from '@mikro-orm/core'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import wsRest, { mixins, RedisLayer } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { eventually, within, type Teardown } from './helpers/async.js'
import { openClient, type WireReply } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'
import { Item, itemModel } from './helpers/item.js'
import { startServer } from './helpers/example-process.js'
import { admin, channels, clientsNamed, redisAvailable, redisUrl, uniquePrefix } from './helpers/redis.js'

interface Instance { app: FastifyInstance, orm: MikroORM, layer: RedisLayer, url: string }

/** One app instance: its own ORM on the shared database, its own RedisLayer on the shared Redis and prefix. */
async function instance (t: Teardown, open: (entities: any[]) => Promise<MikroORM>, prefix: string): Promise<Instance> {
  const orm = await open([Item])
  await updateSchema(orm)
  const layer = new RedisLayer({ url: redisUrl, prefix })
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { orm, broadcast: layer })
  app.wsRest.route('/items/', {
    ...itemModel,
    filterFields: ['name'],
    actions: [mixins.create(), mixins.patch(), mixins.delete(), mixins.subscribeInstance(), mixins.subscribeList()]
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, orm, layer, url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/items/` }
}

/** The groups a layer listens to for subscriptions: all but the app's two for resuming (lib/observer/resume.ts). */
function subscriptionGroups (layer: RedisLayer): string[] {
  return layer.groups().filter((g) => !g.startsWith('wsrest:resume:'))
}

/** Two instances of one service. */
async function pair (t: Teardown): Promise<{ a: Instance, b: Instance, prefix: string }> {
  const database = await createDatabase(t, { reopenable: true })
  const prefix = uniquePrefix()
  const a = await instance(t, database.open, prefix)
  const b = await instance(t, database.open, prefix)
  return { a, b, prefix }
}

if (redisAvailable) {
  t.test('a subscriber on instance A gets the changes made through instance B, and the other way round', async (t) => {
    const { a, b } = await pair(t)
    const onA = await openClient(t, a.url)
    const onB = await openClient(t, b.url)
    const writerB = await openClient(t, b.url)
    const created = await writerB.request('create', { data: { name: 'shared' } })
    const id = created.data.id as number

    t.equal((await onA.ask({ action: 'subscribe_instance', request_id: 'inst', pk: id })).response_status, 201,
      'instance A finds the row instance B created: one database')
    await onA.ask({ action: 'subscribe_list', request_id: 'list', filter: { name: { $contains: 'new' } } })
    await onB.ask({ action: 'subscribe_list', request_id: 'b-list' })

    await writerB.request('patch', { pk: id, data: { name: 'renewed' } })
    t.strictSame(await onB.next(), { errors: [], data: { id, name: 'renewed' }, action: 'update', response_status: 200, request_id: 'b-list' },
      'B\'s own subscriber gets it once (delivered in-process, the Redis echo ignored)')
    const onAEvents = await onA.take(2)
    t.strictSame(onAEvents.map((e) => [e.request_id, e.action, e.data]).sort(), [
      ['inst', 'update', { id, name: 'renewed' }],
      ['list', 'create', { id, name: 'renewed' }]
    ], 'A gets B\'s change: the instance update, and the row entering its filtered list')

    const created2 = await (await openClient(t, a.url)).request('create', { data: { name: 'from-a' } })
    t.strictSame(await onB.next(), { errors: [], data: created2.data, action: 'create', response_status: 201, request_id: 'b-list' },
      'B gets A\'s create')

    await writerB.request('delete', { pk: id })
    t.strictSame((await onA.take(2)).map((e) => [e.request_id, e.action, e.data]).sort(), [
      ['inst', 'delete', { pk: id }],
      ['list', 'delete', { pk: id }]
    ])
  })

  t.test('CLIENT KILL of the subscriber connection: actions keep working, the layer resubscribes and events resume', async (t) => {
    const { a, b, prefix } = await pair(t)
    const redis = await admin(t)
    const onA = await openClient(t, a.url)
    const onB = await openClient(t, b.url)
    await onA.ask({ action: 'subscribe_list', request_id: 'l' })
    await eventually(async () => (await channels(redis, prefix)).length === 1, 'A subscribed in Redis')

    const [subscriber] = await clientsNamed(redis, `${prefix}sub:${a.layer.id}`)
    t.ok(subscriber !== undefined, 'found A\'s subscriber connection')
    await redis.client('KILL', 'ID', subscriber.id)
    // B's writes succeed whatever happens to A's Redis connection.
    const during = await onB.request('create', { data: { name: 'during' } })
    t.equal(during.response_status, 201)

    await eventually(async () => {
      const [again] = await clientsNamed(redis, `${prefix}sub:${a.layer.id}`)
      return again !== undefined && again.id !== subscriber.id && (await channels(redis, prefix)).length === 1
    }, 'A reconnected and resubscribed', 10_000)

    // The event of `during` may or may not have reached A (at most once); the next one must.
    const after = await onB.request('create', { data: { name: 'after' } })
    let event = await onA.next()
    if (event.data.name === 'during') event = await onA.next()
    t.strictSame(event, { errors: [], data: after.data, action: 'create', response_status: 201, request_id: 'l' }, 'events resume')
  })

  t.test('1,000 connect-subscribe-close cycles across two instances leave no channel behind in Redis', async (t) => {
    const { a, b, prefix } = await pair(t)
    const redis = await admin(t)
    const seed = await (await openClient(t, b.url)).request('create', { data: { name: 'seed' } })
    const watcher = await openClient(t, a.url)
    await watcher.ask({ action: 'subscribe_instance', request_id: 'w', pk: seed.data.id })
    await eventually(async () => (await channels(redis, prefix)).length === 1, 'the watcher\'s channel is subscribed')
    const kept = await channels(redis, prefix)

    for (let i = 0; i < 1000; i += 50) {
      await Promise.all(Array.from({ length: 50 }, async (_, j) => {
        const client = await openClient(t, (i + j) % 2 === 0 ? a.url : b.url)
        await client.ask({ action: 'subscribe_list', request_id: 'l', filter: { name: `n${i + j}` } })
        await client.ask({ action: 'subscribe_instance', request_id: 'i', pk: seed.data.id })
        client.close()
        await within(client.closed, 'close')
      }))
    }
    await eventually(async () => subscriptionGroups(a.layer).length === 1 && subscriptionGroups(b.layer).length === 0, 'both layers forgot the closed sockets\' groups')
    await eventually(async () => (await channels(redis, prefix)).join() === kept.join(), 'Redis has only the watcher\'s channel')
    t.strictSame(await channels(redis, prefix), kept)
    t.strictSame(subscriptionGroups(b.layer), [], 'instance B listens to nothing but its resume channels')
  })

  t.test('two example processes with one REDIS_URL and one database: a change through one reaches a subscriber on the other', async (t) => {
    const database = await createDatabase(t, { reopenable: true })
    const env = { REDIS_URL: redisUrl, REDIS_PREFIX: uniquePrefix() }
    // One after the other: each creates or updates the schema at startup.
    const first = await startServer(t, database, env)
    const second = await startServer(t, database, env)

    const writer = await openClient(t, `${second.url}/ws/`)
    const created = await writer.request('create', { data: { username: 'alice', password1: 'pw', password2: 'pw' } })
    const id = created.data.id as number
    const subscriber = await openClient(t, `${first.url}/ws/`)
    subscriber.send({ action: 'subscribe_instance', request_id: 'sub', pk: id })
    t.equal((await subscriber.next()).response_status, 201)
    const multiplexed = await openClient(t, `${first.url}/ws/multiplex/`)
    multiplexed.send({ stream: 'users', payload: { action: 'subscribe_list', request_id: 'list' } })
    t.equal(((await multiplexed.next()) as unknown as { payload: WireReply }).payload.response_status, 201)

    await writer.request('patch', { pk: id, data: { email: 'alice@example.com' } })
    t.strictSame(await subscriber.next(), {
      errors: [], data: { id, username: 'alice', email: 'alice@example.com' }, action: 'update', response_status: 200, request_id: 'sub'
    }, 'the other process\'s subscriber got the change')
    t.strictSame(await multiplexed.next(), {
      stream: 'users',
      payload: { errors: [], data: { id, username: 'alice', email: 'alice@example.com' }, action: 'update', response_status: 200, request_id: 'list' }
    }, 'and its multiplexed list subscriber, on stream "users"')
  })
}
