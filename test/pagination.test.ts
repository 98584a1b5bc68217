/**
 * Paginated and streamed `list`: limit/offset reading, page shapes, streams page by page,
 * concurrent streams and `list_cancel` — on a bare app and on the example server.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type ActionContext, type ActionDefinition, type RouteOptions } from '../index.js'
import { gate, within } from './helpers/async.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { startApp, startExample } from './helpers/server.js'

const Item = defineEntity({
  name: 'Item',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    // Indexed, so a query scoped on it may come back in name order unless ordered by id.
    name: p.string().index(),
    secret: p.string().default('hidden')
  })
})
type Item = InferEntity<typeof Item>

const ItemPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

/** The public shape of items `from`..`to` (ids), as a page's results show them. */
function items (from: number, to: number): Array<{ id: number, name: string }> {
  const out = []
  for (let id = from; id <= to; id++) out.push({ id, name: `item ${id}` })
  return out
}

async function seed (orm: MikroORM, count: number): Promise<void> {
  const em = orm.em.fork()
  for (let id = 1; id <= count; id++) em.create(Item, { name: `item ${id}`, secret: 'hidden' })
  await em.flush()
}

/**
 * How to wait, for a client, until no stream can send it anything more (see
 * assertNothingMore): set when the client is opened.
 */
const settledFor = new WeakMap<TestClient, () => Promise<void>>()

/** Counts the running handlers of streamed actions, and tells when none is left. */
function streamTracker (): { wrap: (actions: RouteOptions<Item>['actions']) => ActionDefinition[], idle: () => Promise<void> } {
  let running = 0
  let waiters: Array<() => void> = []
  return {
    wrap: (actions) => actions.flat().map((def): ActionDefinition => !def.stream
      ? def
      : {
          ...def,
          handler: async (ctx, args) => {
            running++
            try {
              return await def.handler(ctx, args)
            } finally {
              if (--running === 0) for (const resolve of waiters.splice(0)) resolve()
            }
          }
        }),
    idle: async () => {
      if (running > 0) await within(new Promise<void>((resolve) => waiters.push(resolve)), 'a stream still running')
    }
  }
}

/**
 * Counts the app's database queries in flight (every query MikroORM runs goes through its
 * connection's `execute`, on knex and on kysely alike), and tells when none is left.
 */
function readTracker (orm: MikroORM): () => Promise<void> {
  let inFlight = 0
  const waiters: Array<() => void> = []
  for (const connection of new Set([orm.em.getConnection('read'), orm.em.getConnection('write')])) {
    const execute = connection.execute.bind(connection) as (...args: unknown[]) => Promise<unknown>
    connection.execute = (async (...args: unknown[]) => {
      inFlight++
      try {
        return await execute(...args)
      } finally {
        if (--inFlight === 0) for (const resolve of waiters.splice(0)) resolve()
      }
    }) as typeof connection.execute
  }
  return async () => {
    if (inFlight > 0) await within(new Promise<void>((resolve) => waiters.push(resolve)), 'a read still running')
  }
}

/** A bare app with `count` items and the given Item routes; returns a connector. */
async function start (
  t: Test,
  count: number,
  routes: Record<string, Omit<RouteOptions<Item>, 'entity' | 'schema'>>
): Promise<(path: string) => Promise<TestClient>> {
  const streams = streamTracker()
  const { orm, base } = await startApp(t, [Item], (app) => {
    for (const [path, options] of Object.entries(routes)) {
      app.wsRest.route(path, { entity: Item, schema: { response: ItemPublic }, ...options, actions: streams.wrap(options.actions) })
    }
  })
  await seed(orm, count)
  return async (path) => {
    const client = await connect(`${base}${path}`)
    t.teardown(() => client.close())
    settledFor.set(client, streams.idle)
    return client
  }
}

/** The page fields of a reply, for one strict comparison. */
function page (reply: WireReply): unknown {
  return { status: reply.response_status, errors: reply.errors, action: reply.action, request_id: reply.request_id, data: reply.data }
}

function expectedPage (requestId: unknown, count: number, limit: number, offset: number, results: unknown[]): unknown {
  return { status: 200, errors: [], action: 'list', request_id: requestId, data: { count, results, limit, offset } }
}

