/**
 * Budgets of what subscriptions hold, and resume keys as more than bearer tokens. Real sockets:
 * - parked resumable subscriptions count against a per-client and a global budget; past
 *   them the oldest parked are dropped (a resume of one gets 410);
 * - search needles and string filter values are bounded by their column's length (else
 *   1,000 characters), and a socket's subscriptions hold at most `maxFilterChars` of them;
 * - a resume key has at least 128 bits; only its maker (same principal, route and stream)
 *   can claim it, and a connection without a principal makes nothing resumable (its
 *   address is no principal, though it is whose budget it counts against); a live holder whose key is taken is told so (409); what is replayed is
 *   checked against the claimer's scope and permissions as live events are.
 */
import t from 'tap'
import wsRest, { mixins, type Permission, type WsRestOptions } from '../index.js'
import Fastify, { type FastifyRequest } from 'fastify'
import { eventually } from './helpers/async.js'
import { connect, openClient, type TestClient, type WireReply } from './helpers/client.js'
import { Item, itemModel, renameItem, seedItems } from './helpers/item.js'
import { startApp } from './helpers/server.js'
import type { Teardown } from './helpers/async.js'

const actions = [mixins.list(), mixins.patch(), mixins.subscribeInstance(), mixins.subscribeList()]
const query = { filterFields: ['name'], searchFields: ['name'] }

async function startItems (t: Teardown, options: Omit<WsRestOptions, 'orm'> = {}, hooks?: (app: import('fastify').FastifyInstance) => void) {
  const { base, orm, app } = await startApp(t, [Item], (app) => {
    hooks?.(app)
    app.wsRest.route('/items/', { ...itemModel, ...query, actions })
    app.wsRest.route('/other/', { ...itemModel, ...query, actions })
  }, options)
  return { url: `${base}/items/`, other: `${base}/other/`, orm, app }
}

/** A resume key of 128 bits or more, distinct per `n`. */
const keyOf = (n: number | string): string => `key-${String(n).padStart(6, '0')}-resumable-subscription`

/** Subscribe resumably; the `resume` announcement and the subscribe reply. */
async function subscribeList (client: TestClient, requestId: string, resume: Record<string, unknown>): Promise<[WireReply, WireReply]> {
  client.send({ action: 'subscribe_list', request_id: requestId, resume })
  const first = await client.next()
  if (first.action !== 'resume') return [first, first]
  return [first, await client.next()]
}

/** Connect once the server has a place free (with `maxConnectionsPerIp: 1` a closed socket frees it a little later). */
async function connectWhenFree (url: string): Promise<TestClient> {
  let client: TestClient | undefined
  await eventually(async () => {
    client = await connect(url).catch(() => undefined)
    return client !== undefined
  }, 'a place to connect')
  return client as TestClient
}

/** The app's principal hook these tests use: `?who=` (a connection without it has none, and nothing it makes is resumable). */
const who = (request: FastifyRequest): string | undefined => (request.query as { who?: string }).who

t.test('parked subscriptions count per client: 40 reconnect cycles of 5 park at most maxParkedPerClient, the oldest dropped', async (t) => {
  const started = await startItems(t, { maxSubscriptions: 5, maxConnectionsPerIp: 1, maxConnections: 2, resume: { maxParkedPerClient: 20, principal: who } })
  const url = `${started.url}?who=alice`
  for (let cycle = 0; cycle < 40; cycle++) {
    const client = await connectWhenFree(url)
    for (let s = 0; s < 5; s++) client.send({ action: 'subscribe_list', request_id: `c${cycle}s${s}`, resume: { key: keyOf(cycle * 5 + s) } })
    const replies = await client.take(10)
    t.equal(replies.filter((r) => r.action === 'subscribe_list' && r.response_status === 201).length, 5, `cycle ${cycle} subscribed`)
    client.close()
    await client.waitClose()
  }
  const client = await connectWhenFree(url)
  t.teardown(() => client.close())
  const [oldest] = await subscribeList(client, 'c0s0', { key: keyOf(0), seq: 0 })
  t.equal(oldest.response_status, 410, 'the first parked subscription was dropped past the budget')
  const [older] = await subscribeList(client, 'c35s4', { key: keyOf(35 * 5 + 4), seq: 0 })
  t.equal(older.response_status, 410, 'the 21st newest too')
  const [newest] = await subscribeList(client, 'c39s4', { key: keyOf(39 * 5 + 4), seq: 0 })
  t.equal(newest.response_status, 200, 'the newest parked one is still there')
  const [twentieth] = await subscribeList(client, 'c36s0', { key: keyOf(36 * 5), seq: 0 })
  t.equal(twentieth.response_status, 200, 'and the 20th newest')
})

