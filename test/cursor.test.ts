/**
 * Cursor-paginated `list` (keyset pagination): page shape, walking `next` to the end and
 * `previous` back to the start, pages that stay correct while rows are inserted and
 * deleted between (and during) requests, orderings with ties, filters, the limit cap,
 * and malformed or tampered cursors (400 keyed `cursor`, never a 500) — on a bare app and
 * on the example's `/ws/cursor/`.
 *
 * Every write a test makes between two page requests is awaited (its reply comes after
 * its commit), so the expectations hold on PostgreSQL with a connection pool as well as
 * on the single in-memory SQLite connection.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import type { MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import { createHmac } from 'node:crypto'
import t, { type Test } from 'tap'
import { mixins, type RouteOptions } from '../index.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { dialect } from './helpers/database.js'
import { startApp, startExample } from './helpers/server.js'

const Entry = defineEntity({
  name: 'Entry',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    rank: p.integer(),
    tag: p.string().default('a'),
    secret: p.string().default('hidden')
  })
})
type Entry = InferEntity<typeof Entry>

const EntryCreate = Type.Object({ name: Type.String(), rank: Type.Integer(), tag: Type.Optional(Type.String()) })
const EntryPublic = Type.Object({ id: Type.Integer(), name: Type.String(), rank: Type.Integer(), tag: Type.String() })

const SECRET = 'cursor-test-secret'
const INVALID_CURSOR = [{ cursor: ['Invalid cursor.'] }]

/** A row to seed: name, rank, tag. */
type Seed = [name: string, rank: number, tag?: string]

/** Rows `e01`..`eNN` with rank = their number and tag `a`. */
function plain (count: number): Seed[] {
  return Array.from({ length: count }, (_v, i) => [name(i + 1), i + 1])
}

function name (n: number): string {
  return `e${String(n).padStart(2, '0')}`
}

/** Names `e<from>`..`e<to>`. */
function names (from: number, to: number): string[] {
  const out = []
  for (let n = from; n <= to; n++) out.push(name(n))
  return out
}

/** Insert the rows one flush each, so their ids are 1, 2, 3 … in this order on any database. */
async function seed (orm: MikroORM, rows: Seed[]): Promise<void> {
  const em = orm.em.fork()
  for (const [rowName, rank, tag] of rows) {
    em.create(Entry, { name: rowName, rank, tag: tag ?? 'a', secret: 'hidden' })
    await em.flush()
  }
}

interface Started {
  orm: MikroORM
  /** A connected client on `path`, closed in teardown. */
  open: (path: string) => Promise<TestClient>
}

/**
 * A bare app serving Entry: `/cursor/` (cursorList, default limit 3, max 5, ordering by
 * rank or name, filter by tag and rank) plus `/rw/` (create, delete) to change rows
 * between page requests, and whatever other routes a test adds.
 */
async function start (
  t: Test,
  rows: Seed[],
  extra: Record<string, Omit<RouteOptions<Entry>, 'entity' | 'schema'>> = {}
): Promise<Started> {
  const routes: Record<string, Omit<RouteOptions<Entry>, 'entity' | 'schema'>> = {
    '/cursor/': {
      orderingFields: ['rank', 'name'],
      filterFields: ['tag', 'rank'],
      actions: [mixins.cursorList({ defaultLimit: 3, maxLimit: 5, secret: SECRET })]
    },
    '/rw/': { actions: [mixins.create(), mixins.delete()] },
    ...extra
  }
  const { orm, base } = await startApp(t, [Entry], (app) => {
    for (const [path, options] of Object.entries(routes)) {
      app.wsRest.route(path, { entity: Entry, schema: { create: EntryCreate, response: EntryPublic }, ...options })
    }
  })
  await seed(orm, rows)
  return {
    orm,
    open: async (path) => {
      const client = await connect(`${base}${path}`)
      t.teardown(() => client.close())
      return client
    }
  }
}

/** A list reply that must be a 200 page; anything else throws with the reply, failing the test. */
async function list (client: TestClient, args: Record<string, unknown> = {}): Promise<WireReply> {
  const reply = await client.request('list', args)
  if (reply.response_status !== 200 || reply.action !== 'list' || reply.errors.length !== 0) {
    throw new Error(`expected a 200 list page, got ${JSON.stringify(reply)}`)
  }
  return reply
}

/** The names on a page. */
function namesOf (reply: WireReply): string[] {
  return (reply.data.results as Array<{ name: string }>).map((r) => r.name)
}

/**
 * Follow `direction` from `start` until it is null; the pages' names in the order
 * visited. `args` go with every request (a filter, say). Bounded, so a cursor that
 * loops fails the test instead of hanging it.
 */
async function follow (
  client: TestClient,
  start: WireReply,
  direction: 'next' | 'previous',
  args: Record<string, unknown> = {}
): Promise<{ pages: string[][], last: WireReply }> {
  const pages: string[][] = []
  let reply = start
  for (let i = 0; reply.data[direction] !== null; i++) {
    if (i > 50) throw new Error(`following ${direction} did not end after 50 pages`)
    reply = await list(client, { ...args, cursor: reply.data[direction] })
    pages.push(namesOf(reply))
  }
  return { pages, last: reply }
}

/** Delete rows by id through `/rw/`. */
async function remove (t: Test, rw: TestClient, ...ids: number[]): Promise<void> {
  for (const pk of ids) t.equal((await rw.request('delete', { pk })).response_status, 204, `row ${pk} deleted`)
}

