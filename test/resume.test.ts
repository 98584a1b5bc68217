/**
 * Resumable subscriptions: a subscribe frame with `"resume": {"key"}` gets numbered events;
 * after its socket is cut, the same subscribe with `"resume": {"key", "seq"}` gets exactly
 * the events it missed, in order, once — in the same process, and through Redis on another
 * instance. Past what was kept it is told to refetch (410), and DCRF frames are untouched.
 */
import type { MikroORM } from '@mikro-orm/core'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import wsRest, { MemoryLayer, mixins, RedisLayer, type WsRestOptions } from '../index.js'
import { eventually, within, type Teardown } from './helpers/async.js'
import { connect, openClient, type TestClient, type WireReply } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'
import { Item, itemModel, renameItem, seedItems } from './helpers/item.js'
import { startApp } from './helpers/server.js'
import { redisAvailable, redisUrl, uniquePrefix } from './helpers/redis.js'

const KEY = 'k0123456789abcdef'
const actions = [mixins.create(), mixins.patch(), mixins.subscribeInstance(), mixins.subscribeList()]

/** Items at /items/ with subscriptions, on a fresh database. */
async function startItems (t: Teardown, options: Omit<WsRestOptions, 'orm'> = {}): Promise<{ url: string, orm: MikroORM, layer: MemoryLayer }> {
  const layer = new MemoryLayer()
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, actions })
  }, { broadcast: layer, ...options })
  return { url: `${base}/items/`, orm, layer }
}

/** Subscribe to item `pk`, resumably; the replies up to and including the subscribe reply. */
async function subscribe (client: TestClient, pk: number, resume: Record<string, unknown>): Promise<WireReply[]> {
  client.send({ action: 'subscribe_instance', request_id: 'sub', pk, resume })
  const first = await client.next()
  return first.action === 'resume' ? [first, await client.next()] : [first]
}

/** Names of `count` update events, checking they are numbered `from`, from + 1, … */
async function names (t: Test, client: TestClient, count: number, from: number): Promise<string[]> {
  const events = await client.take(count)
  t.same(events.map((e) => e.seq), events.map((_e, i) => from + i), `events numbered from ${from}`)
  return events.map((e) => (e.data as { name: string }).name)
}

t.test('a resumable subscription is announced (201) before its reply, and its events are numbered 1, 2, 3', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openClient(t, url)
  const replies = await subscribe(client, id, { key: KEY })
  t.same(replies, [
    { errors: [], data: { key: KEY, seq: 0, replayed: 0 }, action: 'resume', response_status: 201, request_id: 'sub' },
    { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub' }
  ])
  for (const name of ['b', 'c', 'd']) await renameItem(orm, id, name)
  const events = await client.take(3)
  t.same(events[0], { errors: [], data: { id, name: 'b' }, action: 'update', response_status: 200, request_id: 'sub', seq: 1 },
    'the DCRF event, with its sequence number as a sixth key')
  t.same(events.map((e) => e.seq), [1, 2, 3])
})

