/**
 * Resumable subscriptions: a subscribe frame with `"resume": {"key"}` gets numbered events;
 * after its socket is cut, the same subscribe with `"resume": {"key", "seq"}` gets exactly
 * the events it missed, in order, once — in the same process, and through Redis on another
 * instance. Past what was kept it is told to refetch (410), and DCRF frames are untouched.
 */
import type { MikroORM } from '@mikro-orm/core'
import Fastify, { type FastifyRequest } from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import wsRest, { action, MemoryLayer, mixins, RedisLayer, type Permission, type WsRestOptions } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { deferred, eventually, gate, within, type Teardown } from './helpers/async.js'
import { connect, openClient, type TestClient, type WireReply } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'
import { Item, itemModel, renameItem, seedItems } from './helpers/item.js'
import { startApp } from './helpers/server.js'
import { redisSkip } from './helpers/redis-optional.js'
import { ResumeState } from '../lib/observer/resume.js'

/** Why the Redis test is skipped, if it is: the others need no Redis (a missing one fails the file under REQUIRE_SERVICES=1). */
const noRedis = await redisSkip()

const KEY = 'k0123456789abcdef-0123456789'
const actions = [mixins.create(), mixins.patch(), mixins.subscribeInstance(), mixins.subscribeList()]

/**
 * Who a socket is, for resuming: the `x-client` header the test's sockets send (the app's
 * `resume.principal` hook). A socket without it has no principal: nothing it makes is resumable.
 */
const principal = (request: FastifyRequest): string | undefined => request.headers['x-client'] as string | undefined

/** `options` with the `x-client` principal hook (unless resuming is off). */
function withPrincipal (options: Omit<WsRestOptions, 'orm'> = {}): Omit<WsRestOptions, 'orm'> {
  return { ...options, resume: options.resume === false ? false : { principal, ...options.resume } }
}

/** Open a socket as client `who`: the same principal across reconnects, as one logged-in user is. */
async function openAs (t: Teardown, url: string, who = 'alice'): Promise<TestClient> {
  return await openClient(t, url, { headers: { 'x-client': who } })
}

/** Items at /items/ with subscriptions, on a fresh database. */
async function startItems (t: Teardown, options: Omit<WsRestOptions, 'orm'> = {}): Promise<{ url: string, orm: MikroORM, layer: MemoryLayer }> {
  const layer = new MemoryLayer()
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, filterFields: ['name'], actions })
  }, { broadcast: layer, ...withPrincipal(options) })
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
  t.strictSame(events.map((e) => e.seq), events.map((_e, i) => from + i), `events numbered from ${from}`)
  return events.map((e) => (e.data as { name: string }).name)
}

t.test('a resumable subscription is announced (201) before its reply, and its events are numbered 1, 2, 3', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openAs(t, url)
  const replies = await subscribe(client, id, { key: KEY })
  t.strictSame(replies, [
    { errors: [], data: { key: KEY, seq: 0, replayed: 0 }, action: 'resume', response_status: 201, request_id: 'sub' },
    { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub' }
  ])
  for (const name of ['b', 'c', 'd']) await renameItem(orm, id, name)
  const events = await client.take(3)
  t.strictSame(events[0], { errors: [], data: { id, name: 'b' }, action: 'update', response_status: 200, request_id: 'sub', seq: 1 },
    'the DCRF event, with its sequence number as a sixth key')
  t.strictSame(events.map((e) => e.seq), [1, 2, 3])
})

t.test('a subscription without "resume" is plain DCRF: no announcement, no seq', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openAs(t, url)
  t.strictSame(await client.ask({ action: 'subscribe_instance', request_id: 'sub', pk: id }),
    { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub' })
  await renameItem(orm, id, 'b')
  t.strictSame(Object.keys(await client.next()), ['errors', 'data', 'action', 'response_status', 'request_id'])
})

t.test('a malformed "resume" is a 400 keyed resume, and nothing is subscribed', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const client = await openAs(t, url)
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
  const writer = await openAs(t, url)
  const first = await openAs(t, url)
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

  const second = await openAs(t, url)
  const replies = await subscribe(second, id, { key: KEY, seq: 5 })
  t.strictSame(replies[0], {
    errors: [], data: { key: KEY, seq: 5, replayed: total - 5 }, action: 'resume', response_status: 200, request_id: 'sub'
  }, 'resumed, with the count of events to come again')
  t.equal(replies[1].action, 'subscribe_instance')
  seen.push(...await names(t, second, total - 5, 6))
  t.strictSame(seen, Array.from({ length: total }, (_v, i) => `n${i + 1}`), 'all of them, once each, in commit order')

  await writer.request('patch', { pk: id, data: { name: 'live' } })
  const live = await second.next()
  t.strictSame([live.seq, live.data], [total + 1, { id, name: 'live' }], 'live events go on with the next number')
})