/** Create a row through `/rw/`; its id. */
async function insert (t: Test, rw: TestClient, rowName: string, rank: number, tag = 'a'): Promise<number> {
  const reply = await rw.request('create', { data: { name: rowName, rank, tag } })
  t.equal(reply.response_status, 201, `${rowName} created`)
  return reply.data.id
}

/** Assert a reply is the 400 of a bad cursor, with the request's own id and action. */
function assertInvalid (t: Test, reply: WireReply, requestId: unknown, label: string): void {
  t.strictSame(
    { status: reply.response_status, errors: reply.errors, data: reply.data, action: reply.action, request_id: reply.request_id },
    { status: 400, errors: INVALID_CURSOR, data: null, action: 'list', request_id: requestId },
    label
  )
}

// ---------------------------------------------------------------- page shape and walking

t.test('the first page answers {results, next, previous} with previous null, shaped by the response schema', async (t) => {
  const { open } = await start(t, plain(7))
  const client = await open('/cursor/')

  const first = await client.request('list')
  t.equal(first.response_status, 200)
  t.strictSame(first.errors, [])
  t.equal(first.action, 'list')
  t.strictSame(Object.keys(first.data).sort(), ['next', 'previous', 'results'], 'exactly results, next, previous')
  t.strictSame(first.data.results, [
    { id: 1, name: 'e01', rank: 1, tag: 'a' },
    { id: 2, name: 'e02', rank: 2, tag: 'a' },
    { id: 3, name: 'e03', rank: 3, tag: 'a' }
  ], 'default limit 3, ordered by id, public fields only')
  t.equal(first.data.previous, null, 'no previous page before the first')
  t.type(first.data.next, 'string', 'a next cursor')
  t.notMatch(JSON.stringify(first), /hidden|secret/, 'nothing outside the response schema')

  const explicitNull = await list(client, { cursor: null })
  t.strictSame(namesOf(explicitNull), names(1, 3), 'cursor null is the first page')
  t.equal(explicitNull.data.previous, null)

  const empty = await start(t, [])
  const none = await list(await empty.open('/cursor/'))
  t.strictSame(none.data, { results: [], next: null, previous: null }, 'an empty list: no rows, no cursors')
})

t.test('walking next visits every row once, in order, and the last page\'s next is null; previous walks back', async (t) => {
  const { open } = await start(t, plain(10))
  const client = await open('/cursor/')

  const first = await list(client)
  t.strictSame(namesOf(first), names(1, 3))
  const forward = await follow(client, first, 'next')
  t.strictSame(forward.pages, [names(4, 6), names(7, 9), names(10, 10)], 'pages after the first, in order')
  t.equal(forward.last.data.next, null, 'the last page has no next')
  t.type(forward.last.data.previous, 'string', 'the last page has a previous')
  t.strictSame([namesOf(first), ...forward.pages].flat(), names(1, 10), 'every row exactly once, in order')

  const back = await follow(client, forward.last, 'previous')
  t.strictSame(back.pages, [names(7, 9), names(4, 6), names(1, 3)], 'previous walks back page by page')
  t.equal(back.last.data.previous, null, 'back at the start: no previous')
  t.type(back.last.data.next, 'string')
  t.strictSame([...[...back.pages].reverse().flat(), ...namesOf(forward.last)], names(1, 10),
    'walking back from the end gives the same rows')

  // A page reached going back leads forward again.
  const again = await follow(client, back.last, 'next')
  t.strictSame(again.pages, [names(4, 6), names(7, 9), names(10, 10)], 'next from a page reached going back')
})

t.test('a list that ends exactly on a page boundary: the last full page has next null', async (t) => {
  const { open } = await start(t, plain(9))
  const client = await open('/cursor/')
  const first = await list(client)
  const forward = await follow(client, first, 'next')
  t.strictSame(forward.pages, [names(4, 6), names(7, 9)], 'no empty trailing page')
  t.equal(forward.last.data.next, null)
  const back = await follow(client, forward.last, 'previous')
  t.strictSame(back.pages, [names(4, 6), names(1, 3)])
  t.equal(back.last.data.previous, null)
})

t.test('limit: numbers or numeric strings, capped at maxLimit, bad values give the default; may change between pages', async (t) => {
  const { open } = await start(t, plain(12))
  const client = await open('/cursor/')

  t.strictSame(namesOf(await list(client, { limit: 2 })), names(1, 2))
  t.strictSame(namesOf(await list(client, { limit: '4' })), names(1, 4), 'numeric string')
  t.strictSame(namesOf(await list(client, { limit: 5 })), names(1, 5), 'exactly the maximum')
  for (const limit of [6, 100, '50', 1e12]) {
    t.strictSame(namesOf(await list(client, { limit })), names(1, 5), `limit ${JSON.stringify(limit)} capped at 5`)
  }
  for (const limit of [0, -1, 'abc', 2.5, null, {}]) {
    t.strictSame(namesOf(await list(client, { limit })), names(1, 3), `limit ${JSON.stringify(limit)} → the default 3`)
  }

  // The cap holds on later pages too, and the page size may change from page to page.
  const big = await list(client, { limit: 100 })
  const second = await list(client, { cursor: big.data.next, limit: 100 })
  t.strictSame(namesOf(second), names(6, 10), 'a later page is capped too')
  const third = await list(client, { cursor: second.data.next, limit: 1 })
  t.strictSame(namesOf(third), ['e11'])
  const fourth = await list(client, { cursor: third.data.next })
  t.strictSame(namesOf(fourth), ['e12'])
  t.equal(fourth.data.next, null)
  const back = await list(client, { cursor: fourth.data.previous, limit: 4 })
  t.strictSame(namesOf(back), names(8, 11), 'going back with another limit')
  const backCapped = await list(client, { cursor: back.data.previous, limit: 99 })
  t.strictSame(namesOf(backCapped), names(3, 7), 'going back is capped too')
  t.type(backCapped.data.previous, 'string', 'row 1 is still before it')
})