t.test('a subscription without "resume" is plain DCRF: no announcement, no seq', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openClient(t, url)
  t.same(await client.ask({ action: 'subscribe_instance', request_id: 'sub', pk: id }),
    { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub' })
  await renameItem(orm, id, 'b')
  t.same(Object.keys(await client.next()), ['errors', 'data', 'action', 'response_status', 'request_id'])
})

t.test('a malformed "resume" is a 400 keyed resume, and nothing is subscribed', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openClient(t, url)
  for (const resume of [{ key: 'short' }, { key: KEY, seq: -1 }, { key: KEY, seq: 1.5 }, 'text', null, [KEY]]) {
    const reply = await client.ask({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume })
    t.equal(reply.response_status, 400, JSON.stringify(resume))
    t.match(reply.errors, [{ resume: [/^Expected \{"key"/] }])
  }
  // Proven unsubscribed: a plain subscription's reply is the next message, with no event before it.
  await renameItem(orm, id, 'b')
  t.equal((await client.ask({ action: 'subscribe_instance', request_id: 'later', pk: id })).action, 'subscribe_instance')
})

t.test('cut while writes go on: the reconnected subscriber gets every change exactly once, in order', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'n0')
  const writer = await openClient(t, url)
  const first = await openClient(t, url)
  await subscribe(first, id, { key: KEY })

  const total = 60
  const writes = (async () => {
    for (let n = 1; n <= total; n++) await writer.request('patch', { pk: id, data: { name: `n${n}` } })
  })()
  // Read a few, then cut the connection without a close handshake, as a network drop would.
  const seen = await names(t, first, 5, 1)
  first.socket.terminate()
  await writes
  // Every write committed (and published) while the subscriber was away.

  const second = await openClient(t, url)
  const replies = await subscribe(second, id, { key: KEY, seq: 5 })
  t.same(replies[0], {
    errors: [], data: { key: KEY, seq: 5, replayed: total - 5 }, action: 'resume', response_status: 200, request_id: 'sub'
  }, 'resumed, with the count of events to come again')
  t.equal(replies[1].action, 'subscribe_instance')
  seen.push(...await names(t, second, total - 5, 6))
  t.same(seen, Array.from({ length: total }, (_v, i) => `n${i + 1}`), 'all of them, once each, in commit order')

  await writer.request('patch', { pk: id, data: { name: 'live' } })
  const live = await second.next()
  t.same([live.seq, live.data], [total + 1, { id, name: 'live' }], 'live events go on with the next number')
})

t.test('resuming while the old socket is still open (half-open) moves the subscription: the old one stops getting events', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const old = await openClient(t, url)
  await subscribe(old, id, { key: KEY })
  await renameItem(orm, id, 'b')
  t.equal((await old.next()).seq, 1)

  const fresh = await openClient(t, url)
  const [announced] = await subscribe(fresh, id, { key: KEY, seq: 0 })
  t.same([announced.response_status, announced.data], [200, { key: KEY, seq: 0, replayed: 1 }])
  t.same((await fresh.next()).data, { id, name: 'b' }, 'the event the client says it did not see, again')

  await renameItem(orm, id, 'c')
  t.same([(await fresh.next()).seq], [2])
  // The old socket gets nothing more: its next message is the reply to a request made now.
  t.equal((await old.request('patch', { pk: id, data: { name: 'd' } })).action, 'patch')
})

t.test('unknown key, or further behind than maxEvents → 410 "refetch", and the subscription starts again from 1', async (t) => {
  const { url, orm } = await startItems(t, { resume: { maxEvents: 3 } })
  const [id] = await seedItems(orm, 'a')

  const stranger = await openClient(t, url)
  const [refused, reply] = await subscribe(stranger, id, { key: 'nobody-holds-this-key', seq: 4 })
  t.same(refused, {
    errors: ['The events missed since the last one received are no longer available; fetch the data again.'],
    data: null, action: 'resume', response_status: 410, request_id: 'sub'
  })
  t.equal(reply.response_status, 201, 'subscribed all the same')
  await renameItem(orm, id, 'b')
  t.equal((await stranger.next()).seq, 1)

  const behind = await openClient(t, url)
  await subscribe(behind, id, { key: KEY })
  behind.socket.terminate()
  await behind.waitClose()
  for (const name of ['c', 'd', 'e', 'f', 'g']) await renameItem(orm, id, name)
  t.equal((await stranger.take(5)).at(-1)?.seq, 6, 'published: the other subscriber has all five')
  const again = await openClient(t, url)
  const [gone] = await subscribe(again, id, { key: KEY, seq: 0 })
  t.equal(gone.response_status, 410, 'five missed, three kept: refetch')
  await renameItem(orm, id, 'h')
  const next = await again.next()
  t.same([next.seq, next.data], [1, { id, name: 'h' }], 'numbering starts again')
})