t.test('resuming while the old socket is still open (half-open) moves the subscription: the old one stops getting events', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const old = await openAs(t, url)
  await subscribe(old, id, { key: KEY })
  await renameItem(orm, id, 'b')
  t.equal((await old.next()).seq, 1)

  const fresh = await openAs(t, url)
  const [announced] = await subscribe(fresh, id, { key: KEY, seq: 0 })
  t.strictSame([announced.response_status, announced.data], [200, { key: KEY, seq: 0, replayed: 1 }])
  t.strictSame((await fresh.next()).data, { id, name: 'b' }, 'the event the client says it did not see, again')

  await renameItem(orm, id, 'c')
  t.strictSame([(await fresh.next()).seq], [2])
  // The old socket is told it lost the subscription, then gets nothing more: its next message is the reply to a request made now.
  const told = await old.next()
  t.strictSame([told.action, told.response_status], ['resume', 409], 'the old holder hears its subscription was taken over')
  t.equal((await old.request('patch', { pk: id, data: { name: 'd' } })).action, 'patch')
})

t.test('unknown key, or further behind than maxEvents → 410 "refetch", and the subscription starts again from 1', async (t) => {
  const { url, orm } = await startItems(t, { resume: { maxEvents: 3 } })
  const [id] = await seedItems(orm, 'a')

  const stranger = await openAs(t, url)
  const [refused, reply] = await subscribe(stranger, id, { key: 'nobody-holds-this-key-0123456789', seq: 4 })
  t.strictSame(refused, {
    errors: ['The events missed since the last one received are no longer available; fetch the data again.'],
    data: null, action: 'resume', response_status: 410, request_id: 'sub'
  })
  t.equal(reply.response_status, 201, 'subscribed all the same')
  await renameItem(orm, id, 'b')
  t.equal((await stranger.next()).seq, 1)

  const behind = await openAs(t, url)
  await subscribe(behind, id, { key: KEY })
  behind.socket.terminate()
  await behind.waitClose()
  for (const name of ['c', 'd', 'e', 'f', 'g']) await renameItem(orm, id, name)
  t.equal((await stranger.take(5)).at(-1)?.seq, 6, 'published: the other subscriber has all five')
  const again = await openAs(t, url)
  const [gone] = await subscribe(again, id, { key: KEY, seq: 0 })
  t.equal(gone.response_status, 410, 'five missed, three kept: refetch')
  await renameItem(orm, id, 'h')
  const next = await again.next()
  t.strictSame([next.seq, next.data], [1, { id, name: 'h' }], 'numbering starts again')
})

t.test('past the window the kept events are dropped → 410', async (t) => {
  const { url, orm, layer } = await startItems(t, { resume: { window: 20 } })
  const [id] = await seedItems(orm, 'a')
  const client = await openAs(t, url)
  await subscribe(client, id, { key: KEY })
  client.close()
  await client.waitClose()
  // The parked subscription listens to its row's group until the window ends.
  await eventually(() => layer.groups().length === 0, 'the parked subscription gives up its group')
  const again = await openAs(t, url)
  t.equal((await subscribe(again, id, { key: KEY, seq: 0 }))[0].response_status, 410)
})

t.test('resume: false turns it off: no announcement, no seq, the key ignored', async (t) => {
  const { url, orm } = await startItems(t, { resume: false })
  const [id] = await seedItems(orm, 'a')
  const client = await openAs(t, url)
  const replies = await subscribe(client, id, { key: KEY })
  t.strictSame(replies.map((r) => r.action), ['subscribe_instance'])
  await renameItem(orm, id, 'b')
  t.equal((await client.next()).seq, undefined)
})