// ---------------------------------------------------------------- rows changing between requests

t.test('ordered by id: rows deleted and inserted between requests are never skipped or repeated', async (t) => {
  const { open } = await start(t, plain(10))
  const client = await open('/cursor/')
  const rw = await open('/rw/')

  const first = await list(client)
  t.strictSame(namesOf(first), names(1, 3))
  // Delete a row already read, the row at the cursor's position and a row of the next page;
  // insert two rows (new ids, so after everything).
  await remove(t, rw, 2, 3, 5)
  t.equal(await insert(t, rw, 'new1', 100), 11)
  t.equal(await insert(t, rw, 'new2', 0), 12)

  const forward = await follow(client, first, 'next')
  t.strictSame(forward.pages, [['e04', 'e06', 'e07'], ['e08', 'e09', 'e10'], ['new1', 'new2']],
    'the deleted rows are gone, the rest come once each, the inserted ones at the end')
  t.equal(forward.last.data.next, null)

  const back = await follow(client, forward.last, 'previous')
  t.strictSame(back.pages, [['e08', 'e09', 'e10'], ['e04', 'e06', 'e07'], ['e01']], 'walking back sees the same rows')
  t.equal(back.last.data.previous, null)
})

t.test('ordered by another field: rows inserted before and after the position, rows deleted — exactly the right rows', async (t) => {
  // Ranks 10, 20, … 100 (ids 1..10), so new rows can be placed anywhere in the order.
  const rows: Seed[] = Array.from({ length: 10 }, (_v, i) => [`r${(i + 1) * 10}`, (i + 1) * 10])
  const { open } = await start(t, rows)
  const client = await open('/cursor/')
  const rw = await open('/rw/')

  const first = await list(client, { ordering: 'rank' })
  t.strictSame(namesOf(first), ['r10', 'r20', 'r30'])

  // The position is rank 30: delete the row at it, one of the next page and one later on;
  // insert a row before the position, one just after it and one at the very end.
  await remove(t, rw, 3, 5, 9)
  await insert(t, rw, 'r15', 15)
  await insert(t, rw, 'r35', 35)
  await insert(t, rw, 'r99', 99)

  const second = await list(client, { cursor: first.data.next })
  t.strictSame(namesOf(second), ['r35', 'r40', 'r60'], 'the next page starts right after rank 30, with the new row, without the deleted one')
  // More changes between page 2 and page 3: a row before page 3's start (r45) must not appear,
  // a row inside page 3's range (r65) must.
  await insert(t, rw, 'r45', 45)
  await insert(t, rw, 'r65', 65)
  const rest = await follow(client, second, 'next')
  t.strictSame(rest.pages, [['r65', 'r70', 'r80'], ['r99', 'r100']], 'the following pages: no row skipped or repeated')
  t.equal(rest.last.data.next, null)

  // Going back from page 2 now shows what is before rank 35, including the inserted r15.
  const before = await list(client, { cursor: second.data.previous })
  t.strictSame(namesOf(before), ['r10', 'r15', 'r20'], 'previous from page 2: the rows before it as they are now')
  t.equal(before.data.previous, null)

  // And the whole list walked back from the end, after all the changes.
  const back = await follow(client, rest.last, 'previous')
  t.strictSame([...back.pages].reverse().flat(), ['r10', 'r15', 'r20', 'r35', 'r40', 'r45', 'r60', 'r65', 'r70', 'r80'],
    'walking back from the end: every remaining row before the last page once, in order')
})

t.test('rows inserted by another socket while paging (sent concurrently with the page requests) are never skipped or repeated', async (t) => {
  const { orm, open } = await start(t, plain(6))
  const client = await open('/cursor/')
  const writer = await open('/rw/')

  // Each round: the writer sends three creates, and the page request goes out before any of
  // their replies is awaited. The writer's creates run one after another on its socket, so
  // a later one gets a larger id and commits after the earlier ones.
  let created = 0
  const round = async (cursor: string | null): Promise<WireReply> => {
    const ids: string[] = []
    if (created < 12) {
      for (let i = 0; i < 3; i++) {
        created++
        const id = `w${created}`
        ids.push(id)
        writer.send({ action: 'create', request_id: id, data: { name: `new${String(created).padStart(2, '0')}`, rank: created } })
      }
    }
    const page = list(client, cursor === null ? { limit: 2 } : { cursor, limit: 2 })
    const replies = await writer.take(ids.length)
    t.strictSame(replies.map((r) => [r.request_id, r.response_status]), ids.map((id) => [id, 201]), 'the concurrent creates succeeded')
    return await page
  }

  const seen: string[] = []
  let reply = await round(null)
  seen.push(...namesOf(reply))
  for (let i = 0; reply.data.next !== null; i++) {
    if (i > 50) throw new Error('paging did not end')
    reply = await round(reply.data.next)
    seen.push(...namesOf(reply))
  }
  t.equal(created, 12, 'all rounds of inserts ran')

  const all = await orm.em.fork().find(Entry, {}, { orderBy: { id: 'asc' } })
  t.equal(all.length, 18)
  t.strictSame(seen, all.map((e) => e.name), 'every row, pre-existing or inserted while paging, exactly once, in id order')
  t.equal(new Set(seen).size, seen.length, 'no row repeated')
})