/**
 * After a stream's last page, nothing more may come for it. Streams send no final reply,
 * so first wait until no stream can still send (every streamed handler on a bare app has
 * returned; on the example, whose handlers cannot be wrapped, every query the stream
 * could have started after its last page has completed — that query is issued before
 * the client can even read the page). Any stray page is then already on the wire, ahead
 * of the reply to a probe sent now (`retrieve`, or a one-page `list` on the example).
 * This does not depend on how many connections the database gives the app. (A
 * `list_cancel` probe would not do: it would stop the very page it is meant to detect.)
 */
async function assertNothingMore (t: Test, client: TestClient, id: string, probe: Record<string, unknown> = { action: 'retrieve', pk: 1 }): Promise<void> {
  const settled = settledFor.get(client)
  if (settled === undefined) throw new Error('assertNothingMore needs a client from start() or a tracked example client')
  await settled()
  client.send({ ...probe, request_id: id })
  const next = await client.next()
  t.strictSame(
    { action: next.action, request_id: next.request_id },
    { action: probe.action, request_id: id },
    'the next message after the last page is the probe\'s reply'
  )
}

/** The example's stream route has only list and list_cancel: probe with a list that fits in one page. */
const ONE_PAGE_LIST = { action: 'list', limit: 100 }

/**
 * A gate a getQueryset can wait on: `entered` resolves when a query reaches it, and the
 * query then waits until `open()` — so a test can hold a stream between two pages
 * without sleeping.
 */
// ---------------------------------------------------------------- paginated list

t.test('paginatedList answers {count, results, limit, offset} with the default limit', async (t) => {
  const open = await start(t, 7, { '/paged/': { actions: [mixins.paginatedList({ defaultLimit: 3, maxLimit: 5 })] } })
  const client = await open('/paged/')

  const first = await client.request('list')
  t.strictSame(page(first), expectedPage(first.request_id, 7, 3, 0, items(1, 3)), 'default limit 3, offset 0, ordered by id')
  t.strictSame(Object.keys(first.data).sort(), ['count', 'limit', 'offset', 'results'])
  t.notMatch(JSON.stringify(first), /hidden|secret/, 'results are shaped by the response schema')

  const last = await client.request('list', { offset: 6 })
  t.strictSame(last.data, { count: 7, results: items(7, 7), limit: 3, offset: 6 }, 'a short last page')
})

t.test('paginatedList reads limit and offset as numbers or numeric strings, capped at maxLimit', async (t) => {
  const open = await start(t, 12, { '/paged/': { actions: [mixins.paginatedList({ defaultLimit: 3, maxLimit: 5 })] } })
  const client = await open('/paged/')

  t.strictSame((await client.request('list', { limit: 2, offset: 4 })).data, { count: 12, results: items(5, 6), limit: 2, offset: 4 })
  t.strictSame((await client.request('list', { limit: '2', offset: '4' })).data, { count: 12, results: items(5, 6), limit: 2, offset: 4 }, 'numeric strings')
  t.strictSame((await client.request('list', { limit: 5 })).data, { count: 12, results: items(1, 5), limit: 5, offset: 0 }, 'exactly the maximum')
  for (const limit of [6, 100, '50', 1e12]) {
    t.strictSame((await client.request('list', { limit, offset: 1 })).data, { count: 12, results: items(2, 6), limit: 5, offset: 1 }, `limit ${JSON.stringify(limit)} capped at 5`)
  }
})

t.test('paginatedList: limit ≤ 0 or invalid → the default; offset < 0 or invalid → 0', async (t) => {
  const open = await start(t, 7, { '/paged/': { actions: [mixins.paginatedList({ defaultLimit: 3, maxLimit: 5 })] } })
  const client = await open('/paged/')

  for (const limit of [0, -1, '0', '-4', 'abc', '', '2.5', 2.5, null, true, [2], { n: 2 }]) {
    const reply = await client.request('list', { limit, offset: 2 })
    t.strictSame(reply.data, { count: 7, results: items(3, 5), limit: 3, offset: 2 }, `limit ${JSON.stringify(limit)} → default`)
  }
  for (const offset of [-1, '-3', 'x', '', 1.5, null, false, [3], { n: 3 }]) {
    const reply = await client.request('list', { limit: 2, offset })
    t.strictSame(reply.data, { count: 7, results: items(1, 2), limit: 2, offset: 0 }, `offset ${JSON.stringify(offset)} → 0`)
  }
})