t.test('parked subscriptions count globally: past maxParked the oldest of any client go', async (t) => {
  const { url } = await startItems(t, {
    maxSubscriptions: 5,
    resume: { maxParked: 12, principal: who }
  })
  for (let who = 0; who < 5; who++) {
    const client = await openClient(t, `${url}?who=${who}`)
    for (let s = 0; s < 5; s++) client.send({ action: 'subscribe_list', request_id: `s${s}`, resume: { key: keyOf(who * 5 + s) } })
    await client.take(10)
    client.close()
    await client.waitClose()
  }
  const first = await openClient(t, `${url}?who=0`)
  t.equal((await subscribeList(first, 's4', { key: keyOf(4), seq: 0 }))[0].response_status, 410, 'client 0\'s were the oldest: dropped')
  const last = await openClient(t, `${url}?who=4`)
  t.equal((await subscribeList(last, 's0', { key: keyOf(20), seq: 0 }))[0].response_status, 200, 'client 4\'s were kept')
})

t.test('a search or string filter value past its bound is a 400 keyed search / filter, for list and subscribe_list', async (t) => {
  const { url } = await startItems(t)
  const client = await openClient(t, url)
  const huge = 'x'.repeat(500_000)
  for (const action of ['list', 'subscribe_list']) {
    const search = await client.ask({ action, request_id: 'q', search: huge })
    t.equal(search.response_status, 400, `${action} search`)
    t.match(search.errors, [{ search: [/^Ensure this value has at most \d+ characters\.$/] }])
    const contains = await client.ask({ action, request_id: 'q', filter: { name: { $contains: huge } } })
    t.equal(contains.response_status, 400, `${action} $contains`)
    t.match(contains.errors, [{ filter: [/^Invalid value for "name": Ensure this value has at most \d+ characters\.$/] }])
    const eq = await client.ask({ action, request_id: 'q', filter: { name: { $in: ['a', huge] } } })
    t.equal(eq.response_status, 400, `${action} $in`)
    t.match(eq.errors, [{ filter: [/at most \d+ characters/] }])
  }
  const fine = await client.ask({ action: 'list', request_id: 'q', search: 'x'.repeat(200), filter: { name: { $contains: 'y'.repeat(200) } } })
  t.equal(fine.response_status, 200, 'within the column\'s length: accepted')
})

t.test('maxFilterChars: a socket\'s subscriptions hold that much filter and search in all; past it → 429', async (t) => {
  const { url } = await startItems(t, { maxFilterChars: 300 })
  const client = await openClient(t, url)
  const filter = (c: string): Record<string, unknown> => ({ name: { $contains: c.repeat(100) } })
  t.equal((await client.ask({ action: 'subscribe_list', request_id: 'a', filter: filter('a') })).response_status, 201)
  t.equal((await client.ask({ action: 'subscribe_list', request_id: 'b', filter: filter('b') })).response_status, 201)
  const over = await client.ask({ action: 'subscribe_list', request_id: 'c', filter: filter('c') })
  t.strictSame([over.response_status, over.errors], [429, ['Too much filtering: the subscriptions of a connection may hold filters and searches of 300 characters in all.']])
  t.equal((await client.ask({ action: 'subscribe_list', request_id: 'b', filter: filter('d') })).response_status, 201,
    'replacing a subscription\'s filter gives its share back first')
  t.equal((await client.ask({ action: 'subscribe_list', request_id: 'e' })).response_status, 201, 'a subscription without filter costs nothing')
  t.equal((await client.ask({ action: 'unsubscribe_list', request_id: 'a' })).response_status, 204)
  t.equal((await client.ask({ action: 'subscribe_list', request_id: 'c', filter: filter('c') })).response_status, 201, 'an unsubscribe frees its share')
})