t.test('rows inserted before and after the position by another socket while paging in rank order: no repeat, no skip of existing rows', async (t) => {
  // Existing rows at even ranks 2..24; the writer inserts odd ranks on both sides of wherever the reader is.
  const rows: Seed[] = Array.from({ length: 12 }, (_v, i) => [`old${(i + 1) * 2}`, (i + 1) * 2])
  const { orm, open } = await start(t, rows)
  const client = await open('/cursor/')
  const writer = await open('/rw/')

  const oddRanks = [23, 1, 13, 7, 19, 3, 21, 11, 5, 17, 9, 15]
  let k = 0
  const seen: Array<{ name: string, rank: number, id: number }> = []
  let cursor: string | null = null
  for (let i = 0; ; i++) {
    if (i > 50) throw new Error('paging did not end')
    const ids: string[] = []
    for (let j = 0; j < 2 && k < oddRanks.length; j++, k++) {
      ids.push(`w${k}`)
      writer.send({ action: 'create', request_id: `w${k}`, data: { name: `new${oddRanks[k]}`, rank: oddRanks[k] } })
    }
    const page = list(client, cursor === null ? { ordering: 'rank', limit: 2 } : { cursor, limit: 2 })
    t.strictSame((await writer.take(ids.length)).map((r) => r.response_status), ids.map(() => 201))
    const reply = await page
    seen.push(...reply.data.results)
    cursor = reply.data.next
    if (cursor === null) break
  }

  const ranks = seen.map((r) => r.rank)
  t.strictSame(ranks, [...ranks].sort((a, b) => a - b), 'rows come in rank order')
  t.equal(new Set(seen.map((r) => r.id)).size, seen.length, 'no row repeated')
  const seenNames = new Set(seen.map((r) => r.name))
  t.strictSame(rows.map(([n]) => n).filter((n) => !seenNames.has(n)), [], 'every pre-existing row was seen')
  const inDb = new Set((await orm.em.fork().find(Entry, {})).map((e) => e.name))
  t.strictSame([...seenNames].filter((n) => !inDb.has(n)), [], 'nothing seen that is not a row')
  t.equal(inDb.size, 24, 'all the inserts happened')
})

t.test('a page whose rows were all deleted is empty, and its previous cursor leads back', async (t) => {
  const { open } = await start(t, plain(9))
  const client = await open('/cursor/')
  const rw = await open('/rw/')

  const first = await list(client)
  const second = await list(client, { cursor: first.data.next })
  t.strictSame(namesOf(second), names(4, 6))
  await remove(t, rw, 7, 8, 9)

  const empty = await list(client, { cursor: second.data.next })
  t.strictSame(empty.data.results, [], 'the page after row 6 is now empty')
  t.equal(empty.data.next, null, 'nothing after it')
  t.type(empty.data.previous, 'string', 'but a previous cursor')
  const back = await list(client, { cursor: empty.data.previous })
  t.strictSame(namesOf(back), names(4, 6), 'previous from the empty page is the page before it')
  const start2 = await list(client, { cursor: back.data.previous })
  t.strictSame(namesOf(start2), names(1, 3))
  t.equal(start2.data.previous, null)

  // Also when the row at the position itself is gone.
  await remove(t, rw, 6)
  const emptyAgain = await list(client, { cursor: second.data.next })
  t.strictSame(emptyAgain.data.results, [])
  t.strictSame(namesOf(await list(client, { cursor: emptyAgain.data.previous })), names(3, 5),
    'previous leads to the last rows before the position')
})

t.test('an empty page going back (its rows deleted) gives a next cursor leading forward', async (t) => {
  const { open } = await start(t, plain(9))
  const client = await open('/cursor/')
  const rw = await open('/rw/')

  const first = await list(client)
  const end = await follow(client, first, 'next')
  t.strictSame(namesOf(end.last), names(7, 9))
  await remove(t, rw, 1, 2, 3, 4, 5, 6)

  const empty = await list(client, { cursor: end.last.data.previous })
  t.strictSame(empty.data.results, [], 'nothing before row 7 any more')
  t.equal(empty.data.previous, null)
  t.type(empty.data.next, 'string')
  const forward = await list(client, { cursor: empty.data.next })
  t.strictSame(namesOf(forward), names(7, 9), 'next from the empty page leads to the rows after it')
  t.type(forward.data.previous, 'string')
  const nothing = await list(client, { cursor: forward.data.previous })
  t.strictSame(nothing.data.results, [], 'and from there, previous finds nothing before')
  t.equal(nothing.data.previous, null)
})

// ---------------------------------------------------------------- ordering, filtering