t.test('paginatedList: an offset at or past the end gives results [] and the true count', async (t) => {
  const open = await start(t, 7, { '/paged/': { actions: [mixins.paginatedList({ defaultLimit: 3 })] } })
  const client = await open('/paged/')

  for (const offset of [7, 8, 1000, '1000']) {
    const reply = await client.request('list', { offset })
    t.strictSame(
      [reply.response_status, reply.data],
      [200, { count: 7, results: [], limit: 3, offset: Number(offset) }],
      `offset ${JSON.stringify(offset)}`
    )
  }
})

t.test('paginatedList: a huge limit is capped at the maximum, a huge offset is past the end', async (t) => {
  const open = await start(t, 7, { '/paged/': { actions: [mixins.paginatedList({ defaultLimit: 3, maxLimit: 5 })] } })
  const client = await open('/paged/')

  // Up to 15 digits the numbers are read as such.
  t.strictSame((await client.request('list', { limit: 1e15 })).data.limit, 5, 'limit 1e15 → the maximum')
  t.strictSame((await client.request('list', { offset: 1e15 })).data.results, [], 'offset 1e15 → past the end')

  // Larger ones are still positive integers (DRF reads them with int()): the same must hold.
  for (const limit of [1e16, '9999999999999999']) {
    const reply = await client.request('list', { limit })
    t.equal(reply.data.limit, 5, `limit ${JSON.stringify(limit)} → the maximum`)
  }
  for (const offset of [1e16, '99999999999999999999']) {
    const reply = await client.request('list', { offset })
    t.strictSame([reply.data.count, reply.data.results], [7, []], `offset ${JSON.stringify(offset)} → results []`)
  }
})

t.test('paginatedList on an empty table, and scoped by getQueryset', async (t) => {
  const open = await start(t, 0, { '/paged/': { actions: [mixins.paginatedList()] } })
  const client = await open('/paged/')
  t.strictSame((await client.request('list')).data, { count: 0, results: [], limit: 20, offset: 0 }, 'default limit 20 when none is configured')

  const openScoped = await start(t, 9, {
    '/odd/': { getQueryset: () => ({ id: { $in: [1, 3, 5, 7, 9] } }), actions: [mixins.paginatedList({ defaultLimit: 2 })] }
  })
  const scoped = await openScoped('/odd/')
  t.strictSame((await scoped.request('list', { offset: 2 })).data, {
    count: 5, results: [{ id: 5, name: 'item 5' }, { id: 7, name: 'item 7' }], limit: 2, offset: 2
  }, 'count and pages only cover the scope')
})

t.test('pages follow the primary key even when the database would return another order', async (t) => {
  // A range on the indexed name lets SQLite scan the index: "item 1", "item 10", "item 11", "item 2", …
  const byName = { getQueryset: () => ({ name: { $gte: 'item' } }) }
  const open = await start(t, 12, {
    '/paged/': { ...byName, actions: [mixins.paginatedList({ defaultLimit: 4 })] },
    '/stream/': { ...byName, actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 4 })] }
  })
  const paged = await open('/paged/')
  t.strictSame((await paged.request('list')).data.results, items(1, 4))
  t.strictSame((await paged.request('list', { offset: 8 })).data.results, items(9, 12))

  const stream = await open('/stream/')
  stream.send({ action: 'list', request_id: 'ordered' })
  t.strictSame((await stream.take(3)).map((r) => r.data.results), [items(1, 4), items(5, 8), items(9, 12)])
  await assertNothingMore(t, stream, 'after-ordered')
})

// ---------------------------------------------------------------- streamed list

