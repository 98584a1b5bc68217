/**
 * Coalesced reads: retrieves and identical lists of many sockets arriving together share
 * one query — and every socket still gets exactly its own answer, a 404 where it should,
 * and, having written, reads its own write. Where connections have scopes (getQueryset),
 * only reads of the same scope share a query, and only when the scope is plain data.
 * Real sockets, a spy on the ORM's query log.
 */
import { raw } from '@mikro-orm/core'
import t, { type Test } from 'tap'
import { mixins, type Permission } from '../index.js'
import { Batcher } from '../lib/batching.js'
import { deferred, within } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { spyQueries } from './helpers/database.js'
import { Item, itemModel, seedItems } from './helpers/item.js'
import { startApp, type Running } from './helpers/server.js'

const SOCKETS = 40

/** `?max=N` on the upgrade URL: the connection sees rows with id <= N, as a plain condition or through a raw() fragment. */
const scopes = {
  plain: (max: number) => ({ id: { $lte: max } }),
  raw: (max: number) => ({ [raw('abs(id)')]: { $lte: max } })
}

async function startItems (t: Test, scope?: keyof typeof scopes): Promise<Running> {
  return await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      ...(scope !== undefined ? { getQueryset: (ctx) => scopes[scope](Number((ctx.request.query as { max?: string }).max)) } : {}),
      actions: [mixins.retrieve(), mixins.patch(), mixins.paginatedList({ defaultLimit: 5 })]
    })
  })
}

/** Send one frame on each socket at once, then collect each socket's reply. */
async function together (clients: TestClient[], frame: (i: number) => Record<string, unknown>): Promise<WireReply[]> {
  clients.forEach((c, i) => c.send({ request_id: i, ...frame(i) }))
  return await Promise.all(clients.map(async (c) => await c.next()))
}

const selects = (sql: string[]): number => sql.filter((q) => /^select/i.test(q)).length

t.test('retrieves of many sockets at once: each gets its own row (or its 404), through far fewer queries', async (t) => {
  const { orm, base } = await startItems(t)
  const ids = await seedItems(orm, ...Array.from({ length: SOCKETS }, (_, i) => `item-${i}`))
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async () => await openClient(t, `${base}/items/`)))
  const sql = spyQueries(orm)
  // Every fifth socket asks for a row that does not exist.
  const wanted = ids.map((id, i) => i % 5 === 4 ? 100_000 + i : id)
  const replies = await together(clients, (i) => ({ action: 'retrieve', pk: wanted[i] }))
  replies.forEach((reply, i) => {
    t.equal(reply.request_id, i)
    if (i % 5 === 4) t.strictSame([reply.response_status, reply.errors], [404, ['Not found']], `socket ${i}: 404`)
    else t.strictSame([reply.response_status, reply.data], [200, { id: ids[i], name: `item-${i}` }], `socket ${i}: its own row`)
  })
  t.ok(selects(sql) <= SOCKETS / 2, `${SOCKETS} retrieves ran ${selects(sql)} selects`)
})

t.test('with object permissions (hasObjectPermission) retrieves still share queries; each socket gets its own 200, 403 or 404', async (t) => {
  const noSecrets: Permission = { hasObjectPermission: (_ctx, _action, object) => !String(object.name).startsWith('secret') }
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, permissions: [noSecrets], actions: [mixins.retrieve()] })
  })
  const names = Array.from({ length: SOCKETS }, (_, i) => i % 5 === 1 ? `secret-${i}` : `item-${i}`)
  const ids = await seedItems(orm, ...names)
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async () => await openClient(t, `${base}/items/`)))
  const sql = spyQueries(orm)
  const wanted = ids.map((id, i) => i % 5 === 4 ? 100_000 + i : id)
  const replies = await together(clients, (i) => ({ action: 'retrieve', pk: wanted[i] }))
  replies.forEach((reply, i) => {
    if (i % 5 === 4) t.strictSame([reply.response_status, reply.errors], [404, ['Not found']], `socket ${i}: 404`)
    else if (i % 5 === 1) t.strictSame([reply.response_status, reply.errors, reply.data], [403, ['You do not have permission to perform this action.'], null], `socket ${i}: 403`)
    else t.strictSame([reply.response_status, reply.data], [200, { id: ids[i], name: names[i] }], `socket ${i}: its own row`)
  })
  t.ok(selects(sql) <= SOCKETS / 2, `${SOCKETS} retrieves with object permissions ran ${selects(sql)} selects`)
})

t.test('a socket that writes and then reads sees its write, while its neighbours keep reading the row', async (t) => {
  const { orm, base } = await startItems(t)
  const [id] = await seedItems(orm, 'v0')
  const writer = await openClient(t, `${base}/items/`)
  const readers = await Promise.all(Array.from({ length: 20 }, async () => await openClient(t, `${base}/items/`)))
  for (let round = 1; round <= 20; round++) {
    readers.forEach((r, i) => r.send({ action: 'retrieve', request_id: i, pk: id }))
    writer.send({ action: 'patch', request_id: 'w', pk: id, data: { name: `v${round}` } })
    writer.send({ action: 'retrieve', request_id: 'r', pk: id })
    const [patched, read] = await writer.take(2)
    t.equal(patched.data.name, `v${round}`)
    t.equal(read.data.name, `v${round}`, `round ${round}: the writer's read saw its write`)
    for (const reply of await Promise.all(readers.map(async (r) => await r.next()))) {
      if (!/^v\d+$/.test(reply.data.name as string)) t.fail(`a reader got ${JSON.stringify(reply)}`)
    }
  }
})