// ids 1..10 with ranks: ties everywhere.
const TIED: Seed[] = [[name(1), 2], [name(2), 1], [name(3), 2], [name(4), 1], [name(5), 3],
  [name(6), 2], [name(7), 1], [name(8), 3], [name(9), 2], [name(10), 1]]

t.test('ordering by a non-unique field: ties broken by id, no skip or repeat; the cursor keeps its ordering', async (t) => {
  const { open } = await start(t, TIED)
  const client = await open('/cursor/')

  const first = await list(client, { ordering: 'rank' })
  t.strictSame(namesOf(first), ['e02', 'e04', 'e07'], 'rank 1 rows by id')
  const forward = await follow(client, first, 'next')
  t.strictSame(forward.pages, [['e10', 'e01', 'e03'], ['e06', 'e09', 'e05'], ['e08']],
    'later pages keep the rank ordering without it being sent again; ties split across pages are not skipped or repeated')
  t.equal(forward.last.data.next, null)
  const back = await follow(client, forward.last, 'previous')
  t.strictSame(back.pages, [['e06', 'e09', 'e05'], ['e10', 'e01', 'e03'], ['e02', 'e04', 'e07']], 'walking back in the same ordering')

  // The cursor's ordering wins over an ordering sent with it.
  const second = await list(client, { cursor: first.data.next, ordering: '-id' })
  t.strictSame(namesOf(second), ['e10', 'e01', 'e03'], 'an ordering sent with a cursor does not change the cursor\'s')
})

t.test('descending ordering with ties: ties still broken by id ascending, walked both ways', async (t) => {
  const { open } = await start(t, TIED)
  const client = await open('/cursor/')

  const first = await list(client, { ordering: '-rank' })
  t.strictSame(namesOf(first), ['e05', 'e08', 'e01'])
  const forward = await follow(client, first, 'next')
  t.strictSame(forward.pages, [['e03', 'e06', 'e09'], ['e02', 'e04', 'e07'], ['e10']])
  t.equal(forward.last.data.next, null)
  const back = await follow(client, forward.last, 'previous')
  t.strictSame(back.pages, [['e02', 'e04', 'e07'], ['e03', 'e06', 'e09'], ['e05', 'e08', 'e01']], 'walking back from the end')
  t.equal(back.last.data.previous, null)
})

t.test('several ordering fields, mixed directions, and a tie at the page boundary changed between requests', async (t) => {
  const { open } = await start(t, TIED)
  const client = await open('/cursor/')
  const rw = await open('/rw/')

  const first = await list(client, { ordering: ['-rank', '-name'] })
  t.strictSame(namesOf(first), ['e08', 'e05', 'e09'], 'rank desc, then name desc')
  // The position is (rank 2, name e09). Insert rank-2 rows on both sides of it by name, delete the next row.
  await insert(t, rw, 'e091', 2) // after e09 in name desc? 'e091' > 'e09', so it sorts before e09: not on later pages
  await insert(t, rw, 'e061', 2) // 'e061' < 'e09' and > 'e06': right after e09 in this order
  await remove(t, rw, 6)
  const rest = await follow(client, first, 'next')
  t.strictSame(rest.pages, [['e061', 'e03', 'e01'], ['e10', 'e07', 'e04'], ['e02']],
    'the row inserted after the position appears, the one before does not, the deleted one is gone')
})

t.test('filter applies on every page, forward and back', async (t) => {
  const rows: Seed[] = Array.from({ length: 14 }, (_v, i) => [name(i + 1), i + 1, i % 2 === 0 ? 'odd' : 'even'])
  const { open } = await start(t, rows)
  const client = await open('/cursor/')

  const filter = { tag: 'odd' }
  const first = await list(client, { filter })
  t.strictSame(namesOf(first), ['e01', 'e03', 'e05'])
  const forward = await follow(client, first, 'next', { filter })
  t.strictSame(forward.pages, [['e07', 'e09', 'e11'], ['e13']])
  t.equal(forward.last.data.next, null, 'the filtered list ends at its last matching row')
  const back = await follow(client, forward.last, 'previous', { filter })
  t.strictSame(back.pages, [['e07', 'e09', 'e11'], ['e01', 'e03', 'e05']])

  // Operators, with an ordering, over pages.
  const ranged = { tag: 'even', rank: { $gte: 4, $lt: 14 } }
  const r1 = await list(client, { filter: ranged, ordering: '-rank', limit: 2 })
  t.strictSame(namesOf(r1), ['e12', 'e10'])
  const rRest = await follow(client, r1, 'next', { filter: ranged, limit: 2 })
  t.strictSame(rRest.pages, [['e08', 'e06'], ['e04']])

  // A bad filter is still a 400 keyed filter when a cursor comes with it.
  const bad = await client.request('list', { cursor: first.data.next, filter: { secret: 'hidden' } })
  t.strictSame([bad.response_status, bad.errors], [400, [{ filter: ['Unknown field "secret".'] }]])
})

// ---------------------------------------------------------------- malformed cursors

/** A cursor with the character at `index` replaced by a different base64url character. */
function flip (cursor: string, index: number): string {
  const c = cursor[index]
  const replacement = c === 'A' ? 'B' : 'A'
  return cursor.slice(0, index) + replacement + cursor.slice(index + 1)
}