t.test('another principal on the same address cannot claim a key: 410, and the parked subscription stays its maker\'s', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const alice = await openAs(t, url, 'alice')
  await subscribe(alice, id, { key: KEY })
  alice.socket.terminate()
  await alice.waitClose()
  await renameItem(orm, id, 'b')

  const bob = await openAs(t, url, 'bob')
  const [refused, reply] = await subscribe(bob, id, { key: KEY, seq: 0 })
  t.strictSame([refused.action, refused.response_status, reply.action], ['resume', 410, 'subscribe_instance'], 'bob, from 127.0.0.1 too: as if the key were unknown')
  const back = await openAs(t, url, 'alice')
  const [resumed] = await subscribe(back, id, { key: KEY, seq: 0 })
  t.strictSame([resumed.response_status, resumed.data], [200, { key: KEY, seq: 0, replayed: 1 }], 'alice resumes: bob took nothing')
  const replayed = await back.next()
  t.strictSame([replayed.seq, replayed.data], [1, { id, name: 'b' }])
})

/** Sets `request.user` from `?user=`: a connection with it has a principal, one without has none. */
function usersFromQuery (app: import('fastify').FastifyInstance): void {
  app.addHook('onRequest', async (request) => {
    const user = (request.query as { user?: string }).user
    if (user !== undefined) (request as unknown as { user: unknown }).user = { id: user }
  })
}

for (const [how, options] of [
  ['no principal hook and no request.user', {}],
  ['a principal hook answering undefined, and no request.user', withPrincipal()]
] as const) {
  t.test(`without a principal (${how}) a "resume" key is ignored: no announcement, no seq, nothing parked, a claim takes nothing`, async (t) => {
    const layer = new MemoryLayer()
    // One subscription per client: a parked one would still count against the address's budget.
    const { base, orm } = await startApp(t, [Item], (app) => {
      usersFromQuery(app)
      app.wsRest.route('/items/', { ...itemModel, actions })
    }, { broadcast: layer, maxSubscriptionsPerClient: 1, ...options })
    const url = `${base}/items/`
    const [id] = await seedItems(orm, 'a')

    const first = await openClient(t, url)
    t.strictSame((await subscribe(first, id, { key: KEY })).map((r) => [r.action, r.response_status]), [['subscribe_instance', 201]],
      'subscribed, with no "resume" frame')
    await renameItem(orm, id, 'b')
    const event = await first.next()
    t.strictSame(Object.keys(event), ['errors', 'data', 'action', 'response_status', 'request_id'], 'a plain DCRF event: no seq')
    t.equal((await first.ask({ action: 'subscribe_instance', request_id: 'bad', pk: id, resume: { key: 'short' } })).response_status, 400,
      'a malformed key is still a 400')
    first.socket.terminate()
    await first.waitClose()
    await eventually(() => layer.groups().length === 0, 'nothing parked: nobody listens to the row any more')
    await renameItem(orm, id, 'c') // what a parked subscription would have kept

    const claimer = await openClient(t, url)
    t.strictSame((await subscribe(claimer, id, { key: KEY, seq: 1 })).map((r) => [r.action, r.response_status]), [['subscribe_instance', 201]],
      'a claim from another anonymous connection is a plain subscription (and the address\'s budget of one is free)')
    await renameItem(orm, id, 'd')
    const next = await claimer.next()
    t.strictSame([next.data, next.seq], [{ id, name: 'd' }, undefined], 'its first event is the live one: "c" was never kept, nothing replayed')

    const named = await openClient(t, `${url}?user=alice`)
    const [announced] = await subscribe(named, id, { key: KEY, seq: 1 })
    t.strictSame([announced.action, announced.response_status], ['resume', 410], 'a principal claiming the key finds nothing to take')
  })
}

t.test('a filtered-list subscription resumes too, on a multiplexed stream', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.multiplex('/mux/', { streams: { items: { ...itemModel, actions } } })
  }, withPrincipal())
  const [id] = await seedItems(orm, 'a')
  const first = await connect(`${base}/mux/`, { headers: { 'x-client': 'alice' } })
  first.send({ stream: 'items', payload: { action: 'subscribe_list', request_id: 'list', resume: { key: KEY } } })
  t.strictSame((await first.take(2)).map((m) => [m.stream, (m.payload as WireReply).action]), [['items', 'resume'], ['items', 'subscribe_list']])
  first.socket.terminate()
  await first.waitClose()
  await renameItem(orm, id, 'b')
  await renameItem(orm, id, 'c')

  const second = await openAs(t, `${base}/mux/`)
  second.send({ stream: 'items', payload: { action: 'subscribe_list', request_id: 'list', resume: { key: KEY, seq: 0 } } })
  const got = (await second.take(4)).map((m) => m.payload as WireReply)
  t.strictSame(got.map((p) => [p.action, p.seq, p.data]), [
    ['resume', undefined, { key: KEY, seq: 0, replayed: 2 }],
    ['subscribe_list', undefined, null],
    ['update', 1, { id, name: 'b' }],
    ['update', 2, { id, name: 'c' }]
  ])
})