t.test('streamedList sends one reply per page with the request_id, and nothing after the last', async (t) => {
  const open = await start(t, 8, { '/stream/': { actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 3, maxLimit: 4 })] } })
  const client = await open('/stream/')

  client.send({ action: 'list', request_id: 's1' })
  const pages = await client.take(3)
  t.strictSame(pages.map(page), [
    expectedPage('s1', 8, 3, 0, items(1, 3)),
    expectedPage('s1', 8, 3, 3, items(4, 6)),
    expectedPage('s1', 8, 3, 6, items(7, 8))
  ], 'offsets 0, 3, 6 until offset + limit >= count')
  await assertNothingMore(t, client, 'after-s1')

  // count a multiple of limit: the page with offset + limit == count is the last, no empty page after it.
  client.send({ action: 'list', request_id: 's2', limit: '8' })
  t.strictSame((await client.take(2)).map(page), [
    expectedPage('s2', 8, 4, 0, items(1, 4)),
    expectedPage('s2', 8, 4, 4, items(5, 8))
  ], 'a limit as a numeric string, capped at maxLimit 4')
  await assertNothingMore(t, client, 'after-s2')

  client.send({ action: 'list', request_id: 's3', limit: 8, offset: 5 })
  t.strictSame(page(await client.next()), expectedPage('s3', 8, 4, 5, items(6, 8)), 'a stream starts at the request\'s offset, as DCRF')
  await assertNothingMore(t, client, 'after-s3')

  client.send({ action: 'list', request_id: 's4', limit: -2 })
  t.strictSame((await client.take(3)).map((r) => [r.request_id, r.data.limit, r.data.offset]), [['s4', 3, 0], ['s4', 3, 3], ['s4', 3, 6]], 'a bad limit → the default')
  await assertNothingMore(t, client, 'after-s4')
})

t.test('streamedList over an empty table sends a single empty page', async (t) => {
  const open = await start(t, 0, { '/stream/': { actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 3 })] } })
  const client = await open('/stream/')
  client.send({ action: 'list', request_id: 'empty' })
  t.strictSame(page(await client.next()), expectedPage('empty', 0, 3, 0, []))
  await assertNothingMore(t, client, 'after-empty')
})

t.test('two streams at once on one socket: both complete, each with its own request_id', async (t) => {
  const slow = gate()
  let slowQueries = 0
  const open = await start(t, 7, {
    '/stream/': {
      // Hold the "slow" stream before its second page, so the "fast" one must run beside it.
      getQueryset: async (ctx: ActionContext) => {
        if (ctx.requestId === 'slow' && ++slowQueries === 2) await slow.wait()
        return undefined
      },
      actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 3 })]
    }
  })
  const client = await open('/stream/')

  client.send({ action: 'list', request_id: 'slow', limit: 2 })
  t.strictSame(page(await client.next()), expectedPage('slow', 7, 2, 0, items(1, 2)), 'slow: first page')
  await slow.entered
  client.send({ action: 'list', request_id: 'fast', limit: 3 })
  t.strictSame((await client.take(3)).map(page), [
    expectedPage('fast', 7, 3, 0, items(1, 3)),
    expectedPage('fast', 7, 3, 3, items(4, 6)),
    expectedPage('fast', 7, 3, 6, items(7, 7))
  ], 'fast: all its pages while slow is held')
  slow.open()
  t.strictSame((await client.take(3)).map(page), [
    expectedPage('slow', 7, 2, 2, items(3, 4)),
    expectedPage('slow', 7, 2, 4, items(5, 6)),
    expectedPage('slow', 7, 2, 6, items(7, 7))
  ], 'slow: the rest of its pages')
  await assertNothingMore(t, client, 'after-both')
})

t.test('two streams started together both complete, pages interleaved but each in order', async (t) => {
  const open = await start(t, 9, { '/stream/': { actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 3 })] } })
  const client = await open('/stream/')

  client.send({ action: 'list', request_id: 'a', limit: 2 })
  client.send({ action: 'list', request_id: 'b', limit: 4 })
  const all = await client.take(5 + 3)
  const of = (id: string): unknown[] => all.filter((r) => r.request_id === id).map((r) => [r.data.offset, r.data.results.length])
  t.strictSame(of('a'), [[0, 2], [2, 2], [4, 2], [6, 2], [8, 1]], 'a: five pages of 2')
  t.strictSame(of('b'), [[0, 4], [4, 4], [8, 1]], 'b: three pages of 4')
  await assertNothingMore(t, client, 'after-ab')
})