t.test('a malformed or tampered cursor → 400 keyed cursor, never 500, and the socket keeps working', async (t) => {
  const { open } = await start(t, plain(9), {
    '/other-secret/': { actions: [mixins.cursorList({ defaultLimit: 3, secret: 'another-secret' })] },
    '/same-secret/': { actions: [mixins.cursorList({ defaultLimit: 3, secret: SECRET })] },
    '/by-tag/': { orderingFields: ['tag'], actions: [mixins.cursorList({ defaultLimit: 3, secret: SECRET })] }
  })
  const client = await open('/cursor/')

  const valid = (await list(client)).data.next as string
  t.match(valid, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'a cursor is payload.signature in base64url')
  const [payload, signature] = valid.split('.')
  const other = (await list(await open('/other-secret/'))).data.next as string
  const same = (await list(await open('/same-secret/'))).data.next as string
  const byTag = (await list(await open('/by-tag/'), { ordering: 'tag' })).data.next as string

  // Controls: the valid cursor works here, and so does one made by another route with the same secret.
  t.strictSame(namesOf(await list(client, { cursor: valid })), names(4, 6), 'the untouched cursor works')
  t.strictSame(namesOf(await list(client, { cursor: same })), names(4, 6), 'a cursor signed with this secret by another route works')
  t.strictSame(namesOf(await list(await open('/by-tag/'), { cursor: byTag })), names(4, 6), 'the tag-ordered cursor works on its own route')

  const bad: Array<[string, unknown]> = [
    ['garbage', 'garbage'],
    ['empty string', ''],
    ['a dot only', '.'],
    ['three parts', `${valid}.x`],
    ['payload only', payload],
    ['payload and a dot', `${payload}.`],
    ['signature only', `.${signature}`],
    ['truncated by one character', valid.slice(0, -1)],
    ['truncated to half', valid.slice(0, Math.floor(valid.length / 2))],
    ['truncated payload', `${payload.slice(0, -2)}.${signature}`],
    ['a payload character flipped', `${flip(payload, 3)}.${signature}`],
    ['the last payload character flipped', `${flip(payload, payload.length - 1)}.${signature}`],
    ['a signature character flipped', `${payload}.${flip(signature, 0)}`],
    ['a middle signature character flipped', `${payload}.${flip(signature, 10)}`],
    ['the signature of another payload', `${byTag.split('.')[0]}.${signature}`],
    ['signed with another secret', other],
    ['signed with this secret but for an ordering this route does not allow', byTag],
    ['not base64', '!!!!.????'],
    ['very long', 'A'.repeat(5000) + '.' + signature],
    ['the number 5', 5],
    ['an object', {}],
    ['an operator object', { $gt: 0 }],
    ['an array', [valid]],
    ['true', true],
    ['a number zero', 0]
  ]
  for (const [label, cursor] of bad) {
    const id = `bad-${label}`
    client.send({ action: 'list', request_id: id, cursor })
    assertInvalid(t, await client.next(), id, label)
  }
  // Still working after all that.
  t.strictSame(namesOf(await list(client, { cursor: valid })), names(4, 6), 'the socket keeps working')
})

/** A cursor signed with `secret` over any payload, in the codec's format, to try what the server never issues. */
function forge (value: unknown, secret = SECRET): string {
  return forgeText(JSON.stringify(value), secret)
}

function forgeText (text: string, secret = SECRET): string {
  const payload = Buffer.from(text).toString('base64url')
  const signature = createHmac('sha256', secret).update(payload).digest().subarray(0, 16).toString('base64url')
  return `${payload}.${signature}`
}

t.test('a correctly signed cursor with contents this route would never issue → 400 keyed cursor', async (t) => {
  const { open } = await start(t, plain(9))
  const client = await open('/cursor/')

  // The forging matches the server's format: this one is a real "after id 3" cursor.
  t.strictSame(namesOf(await list(client, { cursor: forge([['id'], [3], 0, 0]) })), names(4, 6), 'control: a well-formed forged cursor works')

  const cases: Array<[string, unknown]> = [
    ['not JSON', forgeText('not json')],
    ['truncated JSON', forgeText('[["id"],[3],0')],
    ['a JSON string', forge('a string')],
    ['JSON null', forge(null)],
    ['an object', { order: ['id'] }],
    ['wrong length', [['id'], [3], 0]],
    ['empty ordering', [[], [], 0, 0]],
    ['values and ordering of different lengths', [['rank', 'id'], [3], 0, 0]],
    ['a field the route cannot order by', [['secret', 'id'], ['x', 3], 0, 0]],
    ['an unknown field', [['nope', 'id'], [1, 3], 0, 0]],
    ['an ordering not ending with the primary key', [['rank'], [3], 0, 0]],
    ['an operator object as a value', [['id'], [{ $gt: 0 }], 0, 0]],
    ['an array as a value', [['id'], [[1, 2]], 0, 0]],
    ['a non-string ordering entry', [[1], [3], 0, 0]]
  ]
  const bad = cases.map(([label, value]) => [label, typeof value === 'string' ? value : forge(value)] as const)
  for (const [label, cursor] of bad) {
    const id = `forged-${label}`
    client.send({ action: 'list', request_id: id, cursor })
    assertInvalid(t, await client.next(), id, label)
  }

  // Values of the wrong type for their field: on SQLite the query runs (type affinity) and
  // answers a page, on PostgreSQL the driver rejects the parameter and the reply is a 500.
  for (const [label, value] of [['a string for the integer id', [['id'], ['abc'], 0, 0]], ['a boolean for the integer id', [['id'], [true], 0, 0]]] as const) {
    const id = `forged-${label}`
    client.send({ action: 'list', request_id: id, cursor: forge(value) })
    const reply = await client.next()
    t.strictSame([reply.response_status, reply.errors], [400, INVALID_CURSOR], label)
  }
  t.strictSame(namesOf(await list(client)), names(1, 3), 'the socket keeps working')
})