t.test('a resume key of fewer than 128 bits is a 400 keyed resume, with a principal or without (where it would be ignored)', async (t) => {
  const { url } = await startItems(t, { resume: { principal: who } })
  const client = await openClient(t, `${url}?who=alice`)
  const anonymous = await openClient(t, url)
  for (const socket of [client, anonymous]) {
    for (const key of ['abcdefghijklmnopqrstu', '0123456789abcdef0123456789abcde']) {
      const reply = await socket.ask({ action: 'subscribe_list', request_id: 'r', resume: { key } })
      t.equal(reply.response_status, 400, `${key.length} characters refused`)
      t.match(reply.errors, [{ resume: [/^Expected \{"key"/] }])
    }
  }
  for (const key of ['abcdefghijklmnopqrstuv', '0123456789abcdef0123456789abcdef']) {
    t.strictSame((await subscribeList(client, key, { key })).map((r) => [r.action, r.response_status]), [['resume', 201], ['subscribe_list', 201]],
      `${key.length} characters accepted`)
  }
})

t.test('only the maker may claim a key: another user, or another route, gets 410 and the parked subscription stays', async (t) => {
  const { url, other, orm } = await startItems(t, {}, (app) => {
    app.addHook('onRequest', async (request) => {
      const user = (request.query as { user?: string }).user
      if (user !== undefined) (request as unknown as { user: unknown }).user = { id: user, name: `user ${user}` }
    })
  })
  const [id] = await seedItems(orm, 'a')
  const KEY = keyOf('alice')
  const alice = await openClient(t, `${url}?user=alice`)
  alice.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY } })
  t.strictSame((await alice.take(2)).map((r) => r.response_status), [201, 201])
  alice.socket.terminate()
  await alice.waitClose()
  await renameItem(orm, id, 'b')

  const mallory = await openClient(t, `${url}?user=mallory`)
  mallory.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY, seq: 0 } })
  const [refused] = await mallory.take(2)
  t.equal(refused.response_status, 410, 'another user: as if the key were unknown')

  const elsewhere = await openClient(t, `${other}?user=alice`)
  elsewhere.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY, seq: 0 } })
  t.equal((await elsewhere.take(2))[0].response_status, 410, 'the same user on another route: 410 too')

  const back = await openClient(t, `${url}?user=alice`)
  back.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY, seq: 0 } })
  const [resumed, , event] = await back.take(3)
  t.strictSame([resumed.response_status, resumed.data], [200, { key: KEY, seq: 0, replayed: 1 }], 'alice resumes: nobody took it over')
  t.strictSame([event.seq, event.data], [1, { id, name: 'b' }])
})

/**
 * A route whose scope and object permission depend on the connection's role (`?role=`),
 * while its principal is the user (`?user=`): a user whose role changed reconnects as the
 * same principal.
 */
async function startRoles (t: Parameters<typeof startApp>[0], by: 'scope' | 'permission') {
  const role = (request: { query: unknown }): string => (request.query as { role?: string }).role ?? 'reader'
  const secretsForAdmins: Permission = {
    hasObjectPermission: (ctx, _action, row) => role(ctx.request) === 'admin' || !String(row.name).startsWith('secret')
  }
  return await startApp(t, [Item], (app) => {
    app.addHook('onRequest', async (request) => {
      const user = (request.query as { user?: string }).user
      if (user !== undefined) (request as unknown as { user: unknown }).user = { id: user }
    })
    app.wsRest.route('/items/', {
      ...itemModel,
      ...(by === 'scope'
        ? { getQueryset: (ctx) => role(ctx.request) === 'admin' ? {} : { name: { $ne: 'secret' } } }
        : { permissions: [secretsForAdmins] }),
      actions
    })
  })
}

for (const by of ['scope', 'permission'] as const) {
  t.test(`a replay is checked against the claimer's ${by}: the same user, no longer admin, gets 410, not the rows it may not see`, async (t) => {
    const { base, orm } = await startRoles(t, by)
    const [id] = await seedItems(orm, 'open')
    const KEY = keyOf(`roles-${by}`)
    const park = async (): Promise<void> => {
      const admin = await openClient(t, `${base}/items/?user=alice&role=admin`)
      const [made] = await subscribeList(admin, 'sub', { key: KEY })
      t.equal(made.response_status, 201)
      admin.socket.terminate()
      await admin.waitClose()
      // While she is away: the row becomes one only admins may see.
      await renameItem(orm, id, 'secret')
    }

    await park()
    const reader = await openClient(t, `${base}/items/?user=alice&role=reader`)
    const [refused, subscribed] = await subscribeList(reader, 'sub', { key: KEY, seq: 0 })
    t.strictSame([refused.response_status, subscribed.response_status], [410, 201], 'a reader now: refetch, no replay')
    await renameItem(orm, id, 'open')
    const next = await reader.next()
    t.strictSame([next.action, next.data, next.seq], [by === 'scope' ? 'create' : 'update', { id, name: 'open' }, 1],
      'the next frame is a live event, numbered afresh: the admin\'s row was never replayed')
    reader.close()
    await reader.waitClose()

    // Still admin: the same replay goes through.
    await renameItem(orm, id, 'open')
    await park()
    const admin = await openClient(t, `${base}/items/?user=alice&role=admin`)
    const [resumed] = await subscribeList(admin, 'sub', { key: KEY, seq: 0 })
    t.equal(resumed.response_status, 200, 'the admin resumes')
    const replayed = await admin.next()
    t.strictSame([replayed.data, replayed.seq], [{ id, name: 'secret' }, 1])
  })
}