t.test('past the window the kept events are dropped → 410', async (t) => {
  const { url, orm, layer } = await startItems(t, { resume: { window: 20 } })
  const [id] = await seedItems(orm, 'a')
  const client = await openClient(t, url)
  await subscribe(client, id, { key: KEY })
  client.close()
  await client.waitClose()
  // The parked subscription listens to its row's group until the window ends.
  await eventually(() => layer.groups().length === 0, 'the parked subscription gives up its group')
  const again = await openClient(t, url)
  t.equal((await subscribe(again, id, { key: KEY, seq: 0 }))[0].response_status, 410)
})

t.test('resume: false turns it off: no announcement, no seq, the key ignored', async (t) => {
  const { url, orm } = await startItems(t, { resume: false })
  const [id] = await seedItems(orm, 'a')
  const client = await openClient(t, url)
  const replies = await subscribe(client, id, { key: KEY })
  t.same(replies.map((r) => r.action), ['subscribe_instance'])
  await renameItem(orm, id, 'b')
  t.equal((await client.next()).seq, undefined)
})

t.test('a filtered-list subscription resumes too, on a multiplexed stream', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', { streams: { items: { ...itemModel, actions } } })
  })
  const [id] = await seedItems(orm, 'a')
  const first = await connect(`${base}/mux/`)
  first.send({ stream: 'items', payload: { action: 'subscribe_list', request_id: 'list', resume: { key: KEY } } })
  t.same((await first.take(2)).map((m) => [m.stream, (m.payload as WireReply).action]), [['items', 'resume'], ['items', 'subscribe_list']])
  first.socket.terminate()
  await first.waitClose()
  await renameItem(orm, id, 'b')
  await renameItem(orm, id, 'c')

  const second = await openClient(t, `${base}/mux/`)
  second.send({ stream: 'items', payload: { action: 'subscribe_list', request_id: 'list', resume: { key: KEY, seq: 0 } } })
  const got = (await second.take(4)).map((m) => m.payload as WireReply)
  t.same(got.map((p) => [p.action, p.seq, p.data]), [
    ['resume', undefined, { key: KEY, seq: 0, replayed: 2 }],
    ['subscribe_list', undefined, null],
    ['update', 1, { id, name: 'b' }],
    ['update', 2, { id, name: 'c' }]
  ])
})

if (redisAvailable) {
  t.test('through Redis: cut from instance A, resumed on instance B, every change exactly once', async (t) => {
    const database = await createDatabase(t, { reopenable: true })
    const prefix = uniquePrefix()
    async function instance (): Promise<{ url: string, orm: MikroORM }> {
      const orm = await database.open([Item])
      await orm.schema.updateSchema()
      const app = Fastify({ logger: false })
      t.teardown(async () => await app.close())
      await app.register(wsRest, { orm, broadcast: new RedisLayer({ url: redisUrl, prefix }) })
      app.wsRest.route('/items/', { ...itemModel, actions })
      await app.listen({ host: '127.0.0.1', port: 0 })
      return { url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/items/`, orm }
    }
    const a = await instance()
    const b = await instance()
    const [id] = await seedItems(a.orm, 'n0')
    const onA = await openClient(t, a.url)
    await subscribe(onA, id, { key: KEY })
    const writerB = await openClient(t, b.url)

    const total = 40
    const writes = (async () => {
      for (let n = 1; n <= total; n++) await writerB.request('patch', { pk: id, data: { name: `n${n}` } })
    })()
    const seen = await names(t, onA, 3, 1)
    onA.socket.terminate()
    await writes

    const onB = await openClient(t, b.url)
    const [announced, reply] = await subscribe(onB, id, { key: KEY, seq: 3 })
    t.equal(announced.response_status, 200, 'A handed the subscription over through Redis')
    t.equal(reply.action, 'subscribe_instance')
    // A may not have heard of the last writes yet when it handed over: B has them live. Either way, once each.
    seen.push(...await names(t, onB, total - 3, 4))
    t.same(seen, Array.from({ length: total }, (_v, i) => `n${i + 1}`), 'all of them, once each, in order')
    await writerB.request('patch', { pk: id, data: { name: 'live' } })
    t.equal((await within(onB.next(), 'the live event')).seq, total + 1)
  })
}