// ---------------------------------------------------------------- date and nullable ordering fields

const Stamp = defineEntity({
  name: 'Stamp',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    // Millisecond precision on every database (PostgreSQL's default keeps microseconds).
    at: p.datetime().length(3),
    // The database's default precision: microseconds on PostgreSQL, milliseconds on SQLite.
    fine: p.datetime(),
    score: p.integer().nullable()
  })
})
const StampPublic = Type.Object({ id: Type.Integer() })

/** A bare app with `/stamps/` (cursorList, limit 2, orderable by at and score) after `fill` ran; a client on it and the ORM. */
async function startStamps (t: Test, fill: (orm: MikroORM) => Promise<void>): Promise<{ client: TestClient, orm: MikroORM }> {
  const { orm, base } = await startApp(t, [Stamp], (app) => {
    app.wsRest.route('/stamps/', {
      entity: Stamp,
      schema: { response: StampPublic },
      orderingFields: ['at', 'fine', 'score'],
      actions: [mixins.cursorList({ defaultLimit: 2, secret: SECRET })]
    })
  })
  await fill(orm)
  const client = await connect(`${base}/stamps/`)
  t.teardown(() => client.close())
  return { client, orm }
}

/** Insert stamps one flush each (ids 1, 2, … in order). */
async function stamps (orm: MikroORM, rows: Array<{ at: Date, score?: number | null }>): Promise<void> {
  const em = orm.em.fork()
  for (const r of rows) {
    em.create(Stamp, { at: r.at, fine: r.at, score: r.score ?? null })
    await em.flush()
  }
}

/**
 * The ids seen following `next` from the first page (or `previous` back from the last), at
 * most 12 pages: a cursor that loops shows up as repeated ids instead of a hung test.
 */
async function walkIds (client: TestClient, ordering: string, direction: 'next' | 'previous' = 'next'): Promise<number[]> {
  const ids = (reply: WireReply): number[] => (reply.data.results as Array<{ id: number }>).map((r) => r.id)
  let reply = await list(client, { ordering })
  if (direction === 'previous') {
    for (let i = 0; reply.data.next !== null && i < 12; i++) reply = await list(client, { cursor: reply.data.next })
  }
  const seen = ids(reply)
  for (let i = 0; reply.data[direction] !== null && i < 12; i++) {
    reply = await list(client, { cursor: reply.data[direction] })
    if (direction === 'next') seen.push(...ids(reply))
    else seen.unshift(...ids(reply))
  }
  return seen
}

t.test('ordering by a date field with ties: every row once, in order, both ways', async (t) => {
  const base = Date.UTC(2024, 0, 1)
  const { client } = await startStamps(t, async (orm) => {
    await stamps(orm, [3, 1, 3, 2, 1, 3].map((ms) => ({ at: new Date(base + ms) })))
  })
  t.strictSame(await walkIds(client, 'at'), [2, 5, 4, 1, 3, 6], 'ascending, ties by id')
  t.strictSame(await walkIds(client, '-at'), [1, 3, 6, 4, 2, 5], 'descending, ties by id')
  t.strictSame(await walkIds(client, 'at', 'previous'), [2, 5, 4, 1, 3, 6], 'walked back from the end')

  const forged = forge([['at', 'id'], ['not a date', 1], 0, 0])
  const reply = await client.request('list', { cursor: forged })
  t.strictSame([reply.response_status, reply.errors], [400, INVALID_CURSOR], 'a signed cursor with an invalid date')
  t.strictSame(await walkIds(client, 'at'), [2, 5, 4, 1, 3, 6], 'the socket keeps working')
})

t.test('ordering a cursor list by a nullable field is refused: keyset comparisons never match NULL', async (t) => {
  const { client } = await startStamps(t, async (orm) => {
    await stamps(orm, [null, 1, null, 2, null, 3].map((score) => ({ at: new Date(0), score })))
  })
  for (const ordering of ['score', '-score', ['score', 'id']]) {
    const reply = await client.request('list', { ordering })
    t.strictSame([reply.response_status, reply.errors], [400, [{ ordering: ['Cannot page by cursor on "score": it may be null.'] }]],
      `ordering ${JSON.stringify(ordering)}`)
  }
  t.equal((await client.request('list', { ordering: 'at' })).response_status, 200, 'a non-nullable field still pages')
})