t.test('through Redis: cut from instance A, resumed on instance B, every change exactly once', { skip: noRedis }, async (t) => {
  const { redisUrl, uniquePrefix } = await import('./helpers/redis.js')
  const database = await createDatabase(t, { reopenable: true })
  const prefix = uniquePrefix()
  async function instance (): Promise<{ url: string, orm: MikroORM }> {
    const orm = await database.open([Item])
    await updateSchema(orm)
    const app = Fastify({ logger: false })
    t.teardown(async () => await app.close())
    await app.register(wsRest, { orm, broadcast: new RedisLayer({ url: redisUrl, prefix }), ...withPrincipal() })
    app.wsRest.route('/items/', { ...itemModel, actions })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/items/`, orm }
  }
  const a = await instance()
  const b = await instance()
  const [id] = await seedItems(a.orm, 'n0')
  const onA = await openAs(t, a.url)
  await subscribe(onA, id, { key: KEY })
  const writerB = await openAs(t, b.url)

  const total = 40
  const writes = (async () => {
    for (let n = 1; n <= total; n++) await writerB.request('patch', { pk: id, data: { name: `n${n}` } })
  })()
  const seen = await names(t, onA, 3, 1)
  onA.socket.terminate()
  await writes

  const onB = await openAs(t, b.url)
  const [announced, reply] = await subscribe(onB, id, { key: KEY, seq: 3 })
  t.equal(announced.response_status, 200, 'A handed the subscription over through Redis')
  t.equal(reply.action, 'subscribe_instance')
  // A may not have heard of the last writes yet when it handed over: B has them live. Either way, once each.
  seen.push(...await names(t, onB, total - 3, 4))
  t.strictSame(seen, Array.from({ length: total }, (_v, i) => `n${i + 1}`), 'all of them, once each, in order')
  await writerB.request('patch', { pk: id, data: { name: 'live' } })
  t.equal((await within(onB.next(), 'the live event')).seq, total + 1)
})

t.test('kept events older than the window are dropped as new ones come: a client that last saw one of those must refetch', async (t) => {
  // At the state itself, with the clock passed in: waiting a window out would only slow the test.
  const state = new ResumeState(KEY, 'route', { maxEvents: 10, window: 1000 })
  const now = Date.now()
  state.record('e1', { action: 'update', status: 200, dataJson: '1' })
  state.record('e2', { action: 'update', status: 200, dataJson: '2' })
  state.prune(now + 500)
  t.strictSame(state.log.map((e) => e.seq), [1, 2], 'within the window: kept')
  state.prune(now + 5000)
  t.strictSame(state.log, [], 'past it: gone')
  const next = new ResumeState(KEY, 'route', { maxEvents: 10, window: 1000 })
  t.equal(next.continueFrom({ seq: state.seq, events: state.log }, 0), undefined, 'seq 1 and 2 cannot be replayed: 410')
  t.strictSame(next.continueFrom({ seq: state.seq, events: state.log }, 2), [], 'a client that saw both resumes with nothing to replay')
})

// ------------------------------------------------------------------ edge cases a review found

/** A turn of the event loop: the events just published (in this process) have reached their subscriptions. */
async function afterEvents (): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve))
}

/** Items with a custom `watch` action that subscribes to group `g` and then waits at `hold` before replying. */
async function startWatch (t: Teardown, hold: () => Promise<void>, options: Omit<WsRestOptions, 'orm'> = {}): Promise<{ url: string, publish: (n: number) => void }> {
  const watch = action('watch', async (ctx) => {
    await ctx.subscribe('g')
    await hold()
    return { status: 201 }
  })
  const { base, app } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, actions: [watch] })
  }, withPrincipal(options))
  return { url: `${base}/items/`, publish: (n) => app.wsRest.publish('g', { n }) }
}

t.test('events published while the subscribing action still runs come after its "resume" and its reply, numbered from 1', async (t) => {
  const held = gate()
  const { url, publish } = await startWatch(t, held.wait)
  const client = await openAs(t, url)
  client.send({ action: 'watch', request_id: 'w', resume: { key: KEY } })
  await within(held.entered, 'the action subscribed and waits')
  publish(1)
  publish(2)
  await afterEvents()
  held.open()
  const got = await client.take(4)
  t.strictSame(got.map((m) => [m.action, m.response_status, m.seq]), [
    ['resume', 201, undefined], ['watch', 201, undefined], ['event', 200, 1], ['event', 200, 2]
  ])
  t.strictSame(got[0].data, { key: KEY, seq: 0, replayed: 0 })
})

t.test('more events while the action runs than maxEvents → 410 instead of 201, and the newest are sent numbered from 1', async (t) => {
  const held = gate()
  const { url, publish } = await startWatch(t, held.wait, { resume: { maxEvents: 3 } })
  const client = await openAs(t, url)
  client.send({ action: 'watch', request_id: 'w', resume: { key: KEY } })
  await within(held.entered, 'the action subscribed and waits')
  for (let n = 1; n <= 5; n++) publish(n)
  await afterEvents()
  held.open()
  const got = await client.take(5)
  t.strictSame(got.map((m) => [m.action, m.response_status]), [['resume', 410], ['watch', 201], ['event', 200], ['event', 200], ['event', 200]])
  t.strictSame(got.slice(2).map((m) => [m.seq, m.data]), [[1, { n: 3 }], [2, { n: 4 }], [3, { n: 5 }]], 'the two oldest are gone: the client refetches')
})

t.test('a key names one subscription: claimed for another row → 410, and the key now belongs to that row\'s subscription', async (t) => {
  const { url, orm } = await startItems(t)
  const [one, two] = await seedItems(orm, 'one', 'two')
  const first = await openAs(t, url)
  await subscribe(first, one, { key: KEY })
  first.socket.terminate()
  await first.waitClose()
  await renameItem(orm, one, 'changed')

  const other = await openAs(t, url)
  t.equal((await subscribe(other, two, { key: KEY, seq: 0 }))[0].response_status, 410, 'row two cannot take row one\'s events')
  await renameItem(orm, one, 'again')
  await renameItem(orm, two, 'two!')
  const next = await other.next()
  t.strictSame([next.seq, next.data], [1, { id: two, name: 'two!' }], 'no event of row one reached it')
  other.socket.terminate()
  await other.waitClose()

  const rowOne = await openAs(t, url)
  t.equal((await subscribe(rowOne, one, { key: KEY, seq: 0 }))[0].response_status, 410, 'the parked row-one subscription was replaced')
})

t.test('a fresh subscribe with a key still held (its first reply was lost) replaces the old holder, which stops listening', async (t) => {
  const { url, orm, layer } = await startItems(t)
  const [one, two] = await seedItems(orm, 'one', 'two')
  const first = await openAs(t, url)
  await subscribe(first, one, { key: KEY })
  first.socket.terminate()
  await first.waitClose()
  const parked = layer.groups()
  t.equal(parked.length, 1, 'parked: still listening to row one')

  const second = await openAs(t, url)
  t.equal((await subscribe(second, two, { key: KEY }))[0].response_status, 201)
  t.equal(layer.groups().length, 1)
  t.not(layer.groups()[0], parked[0], 'row one\'s group is gone, row two\'s is listened to')
})

t.test('a slow claim overtaken by a newer one does not take the key back when it ends', async (t) => {
  // Events for socket "one" wait on a permission check held at a gate, so its surrender —
  // and with it the claim of socket "two" — cannot finish until the gate opens.
  const slow = gate()
  let holding = false
  const gated: Permission = {
    async hasPermission (ctx) {
      if (holding && (ctx.request.query as { who?: string }).who === 'one') await slow.wait()
      return true
    }
  }
  let subscribed = deferred()
  const watch = action('watch', async (ctx) => {
    await ctx.subscribe('g') // a claim, when resuming, has begun once this returns
    subscribed.resolve()
    return { status: 201 }
  })
  const { base, app } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, permissions: [gated], actions: [watch] })
  }, withPrincipal())
  const url = `${base}/items/`
  const watchFrame = (resume: Record<string, unknown>): Record<string, unknown> => ({ action: 'watch', request_id: 'w', resume })

  const one = await openAs(t, `${url}?who=one`)
  t.equal((await one.ask(watchFrame({ key: KEY }))).action, 'resume')
  await one.next()
  holding = true
  app.wsRest.publish('g', { n: 1 }) // one's subscription is now stuck on its permission check
  await within(slow.entered, 'the check of one\'s event waits')

  subscribed = deferred()
  const two = await openAs(t, `${url}?who=two`)
  two.send(watchFrame({ key: KEY, seq: 0 }))
  await within(subscribed.promise, 'two claims the key, and waits for one to hand it over')

  const three = await openAs(t, `${url}?who=three`)
  three.send(watchFrame({ key: KEY, seq: 0 }))
  const [announced, reply] = await three.take(2)
  t.strictSame([announced.response_status, reply.action], [410, 'watch'], 'nobody holds the key while two claims it: three starts afresh')

  holding = false
  slow.open() // two's claim ends now, after three took the key
  t.strictSame((await two.take(2)).map((m) => [m.action, m.response_status]), [['resume', 200], ['watch', 201]], 'two got one\'s events')
  app.wsRest.publish('g', { n: 2 })
  t.strictSame([(await three.next()).seq], [1])
  three.socket.terminate()
  await three.waitClose()

  const four = await openAs(t, `${url}?who=four`)
  four.send(watchFrame({ key: KEY, seq: 0 }))
  const [again] = await four.take(2)
  t.strictSame([again.response_status, again.data], [200, { key: KEY, seq: 0, replayed: 1 }], 'four resumes three (one event), not two')
  t.strictSame((await four.next()).data, { n: 2 })
})

t.test('a list subscription resumes only with the filter it was made with: events kept under one filter never replay under another (the same filter resumes: see the tests above)', async (t) => {
  const { url, orm } = await startItems(t)
  const [id] = await seedItems(orm, 'a')
  const first = await openAs(t, url)
  first.send({ action: 'subscribe_list', request_id: 'l', filter: { name: 'b' }, resume: { key: KEY } })
  t.strictSame((await first.take(2)).map((m) => m.action), ['resume', 'subscribe_list'])
  await renameItem(orm, id, 'b')
  t.equal((await first.next()).seq, 1)
  first.close()
  await first.waitClose()

  const other = await openAs(t, url)
  other.send({ action: 'subscribe_list', request_id: 'l', filter: { name: 'c' }, resume: { key: KEY, seq: 0 } })
  const [announced] = await other.take(2)
  t.strictSame([announced.action, announced.response_status], ['resume', 410], 'another filter: refetch, nothing replayed')
})

t.test('closing the app: the events a parked subscription is still checking are through before the app closes its ORM', async (t) => {
  // A permission that queries, held at a gate opened only as the app closes (its preClose):
  // the parked subscription's checks then run during the close, and must not meet a closed ORM.
  const held = gate()
  let armed = false
  let checked = 0
  let failed = 0
  const countsItems: Permission = {
    async hasPermission (ctx) {
      if (!armed) return true
      await held.wait()
      try {
        await ctx.em.count(Item, {})
        checked++
        return true
      } catch (err) {
        failed++
        throw err
      }
    }
  }
  const { app, base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, permissions: [countsItems], actions })
    app.wsRest.route('/watch/', { ...itemModel, actions })
    app.addHook('preClose', async () => { held.open() })
  }, withPrincipal())
  const [id] = await seedItems(orm, 'a')
  const parked = await openAs(t, `${base}/items/`)
  t.equal((await subscribe(parked, id, { key: KEY })).at(-1)?.response_status, 201)
  const watcher = await openAs(t, `${base}/watch/`, 'bob')
  t.equal((await watcher.request('subscribe_instance', { pk: id })).response_status, 201)

  armed = true
  parked.close()
  await parked.waitClose()
  const renames = 20
  for (let i = 0; i < renames; i++) await renameItem(orm, id, `n${i}`)
  // The watcher heard every rename: each was handed to the parked subscription as well.
  t.equal((await watcher.take(renames)).length, renames)

  await within(app.close(), 'the app closing')
  t.equal(failed, 0, 'no check met a closed ORM')
  t.equal(checked, renames, 'every event handed to the parked subscription was checked before the ORM closed')
})