t.test('list_cancel: 200 with data null, also when nothing is streaming', async (t) => {
  const open = await start(t, 3, { '/stream/': { actions: [mixins.retrieve(), ...mixins.streamedList()] } })
  const client = await open('/stream/')
  const reply = await client.request('list_cancel')
  t.strictSame(
    { errors: reply.errors, data: reply.data, action: reply.action, status: reply.response_status },
    { errors: [], data: null, action: 'list_cancel', status: 200 }
  )
  // A cancel before a stream does not stop the stream that follows.
  client.send({ action: 'list', request_id: 'later' })
  t.strictSame(page(await client.next()), expectedPage('later', 3, 20, 0, items(1, 3)))
  await assertNothingMore(t, client, 'after-later')
})

t.test('list_cancel stops every stream in flight: no page after its reply', async (t) => {
  const held = gate()
  let queries = 0
  const open = await start(t, 10, {
    '/stream/': {
      // Hold both streams inside the query for their second page, then cancel them there.
      getQueryset: async (ctx: ActionContext) => {
        if (ctx.action === 'list' && ++queries >= 3) await held.wait()
        return undefined
      },
      actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 2 })]
    }
  })
  const client = await open('/stream/')

  client.send({ action: 'list', request_id: 'x' })
  client.send({ action: 'list', request_id: 'y' })
  const firsts = await client.take(2)
  t.strictSame(firsts.map((r) => [r.request_id, r.data.offset]).sort(), [['x', 0], ['y', 0]], 'each stream sent its first page')
  await held.entered

  const cancel = await client.request('list_cancel')
  t.strictSame([cancel.action, cancel.response_status, cancel.data], ['list_cancel', 200, null])
  held.open()
  // Had either stream gone on, its second page would come before this reply.
  await assertNothingMore(t, client, 'after-cancel')
  t.equal(queries, 4, 'both streams had reached their second query when cancelled')

  // The socket streams again afterwards.
  client.send({ action: 'list', request_id: 'z', limit: 5 })
  t.strictSame((await client.take(2)).map((r) => [r.request_id, r.data.offset]), [['z', 0], ['z', 5]])
  await assertNothingMore(t, client, 'after-z')
})

t.test('list_cancel stops a long stream running freely', async (t) => {
  const total = 400
  const open = await start(t, total, { '/stream/': { actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 1 })] } })
  const client = await open('/stream/')

  client.send({ action: 'list', request_id: 'long' })
  t.equal((await client.next()).request_id, 'long', 'the stream started')
  client.send({ action: 'list_cancel', request_id: 'stop' })
  // Pages already on the wire may arrive first; after the cancel reply nothing more may.
  const offsets = [0]
  let reply = await client.next()
  while (reply.request_id === 'long') {
    offsets.push(reply.data.offset)
    reply = await client.next()
  }
  t.strictSame([reply.request_id, reply.action, reply.response_status, reply.data], ['stop', 'list_cancel', 200, null])
  t.ok(offsets.length < total, `stopped after ${offsets.length} of ${total} pages`)
  t.strictSame(offsets, offsets.map((_, i) => i), 'the pages before the cancel were in order')
  await assertNothingMore(t, client, 'after-stop')
})

t.test('list_cancel on one socket does not stop a stream on another', async (t) => {
  const held = gate()
  let queries = 0
  const open = await start(t, 4, {
    '/stream/': {
      getQueryset: async (ctx: ActionContext) => {
        if (ctx.requestId === 'other' && ++queries === 2) await held.wait()
        return undefined
      },
      actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 2 })]
    }
  })
  const one = await open('/stream/')
  const two = await open('/stream/')

  two.send({ action: 'list', request_id: 'other' })
  t.equal((await two.next()).data.offset, 0)
  await held.entered
  t.equal((await one.request('list_cancel')).response_status, 200)
  held.open()
  t.strictSame(page(await two.next()), expectedPage('other', 4, 2, 2, items(3, 4)), 'the other socket finished its stream')
  await assertNothingMore(t, two, 'after-other')
})