t.test('a timestamp column finer than a millisecond is refused as a cursor key; a millisecond one pages', async (t) => {
  // A position read into a JS Date (milliseconds) from a PostgreSQL timestamptz (microseconds)
  // falls before its own row: going forward the same rows came back forever. Rows written by
  // something other than a JS Date (a column default, SQL, another service) carry microseconds.
  const { client } = await startStamps(t, async (orm) => {
    if (dialect === 'postgresql') {
      const connection = orm.em.fork().getConnection()
      for (let i = 1; i <= 6; i++) {
        const at = `timestamptz '2024-01-01 00:00:00.0000${i}0+00'` // 10 µs apart, all within the first millisecond
        await connection.execute(`insert into stamp (at, fine) values (${at}, ${at})`)
      }
    } else {
      await stamps(orm, [1, 2, 3, 4, 5, 6].map((ms) => ({ at: new Date(Date.UTC(2024, 0, 1) + ms) })))
    }
  })
  if (dialect === 'postgresql') {
    const refused = [400, [{ ordering: ['Cannot page by cursor on "fine": the database keeps it finer than a millisecond; declare it with millisecond precision (length 3).'] }]]
    for (const ordering of ['fine', '-fine', ['fine', 'id']]) {
      const reply = await client.request('list', { ordering })
      t.strictSame([reply.response_status, reply.errors], refused, `ordering ${JSON.stringify(ordering)}`)
    }
    // A cursor made before the rule (signed, so it reached the database as it was) is refused too.
    const reply = await client.request('list', { cursor: forge([['fine', 'id'], ['2024-01-01T00:00:00.000Z', 1], 0, 0]) })
    t.strictSame([reply.response_status, reply.errors], refused, 'a signed cursor ordered by it')
  } else {
    // SQLite keeps a Date to the millisecond: nothing is lost, the field pages.
    t.strictSame(await walkIds(client, 'fine'), [1, 2, 3, 4, 5, 6], 'SQLite: ascending by the default-precision column')
    t.strictSame(await walkIds(client, '-fine'), [6, 5, 4, 3, 2, 1], 'SQLite: descending')
  }
  // The millisecond column holds what it was given rounded to the millisecond (the same
  // instant on PostgreSQL: ties, broken by id): every row once, and the walk ends.
  t.strictSame(await walkIds(client, 'at'), [1, 2, 3, 4, 5, 6], 'ascending by the millisecond column')
  t.strictSame(await walkIds(client, '-at'), dialect === 'postgresql' ? [1, 2, 3, 4, 5, 6] : [6, 5, 4, 3, 2, 1], 'descending')
  t.strictSame(await walkIds(client, 'at', 'previous'), [1, 2, 3, 4, 5, 6], 'walked back from the end')
})

// ---------------------------------------------------------------- the example server

/** Create users `user1`..`userN` through the example's `/ws/`; their public shapes. */
async function createUsers (client: TestClient, t: Test, from: number, to: number): Promise<Array<{ id: number, username: string, email: string }>> {
  const users = []
  for (let i = from; i <= to; i++) {
    const reply = await client.request('create', { data: { username: `user${i}`, password1: 'pw-123456', password2: 'pw-123456' } })
    t.equal(reply.response_status, 201, `user${i} created`)
    users.push(reply.data)
  }
  return users
}

t.test('example /ws/cursor/: pages of two users by id, walked both ways, while users come and go', async (t) => {
  const { base } = await startExample(t)
  const ws = await connect(`${base}/ws/`)
  t.teardown(() => ws.close())
  const users = await createUsers(ws, t, 1, 5)
  t.strictSame(users[0], { id: 1, username: 'user1', email: '' })
  const client = await connect(`${base}/ws/cursor/`)
  t.teardown(() => client.close())

  const first = await list(client)
  t.strictSame(first.data.results, users.slice(0, 2), 'default limit 2, ordered by id, public shape')
  t.equal(first.data.previous, null)
  t.notMatch(JSON.stringify(first), /password|pw-123456|scrypt/, 'no password in any page')
  const second = await list(client, { cursor: first.data.next })
  t.strictSame(second.data.results, users.slice(2, 4))
  t.type(second.data.previous, 'string')
  const third = await list(client, { cursor: second.data.next })
  t.strictSame(third.data.results, users.slice(4))
  t.equal(third.data.next, null, 'the last page has no next')
  const usernames = (reply: WireReply): string[] => (reply.data.results as Array<{ username: string }>).map((u) => u.username)

  // Walk again while users come and go: delete one of the next page, add two.
  const again = await list(client)
  t.strictSame(usernames(again), ['user1', 'user2'])
  t.equal((await ws.request('delete', { pk: 3 })).response_status, 204)
  await createUsers(ws, t, 6, 7)
  const seen = [...usernames(again)]
  let reply = again
  for (let i = 0; reply.data.next !== null; i++) {
    if (i > 20) throw new Error('paging did not end')
    reply = await list(client, { cursor: reply.data.next })
    seen.push(...usernames(reply))
  }
  t.strictSame(seen, ['user1', 'user2', 'user4', 'user5', 'user6', 'user7'], 'every user once, in order, the deleted one gone')
  const back: string[][] = []
  while (reply.data.previous !== null) {
    if (back.length > 20) throw new Error('paging back did not end')
    reply = await list(client, { cursor: reply.data.previous })
    back.unshift(usernames(reply))
  }
  t.strictSame(back, [['user1', 'user2'], ['user4', 'user5']], 'walking back from the end')

  // A bad cursor on the example: 400 keyed cursor, and the socket keeps working.
  for (const cursor of ['garbage', 5, {}, flip(first.data.next, 0)]) {
    client.send({ action: 'list', request_id: 'bad', cursor })
    assertInvalid(t, await client.next(), 'bad', `example: cursor ${JSON.stringify(cursor)}`)
  }
  t.strictSame(usernames(await list(client, { limit: 3 })), ['user1', 'user2', 'user4'], 'the socket keeps working; limit honoured')
})