t.test('identical lists of many sockets share one query; different pages get their own', async (t) => {
  const { orm, base } = await startItems(t)
  await seedItems(orm, ...Array.from({ length: 12 }, (_, i) => `n${i}`))
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async () => await openClient(t, `${base}/items/`)))
  const sql = spyQueries(orm)
  const replies = await together(clients, (i) => ({ action: 'list', offset: i % 2 === 0 ? 0 : 5 }))
  replies.forEach((reply, i) => {
    const first = i % 2 === 0 ? 0 : 5
    t.strictSame(reply.data, {
      count: 12, limit: 5, offset: first,
      results: Array.from({ length: 5 }, (_, k) => ({ id: first + k + 1, name: `n${first + k}` }))
    }, `socket ${i}: its page`)
  })
  t.ok(selects(sql) <= SOCKETS / 2, `${SOCKETS} lists (two pages) ran ${selects(sql)} selects`)
})

t.test('per-connection scopes: reads of sockets with the same scope share queries, each socket sees exactly its own scope', async (t) => {
  const { orm, base } = await startItems(t, 'plain')
  await seedItems(orm, ...Array.from({ length: 10 }, (_, i) => `n${i}`))
  // 20 sockets, 4 scopes: id <= 2, 3, 4 or 5.
  const maxOf = (i: number): number => i % 4 + 2
  const clients = await Promise.all(Array.from({ length: 20 }, async (_, i) => await openClient(t, `${base}/items/?max=${maxOf(i)}`)))
  const sql = spyQueries(orm)
  const lists = await together(clients, () => ({ action: 'list', limit: 100 }))
  lists.forEach((reply, i) => t.strictSame(reply.data.results.map((r: { id: number }) => r.id), Array.from({ length: maxOf(i) }, (_, k) => k + 1), `max=${maxOf(i)}: its own rows`))
  t.ok(selects(sql) <= 4, `20 lists of 4 scopes ran ${selects(sql)} selects`)
  sql.length = 0
  const retrieves = await together(clients, () => ({ action: 'retrieve', pk: 4 }))
  retrieves.forEach((reply, i) => t.equal(reply.response_status, maxOf(i) >= 4 ? 200 : 404, `max=${maxOf(i)}: row 4 is ${maxOf(i) >= 4 ? 'visible' : 'not found'}`))
  t.ok(selects(sql) <= 4, `20 retrieves of 4 scopes ran ${selects(sql)} selects`)
})

t.test('a scope that is not plain data (a raw() fragment) reads alone, and each socket still sees its own scope', async (t) => {
  const { orm, base } = await startItems(t, 'raw')
  await seedItems(orm, ...Array.from({ length: 10 }, (_, i) => `n${i}`))
  const clients = await Promise.all(Array.from({ length: 10 }, async (_, i) => await openClient(t, `${base}/items/?max=${i + 1}`)))
  const sql = spyQueries(orm)
  const lists = await together(clients, () => ({ action: 'list', limit: 100 }))
  lists.forEach((reply, i) => t.equal(reply.data.count, i + 1, `socket with max=${i + 1} counts ${i + 1}`))
  const retrieves = await together(clients, () => ({ action: 'retrieve', pk: 5 }))
  retrieves.forEach((reply, i) => t.equal(reply.response_status, i + 1 >= 5 ? 200 : 404, `max=${i + 1}: row 5 is ${i + 1 >= 5 ? 'visible' : 'not found'}`))
  t.ok(sql.filter((q) => /^select/i.test(q) && /abs/.test(q)).length >= 20, 'each read ran its own query')
})

t.test('distinct lists of one batch: each answered as soon as its own query is, the next batch only after the whole batch', async (t) => {
  // At the Batcher itself: on SQLite the single connection runs queries one by one anyway,
  // so a slow query cannot be made to overlap a quick one through the database.
  const slow = deferred<string>()
  const batches: string[][] = []
  const batcher = new Batcher<string, string>((jobs) => {
    batches.push(jobs)
    return jobs.map(async (job) => job === 'slow' ? await slow.promise : `${job}!`)
  })
  const first = batcher.submit('slow')
  const quick = batcher.submit('quick')
  t.equal(await within(quick, 'the quick answer while the slow one runs'), 'quick!')
  const later = batcher.submit('later')
  t.strictSame(batches, [['slow', 'quick']], 'a job that comes meanwhile waits: it must not read older data than a write before it')
  slow.resolve('slow!')
  t.equal(await within(first, 'the slow answer'), 'slow!')
  t.equal(await within(later, 'the next batch'), 'later!')
  t.strictSame(batches, [['slow', 'quick'], ['later']])
})