// ---------------------------------------------------------------- the example server

/** Create `count` users through the example's `/ws/` route. */
async function createUsers (base: string, count: number, t: Test): Promise<Array<{ id: number, username: string, email: string }>> {
  const client = await connect(`${base}/ws/`)
  t.teardown(() => client.close())
  const users = []
  for (let i = 1; i <= count; i++) {
    const reply = await client.request('create', {
      data: { username: `user${i}`, email: `user${i}@example.com`, password1: 'pw-123456', password2: 'pw-123456' }
    })
    t.equal(reply.response_status, 201, `user${i} created`)
    users.push(reply.data)
  }
  return users
}

t.test('example /ws/paginated/: limit/offset pages of public users, default limit 2', async (t) => {
  const { base } = await startExample(t)
  const users = await createUsers(base, 5, t)
  t.strictSame(users[0], { id: 1, username: 'user1', email: 'user1@example.com' })
  const client = await connect(`${base}/ws/paginated/`)
  t.teardown(() => client.close())

  const first = await client.request('list')
  t.strictSame(page(first), expectedPage(first.request_id, 5, 2, 0, users.slice(0, 2)))
  t.strictSame((await client.request('list', { offset: 4 })).data, { count: 5, results: users.slice(4), limit: 2, offset: 4 })
  t.strictSame((await client.request('list', { limit: '3', offset: '1' })).data, { count: 5, results: users.slice(1, 4), limit: 3, offset: 1 })
  t.strictSame((await client.request('list', { limit: 0, offset: -1 })).data, { count: 5, results: users.slice(0, 2), limit: 2, offset: 0 })
  t.strictSame((await client.request('list', { offset: 5 })).data, { count: 5, results: [], limit: 2, offset: 5 })
  t.notMatch(JSON.stringify(first), /password|pw-123456/, 'no password in any page')
  const other = await client.request('retrieve', { pk: 1 })
  t.strictSame([other.response_status, other.errors], [405, ['Method "retrieve" not allowed.']], 'the route has list only')
})

t.test('example /ws/stream/: pages of 2 with the request_id, then nothing; list_cancel', async (t) => {
  const { base, orm } = await startExample(t)
  const queriesDone = readTracker(orm)
  const users = await createUsers(base, 5, t)
  const client = await connect(`${base}/ws/stream/`)
  t.teardown(() => client.close())
  settledFor.set(client, queriesDone)

  client.send({ action: 'list', request_id: 'users' })
  t.strictSame((await client.take(3)).map(page), [
    expectedPage('users', 5, 2, 0, users.slice(0, 2)),
    expectedPage('users', 5, 2, 2, users.slice(2, 4)),
    expectedPage('users', 5, 2, 4, users.slice(4))
  ])
  await assertNothingMore(t, client, 'after-users', ONE_PAGE_LIST)

  client.send({ action: 'list', request_id: 'big', limit: '4' })
  t.strictSame((await client.take(2)).map((r) => [r.request_id, r.data.limit, r.data.offset, r.data.results.length]), [['big', 4, 0, 4], ['big', 4, 4, 1]])
  await assertNothingMore(t, client, 'after-big', ONE_PAGE_LIST)

  // From the request's offset, as DCRF.
  client.send({ action: 'list', request_id: 'from1', limit: 3, offset: 1 })
  t.strictSame((await client.take(2)).map(page), [
    expectedPage('from1', 5, 3, 1, users.slice(1, 4)),
    expectedPage('from1', 5, 3, 4, users.slice(4))
  ], 'a stream starts at the request\'s offset')
  await assertNothingMore(t, client, 'after-from1', ONE_PAGE_LIST)

  // One page holding every user is the only page.
  client.send({ action: 'list', request_id: 'all', limit: 5 })
  t.strictSame(page(await client.next()), expectedPage('all', 5, 5, 0, users))
  await assertNothingMore(t, client, 'after-all', ONE_PAGE_LIST)

  const cancel = await client.request('list_cancel')
  t.strictSame([cancel.action, cancel.response_status, cancel.errors, cancel.data], ['list_cancel', 200, [], null])
})