t.test('a live holder whose key is taken by another connection (of the same principal) gets a "resume" 409, then nothing more', async (t) => {
  const started = await startItems(t, { resume: { principal: who } })
  const { orm } = started
  const url = `${started.url}?who=alice`
  const [id] = await seedItems(orm, 'a')
  const KEY = keyOf('live')
  const old = await openClient(t, url)
  old.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY } })
  await old.take(2)

  const fresh = await openClient(t, url)
  fresh.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY, seq: 0 } })
  t.strictSame((await fresh.take(2)).map((r) => r.response_status), [200, 201])
  const told = await old.next()
  t.strictSame(told, {
    errors: ['This subscription was taken over by another connection with its resume key; no more events will come here. Subscribe again to go on here.'],
    data: null, action: 'resume', response_status: 409, request_id: 'sub'
  })
  await renameItem(orm, id, 'b')
  t.equal((await fresh.next()).seq, 1)
  t.equal((await old.request('patch', { pk: id, data: { name: 'c' } })).action, 'patch', 'the old socket gets no event')

  // A fresh subscribe (no seq) with the key also displaces the live holder, which is told.
  const third = await openClient(t, url)
  third.send({ action: 'subscribe_instance', request_id: 'sub', pk: id, resume: { key: KEY } })
  await third.take(2)
  const displaced = await fresh.take(2)
  t.strictSame(displaced.map((r) => [r.action, r.response_status]), [['update', 200], ['resume', 409]], 'its last event, then the 409')
})

t.test('the new options are checked at registration', async (t) => {
  for (const [options, name] of [
    [{ maxFilterChars: 0 }, 'maxFilterChars'],
    [{ resume: { maxParked: -1 } }, 'resume.maxParked'],
    [{ resume: { maxParkedPerClient: 1.5 } }, 'resume.maxParkedPerClient'],
    [{ resume: { principal: 'ip' } }, 'resume.principal']
  ] as const) {
    const app = Fastify()
    t.teardown(async () => await app.close())
    const err = await app.register(wsRest, options as never).ready().then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'FST_WSREST_INVALID_OPTION', message: new RegExp(name.replace('.', '\\.')) }, `${JSON.stringify(options)} refused`)
  }
})

t.test('live subscriptions count against the client\'s budget over all its sockets, and the process\'s', async (t) => {
  const { url } = await startItems(t, { maxSubscriptionsPerClient: 3 })
  const a = await openClient(t, url)
  const b = await openClient(t, url)
  for (const id of ['1', '2']) t.equal((await a.ask({ action: 'subscribe_list', request_id: id })).response_status, 201)
  t.equal((await b.ask({ action: 'subscribe_list', request_id: '3' })).response_status, 201)
  const refused = await b.ask({ action: 'subscribe_list', request_id: '4' })
  t.strictSame([refused.response_status, refused.errors], [429, ['Too many subscriptions: a client may hold 3 on all its connections together.']],
    'the fourth of one client (one address here), on another socket: 429')
  t.equal((await b.ask({ action: 'subscribe_list', request_id: '3' })).response_status, 201, 'replacing one is not one more')
  t.equal((await a.ask({ action: 'unsubscribe_list', request_id: '1' })).response_status, 204)
  t.equal((await b.ask({ action: 'subscribe_list', request_id: '4' })).response_status, 201, 'an unsubscribe gives its place back')
  a.close()
  await a.waitClose()
  await eventually(async () => (await b.ask({ action: 'subscribe_list', request_id: '5' })).response_status === 201, 'a closed socket gives its places back')

  const { url: small } = await startItems(t, { maxSubscriptionsTotal: 2 })
  const c = await openClient(t, small)
  await c.ask({ action: 'subscribe_list', request_id: '1' })
  await c.ask({ action: 'subscribe_list', request_id: '2' })
  t.strictSame((await c.ask({ action: 'subscribe_list', request_id: '3' })).errors, ['Too many subscriptions on this server: it holds 2.'])
})
