/**
 * Filtering, ordering and search of lists (docs/protocol.md → "Filtering, ordering, search
 * (beyond DCRF)"): every operator on integer, string, boolean, nullable and date fields,
 * ordering with the primary-key tie-break, search over several fields, the exact 400s,
 * injection attempts that must never reach the database, composition with getQueryset,
 * and plain, paginated and streamed lists alike — on a bare app and on the example server.
 */
import { defineEntity, RawQueryFragment, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type ActionContext, type RouteOptions } from '../index.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { spyQueries } from './helpers/database.js'
import { startApp, startExample } from './helpers/server.js'

const Thing = defineEntity({
  name: 'Thing',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    // Indexed, so SQLite may return equal ranks in index order (descending ids for "-rank") unless tie-broken.
    rank: p.integer().index(),
    active: p.boolean(),
    nick: p.string().nullable(),
    seenAt: p.datetime(),
    team: p.string(),
    secret: p.string().default('classified')
  })
})
type Thing = InferEntity<typeof Thing>

const ThingPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

/**
 * The rows, ids 1..9 in this order. Names mix case, and two hold `%` / `_`, so that a
 * LIKE-based `$contains` would match more than it should ("0%" would match row 5 too,
 * "x_y" row 9, "_" every row).
 */
const ROWS = [
  { name: 'Alpha', rank: 10, active: true, nick: 'al', seenAt: '2024-01-01T00:00:00.000Z', team: 'red' },
  { name: 'bravo', rank: 20, active: false, nick: null, seenAt: '2024-02-01T00:00:00.000Z', team: 'blue' },
  { name: 'Charlie', rank: 20, active: true, nick: 'chuck', seenAt: '2024-03-01T00:00:00.000Z', team: 'red' },
  { name: '100%_sure', rank: 5, active: false, nick: 'pct', seenAt: '2024-04-01T00:00:00.000Z', team: 'blue' },
  { name: '100 percent', rank: 30, active: true, nick: null, seenAt: '2024-05-01T00:00:00.000Z', team: 'red' },
  { name: 'delta', rank: 10, active: false, nick: 'DD', seenAt: '2024-06-01T00:00:00.000Z', team: 'blue' },
  { name: 'ALPHA two', rank: 20, active: true, nick: null, seenAt: '2024-07-01T00:00:00.000Z', team: 'red' },
  { name: 'x_y', rank: 30, active: false, nick: 'xy', seenAt: '2024-08-01T00:00:00.000Z', team: 'blue' },
  { name: 'Xay', rank: 5, active: true, nick: 'xay', seenAt: '2024-09-01T00:00:00.000Z', team: 'red' }
]
const ALL = [1, 2, 3, 4, 5, 6, 7, 8, 9]

/** What the main test route declares. `team` and `secret` are deliberately left out. */
const QUERY = {
  filterFields: ['id', 'name', 'rank', 'active', 'nick', 'seenAt'],
  orderingFields: ['name', 'rank', 'active', 'seenAt'],
  searchFields: ['name', 'nick']
}

async function seed (orm: MikroORM): Promise<void> {
  const em = orm.em.fork()
  for (const row of ROWS) em.create(Thing, { ...row, seenAt: new Date(row.seenAt), secret: 'classified' })
  await em.flush()
}

interface Started {
  open: (path: string, query?: string) => Promise<TestClient>
  orm: MikroORM
  sql: string[]
}

/** A bare app with the nine rows and the given Thing routes. */
async function start (t: Test, routes: Record<string, Omit<RouteOptions<Thing>, 'entity' | 'schema'>>): Promise<Started> {
  const { orm, base } = await startApp(t, [Thing], (app) => {
    for (const [path, options] of Object.entries(routes)) {
      app.wsRest.route(path, { entity: Thing, schema: { response: ThingPublic }, ...options })
    }
  })
  await seed(orm)
  const sql = spyQueries(orm)
  return {
    orm,
    sql,
    open: async (path, query = '') => {
      const client = await connect(`${base}${path}${query}`)
      t.teardown(() => client.close())
      return client
    }
  }
}

/** A client on a `/things/` route with `list` and the QUERY declarations. */
async function things (t: Test, extra: Omit<RouteOptions<Thing>, 'entity' | 'schema' | 'actions'> = {}): Promise<TestClient> {
  const { open } = await start(t, { '/things/': { ...QUERY, ...extra, actions: [mixins.list()] } })
  return await open('/things/')
}

/** The ids a `list` returns — or, when it fails, its status and errors (so a failure shows why). */
async function listIds (client: TestClient, args: Record<string, unknown>): Promise<unknown> {
  const reply = await client.request('list', args)
  if (reply.response_status !== 200 || !Array.isArray(reply.data)) {
    return { status: reply.response_status, errors: reply.errors }
  }
  return reply.data.map((row: { id: number }) => row.id)
}

/** The parts of a reply a 400 is checked by. */
function outcome (reply: WireReply): unknown {
  return { status: reply.response_status, errors: reply.errors, data: reply.data, action: reply.action }
}

/** The expected outcome of a `list` refused with `fields`. */
function bad (fields: Record<string, string[]>): unknown {
  return { status: 400, errors: [fields], data: null, action: 'list' }
}

async function listOutcome (client: TestClient, args: Record<string, unknown>): Promise<unknown> {
  return outcome(await client.request('list', args))
}

// ---------------------------------------------------------------- filter operators

t.test('scalar values filter by equality on integer, string, boolean, date and nullable fields', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[], string]> = [
    [{ rank: 20 }, [2, 3, 7], 'integer'],
    [{ id: 4 }, [4], 'primary key'],
    [{ name: 'bravo' }, [2], 'string'],
    [{ name: 'Bravo' }, [], 'string equality is exact (case-sensitive)'],
    [{ name: '100%_sure' }, [4], 'a string holding % and _ is compared literally'],
    [{ active: true }, [1, 3, 5, 7, 9], 'boolean true'],
    [{ active: false }, [2, 4, 6, 8], 'boolean false'],
    [{ seenAt: '2024-03-01T00:00:00.000Z' }, [3], 'date-time'],
    [{ seenAt: '2024-03-01T01:00:00+01:00' }, [3], 'date-time with an offset: the same instant'],
    [{ nick: 'chuck' }, [3], 'nullable string'],
    [{ nick: null }, [2, 5, 7], 'null on a nullable field: IS NULL'],
    [{ rank: 999 }, [], 'no match']
  ]
  for (const [filter, expected, label] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, `${label}: ${JSON.stringify(filter)}`)
  }
})

t.test('$eq and $ne', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[]]> = [
    [{ rank: { $eq: 10 } }, [1, 6]],
    [{ name: { $eq: 'delta' } }, [6]],
    [{ active: { $eq: false } }, [2, 4, 6, 8]],
    [{ seenAt: { $eq: '2024-02-01T00:00:00.000Z' } }, [2]],
    [{ nick: { $eq: null } }, [2, 5, 7]],
    [{ rank: { $ne: 20 } }, [1, 4, 5, 6, 8, 9]],
    [{ name: { $ne: 'Alpha' } }, [2, 3, 4, 5, 6, 7, 8, 9]],
    [{ active: { $ne: true } }, [2, 4, 6, 8]],
    [{ seenAt: { $ne: '2024-01-01T00:00:00.000Z' } }, [2, 3, 4, 5, 6, 7, 8, 9]],
    [{ nick: { $ne: null } }, [1, 3, 4, 6, 8, 9]]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
})

t.test('$gt $gte $lt $lte on integers, strings and dates', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[]]> = [
    [{ rank: { $gt: 20 } }, [5, 8]],
    [{ rank: { $gte: 20 } }, [2, 3, 5, 7, 8]],
    [{ rank: { $lt: 10 } }, [4, 9]],
    [{ rank: { $lte: 10 } }, [1, 4, 6, 9]],
    [{ rank: { $gt: 5, $lt: 30 } }, [1, 2, 3, 6, 7]],
    [{ id: { $gt: 7 } }, [8, 9]],
    [{ name: { $gte: 'b', $lt: 'c' } }, [2]],
    [{ name: { $lt: '2' } }, [4, 5]],
    [{ seenAt: { $gt: '2024-06-01T00:00:00.000Z' } }, [7, 8, 9]],
    [{ seenAt: { $gte: '2024-06-01T00:00:00.000Z' } }, [6, 7, 8, 9]],
    [{ seenAt: { $lt: '2024-02-15T00:00:00Z' } }, [1, 2]],
    [{ seenAt: { $lte: '2024-02-01T00:00:00.000Z' } }, [1, 2]],
    [{ seenAt: { $gt: '2024-03-15T00:00:00.000Z', $lte: '2024-05-01T00:00:00.000Z' } }, [4, 5]]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
})

t.test('$in and $nin', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[]]> = [
    [{ id: { $in: [2, 4, 99] } }, [2, 4]],
    [{ name: { $in: ['bravo', 'delta', 'nope'] } }, [2, 6]],
    [{ active: { $in: [false] } }, [2, 4, 6, 8]],
    [{ nick: { $in: ['al', 'DD'] } }, [1, 6]],
    [{ seenAt: { $in: ['2024-01-01T00:00:00.000Z', '2024-09-01T00:00:00.000Z'] } }, [1, 9]],
    [{ rank: { $in: [] } }, []],
    [{ rank: { $nin: [10, 20] } }, [4, 5, 8, 9]],
    [{ name: { $nin: ['Alpha', 'x_y'] } }, [2, 3, 4, 5, 6, 7, 9]],
    [{ rank: { $nin: [] } }, ALL]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
})

t.test('$contains: case-insensitive substring, % and _ taken literally', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[], string]> = [
    [{ name: { $contains: 'alpha' } }, [1, 7], 'lower case finds Alpha and ALPHA'],
    [{ name: { $contains: 'ALPHA' } }, [1, 7], 'upper case too'],
    [{ name: { $contains: 'lPh' } }, [1, 7], 'mixed case, inside the word'],
    [{ name: { $contains: 'two' } }, [7], 'at the end'],
    [{ name: { $contains: '%' } }, [4], '% is a character, not a wildcard'],
    [{ name: { $contains: '0%' } }, [4], '"0%" is not "0 followed by anything" (row 5 is "100 percent")'],
    [{ name: { $contains: '_' } }, [4, 8], '_ is a character, not "any one character"'],
    [{ name: { $contains: 'x_y' } }, [8], '"x_y" does not match "Xay"'],
    [{ name: { $contains: '%_' } }, [4], 'both together'],
    [{ name: { $contains: 'zzz' } }, [], 'no match'],
    [{ name: { $contains: '' } }, ALL, 'the empty string is in every name'],
    [{ nick: { $contains: 'D' } }, [6], 'a nullable field: nulls never match'],
    [{ nick: { $contains: 'A' } }, [1, 9], 'a nullable field, case-insensitive']
  ]
  for (const [filter, expected, label] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, `${label}: ${JSON.stringify(filter)}`)
  }
})

t.test('several keys, and several operators on one key, combine with AND; {} filters nothing', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[]]> = [
    [{ rank: 20, active: true }, [3, 7]],
    [{ active: true, name: { $contains: 'alpha' }, rank: { $lt: 15 } }, [1]],
    [{ id: { $gt: 3 }, nick: null }, [5, 7]],
    [{ rank: { $gte: 10, $ne: 20 } }, [1, 5, 6, 8]],
    [{ name: { $contains: 'a', $ne: 'Xay' }, active: false }, [2, 6]],
    [{ rank: { $in: [5, 30] }, seenAt: { $lt: '2024-06-01T00:00:00.000Z' } }, [4, 5]],
    [{ rank: 20, active: false, nick: { $ne: null } }, []],
    [{}, ALL]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
  t.strictSame(await listIds(client, {}), ALL, 'no filter at all')
})

// ---------------------------------------------------------------- ordering

t.test('ordering: a field, descending, lists; ties broken by primary key (ascending, also for descending fields)', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[], string]> = [
    ['rank', [4, 9, 1, 6, 2, 3, 7, 5, 8], 'ascending, ties in id order'],
    ['-rank', [5, 8, 2, 3, 7, 1, 6, 4, 9], 'descending, ties still in ascending id order'],
    [['rank'], [4, 9, 1, 6, 2, 3, 7, 5, 8], 'a list of one'],
    [['active', '-rank'], [8, 2, 6, 4, 5, 3, 7, 1, 9], 'false first, then rank descending'],
    [['-active', 'rank'], [9, 1, 3, 7, 5, 4, 6, 2, 8], 'true first, then rank ascending'],
    [['rank', '-id'], [9, 4, 6, 1, 7, 3, 2, 8, 5], 'an explicit primary key direction replaces the tie-break'],
    ['-seenAt', [9, 8, 7, 6, 5, 4, 3, 2, 1], 'a date field'],
    ['-id', [9, 8, 7, 6, 5, 4, 3, 2, 1], 'the primary key is always orderable'],
    ['id', ALL, 'the primary key ascending'],
    [['rank', 'rank'], [4, 9, 1, 6, 2, 3, 7, 5, 8], 'a repeated field counts once'],
    [['-active', '-rank', 'seenAt', 'name', '-id'], [5, 3, 7, 1, 9, 8, 2, 6, 4], 'five steps'],
    [['-active', '-rank', 'seenAt', 'name', 'id', '-active', '-rank', '-seenAt'], [5, 3, 7, 1, 9, 8, 2, 6, 4], 'eight steps (the maximum); repeats count once']
  ]
  for (const [ordering, expected, label] of cases) {
    t.strictSame(await listIds(client, { ordering }), expected, `${label}: ${JSON.stringify(ordering)}`)
  }
})

t.test('the route\'s ordering option is the default; a client ordering replaces it', async (t) => {
  const { open } = await start(t, {
    '/by-rank/': { ...QUERY, ordering: '-rank', actions: [mixins.list()] },
    '/by-list/': { ...QUERY, ordering: ['active', '-seenAt'], actions: [mixins.list()] },
    '/by-pk-desc/': { ...QUERY, ordering: '-id', actions: [mixins.list()] },
    '/plain/': { ...QUERY, actions: [mixins.list()] }
  })
  const byRank = await open('/by-rank/')
  t.strictSame(await listIds(byRank, {}), [5, 8, 2, 3, 7, 1, 6, 4, 9], 'default "-rank", ties by id')
  t.strictSame(await listIds(byRank, { filter: { active: true } }), [5, 3, 7, 1, 9], 'the default applies to a filtered list')
  t.strictSame(await listIds(byRank, { ordering: 'id' }), ALL, 'the client\'s ordering wins')
  t.strictSame(await listIds(byRank, { ordering: ['rank'] }), [4, 9, 1, 6, 2, 3, 7, 5, 8])

  const byList = await open('/by-list/')
  t.strictSame(await listIds(byList, {}), [8, 6, 4, 2, 9, 7, 5, 3, 1], 'default ["active", "-seenAt"]')

  const byPkDesc = await open('/by-pk-desc/')
  t.strictSame(await listIds(byPkDesc, {}), [9, 8, 7, 6, 5, 4, 3, 2, 1], 'default "-id"')
  t.strictSame(await listIds(byPkDesc, { ordering: 'rank' }), [4, 9, 1, 6, 2, 3, 7, 5, 8], 'a client ordering is tie-broken by ascending id, not the default')

  const plain = await open('/plain/')
  t.strictSame(await listIds(plain, {}), ALL, 'without the option: by primary key')
})

// ---------------------------------------------------------------- search

t.test('search: case-insensitive substring over every search field (OR); blank search filters nothing', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, number[], string]> = [
    ['alpha', [1, 7], 'name, case-insensitive'],
    ['CHUCK', [3], 'nick only (name "Charlie" does not hold it)'],
    ['al', [1, 7], 'name of 7, name and nick of 1'],
    ['d', [6], 'row 6 by name and nick ("delta", "DD")'],
    ['xy', [8], 'nick of 8 only (its name is "x_y")'],
    ['ch', [3], 'name and nick of the same row: once'],
    ['a', [1, 2, 3, 6, 7, 9], 'rows whose name or nick holds an a'],
    ['pct', [4], 'nick of 4'],
    ['%', [4], '% literally'],
    ['_', [4, 8], '_ literally'],
    ['x_y', [8], 'x_y literally'],
    ['nothing-like-this', [], 'no match'],
    ['', ALL, 'empty: no filter'],
    ['   ', ALL, 'blank: no filter'],
    ['classified', [], 'an undeclared field (secret) is not searched'],
    ['red', [], 'an undeclared field (team) is not searched']
  ]
  for (const [search, expected, label] of cases) {
    t.strictSame(await listIds(client, { search }), expected, `${label}: ${JSON.stringify(search)}`)
  }
})

t.test('filter, search and ordering together', async (t) => {
  const client = await things(t)
  t.strictSame(await listIds(client, { search: 'a', filter: { active: true }, ordering: '-rank' }), [3, 7, 1, 9])
  t.strictSame(await listIds(client, { search: 'ALPHA', filter: { rank: { $gt: 10 } } }), [7])
  t.strictSame(await listIds(client, { search: 'a', filter: { name: { $contains: 'l' } }, ordering: ['-seenAt'] }), [7, 6, 3, 1])
  t.strictSame(await listIds(client, { search: 'al', filter: { nick: null } }), [7])
  t.strictSame(await listIds(client, { search: '', filter: {}, ordering: '-id' }), [9, 8, 7, 6, 5, 4, 3, 2, 1])
})

// ---------------------------------------------------------------- errors

t.test('400 keyed filter: unknown fields and unknown operators', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, string[]]> = [
    [{ secret: 'classified' }, ['Unknown field "secret".']],
    [{ team: 'red' }, ['Unknown field "team".']],
    [{ nope: 1 }, ['Unknown field "nope".']],
    [{ Name: 'bravo' }, ['Unknown field "Name".']],
    [{ rank: { $like: 1 } }, ['Unknown operator "$like" for field "rank".']],
    [{ name: { eq: 'bravo' } }, ['Unknown operator "eq" for field "name".']],
    [{ name: { $EQ: 'bravo' } }, ['Unknown operator "$EQ" for field "name".']],
    [{ nick: { $exists: true } }, ['Unknown operator "$exists" for field "nick".']],
    [{ rank: { $gt: 1, $between: [1, 2] } }, ['Unknown operator "$between" for field "rank".']]
  ]
  for (const [filter, messages] of cases) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: messages }), JSON.stringify(filter))
  }
})

t.test('400 keyed filter: values of the wrong type', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, string[]]> = [
    [{ rank: '20' }, ['Invalid value for "rank": expected integer.']],
    [{ rank: 1.5 }, ['Invalid value for "rank": expected integer.']],
    [{ rank: true }, ['Invalid value for "rank": expected integer.']],
    [{ rank: null }, ['Invalid value for "rank": expected integer.']],
    [{ id: '4' }, ['Invalid value for "id": expected integer.']],
    [{ rank: { $gt: 'ten' } }, ['Invalid value for "rank": expected integer.']],
    [{ name: 5 }, ['Invalid value for "name": expected string.']],
    [{ name: null }, ['Invalid value for "name": expected string.']],
    [{ name: ['bravo'] }, ['Invalid value for "name": expected string.']],
    [{ name: { $ne: false } }, ['Invalid value for "name": expected string.']],
    [{ nick: 7 }, ['Invalid value for "nick": expected string.']],
    [{ active: 'true' }, ['Invalid value for "active": expected boolean.']],
    [{ active: 1 }, ['Invalid value for "active": expected boolean.']],
    [{ seenAt: 'yesterday' }, ['Invalid value for "seenAt": expected date-time string.']],
    [{ seenAt: 1704067200000 }, ['Invalid value for "seenAt": expected date-time string.']],
    [{ seenAt: '2024-01-01' }, ['Invalid value for "seenAt": expected date-time string.']],
    [{ seenAt: { $gt: '2024-13-45T99:00:00Z' } }, ['Invalid value for "seenAt": expected date-time string.']],
    [{ rank: { $in: 5 } }, ['Invalid value for "rank": $in expects a list of at most 1000 values.']],
    [{ rank: { $nin: '5' } }, ['Invalid value for "rank": $nin expects a list of at most 1000 values.']],
    [{ name: { $in: { a: 1 } } }, ['Invalid value for "name": $in expects a list of at most 1000 values.']],
    [{ rank: { $in: ALL.concat(Array.from({ length: 992 }, (_, i) => i + 10)) } }, ['Invalid value for "rank": $in expects a list of at most 1000 values.']],
    [{ rank: { $in: [1, 'two'] } }, ['Invalid value for "rank": expected integer.']],
    [{ active: { $nin: [true, 'false'] } }, ['Invalid value for "active": expected boolean.']]
  ]
  for (const [filter, messages] of cases) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: messages }), JSON.stringify(filter).slice(0, 80))
  }
  // 1000 values is still allowed.
  const thousand = Array.from({ length: 1000 }, (_, i) => i + 1)
  t.strictSame(await listIds(client, { filter: { id: { $in: thousand } } }), ALL, '$in with exactly 1000 values')
})

t.test('400 keyed filter: $contains on a non-string field or with a non-string, an empty operator object', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, string[]]> = [
    [{ rank: { $contains: '1' } }, ['Operator "$contains" needs a string field; "rank" is not one.']],
    [{ active: { $contains: 't' } }, ['Operator "$contains" needs a string field; "active" is not one.']],
    [{ seenAt: { $contains: '2024' } }, ['Operator "$contains" needs a string field; "seenAt" is not one.']],
    [{ id: { $contains: '1' } }, ['Operator "$contains" needs a string field; "id" is not one.']],
    [{ name: { $contains: 5 } }, ['Invalid value for "name": $contains expects a string.']],
    [{ name: { $contains: null } }, ['Invalid value for "name": $contains expects a string.']],
    [{ nick: { $contains: ['a'] } }, ['Invalid value for "nick": $contains expects a string.']],
    [{ rank: {} }, ['Expected at least one operator for "rank".']]
  ]
  for (const [filter, messages] of cases) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: messages }), JSON.stringify(filter))
  }
})

t.test('400 keyed filter: a filter that is not an object', async (t) => {
  const client = await things(t)
  for (const filter of ['rank', 5, true, false, null, [], [{ rank: 20 }], '']) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: ['Expected an object of field filters.'] }), JSON.stringify(filter))
  }
})

t.test('400 keyed ordering', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, string]> = [
    ['secret', 'Unknown ordering field "secret".'],
    ['-secret', 'Unknown ordering field "secret".'],
    ['team', 'Unknown ordering field "team".'],
    ['nick', 'Unknown ordering field "nick".'],
    ['+rank', 'Unknown ordering field "+rank".'],
    ['', 'Unknown ordering field "".'],
    ['-', 'Unknown ordering field "".'],
    ['rank desc', 'Unknown ordering field "rank desc".'],
    [['rank', 'secret'], 'Unknown ordering field "secret".'],
    [5, 'Expected a field name or a list of field names.'],
    [null, 'Expected a field name or a list of field names.'],
    [true, 'Expected a field name or a list of field names.'],
    [{ rank: 'asc' }, 'Expected a field name or a list of field names.'],
    [['rank', 5], 'Expected a field name or a list of field names.'],
    [['rank', ['id']], 'Expected a field name or a list of field names.'],
    [[], 'Expected a field name or a list of 1 to 8 field names.'],
    [['rank', 'name', 'active', 'seenAt', 'id', '-rank', '-name', '-active', '-seenAt'], 'Expected a field name or a list of 1 to 8 field names.']
  ]
  for (const [ordering, message] of cases) {
    t.strictSame(await listOutcome(client, { ordering }), bad({ ordering: [message] }), JSON.stringify(ordering))
  }
})

t.test('400 keyed search', async (t) => {
  const { open } = await start(t, {
    '/things/': { ...QUERY, actions: [mixins.list()] },
    '/unsearchable/': { filterFields: ['rank'], actions: [mixins.list()] }
  })
  const client = await open('/things/')
  for (const search of [5, null, true, ['alpha'], { $contains: 'a' }]) {
    t.strictSame(await listOutcome(client, { search }), bad({ search: ['Expected a string.'] }), JSON.stringify(search))
  }
  const unsearchable = await open('/unsearchable/')
  t.strictSame(await listOutcome(unsearchable, { search: 'alpha' }), bad({ search: ['Search is not available on this route.'] }), 'a route with no search fields')
})

t.test('every problem of a request comes in one 400', async (t) => {
  const client = await things(t)
  const reply = await client.request('list', {
    filter: { secret: 'x', rank: 'high', name: { $like: '%' }, active: { $contains: 't' }, nick: { $in: 'al' }, id: 3 },
    ordering: '-team',
    search: 42
  })
  t.strictSame(outcome(reply), bad({
    filter: [
      'Unknown field "secret".',
      'Invalid value for "rank": expected integer.',
      'Unknown operator "$like" for field "name".',
      'Operator "$contains" needs a string field; "active" is not one.',
      'Invalid value for "nick": $in expects a list of at most 1000 values.'
    ],
    ordering: ['Unknown ordering field "team".'],
    search: ['Expected a string.']
  }), 'filter (every bad key, in order), ordering and search together; the valid id key adds nothing')

  const two = await client.request('list', { filter: { rank: { $gt: 'a', $lt: 'b', $in: [1, 'x'] } }, ordering: 'rank' })
  t.strictSame(outcome(two), bad({
    filter: [
      'Invalid value for "rank": expected integer.',
      'Invalid value for "rank": expected integer.',
      'Invalid value for "rank": expected integer.'
    ]
  }), 'several bad operators of one field; a valid ordering is not reported')

  t.strictSame(await listIds(client, { filter: { rank: 20 } }), [2, 3, 7], 'the socket answers normally afterwards')
})

t.test('nothing undeclared, and nothing invalid, reaches the database', async (t) => {
  let scoped = 0
  const { open, sql } = await start(t, {
    '/things/': { ...QUERY, getQueryset: () => { scoped++; return undefined }, actions: [mixins.list()] }
  })
  const client = await open('/things/')

  // A valid list runs a select (the spy works).
  sql.length = 0
  t.strictSame(await listIds(client, { filter: { rank: 20 } }), [2, 3, 7])
  t.ok(sql.some((q) => /select/i.test(q)), 'a valid list queries the database')
  t.equal(scoped, 1, 'and reaches getQueryset')

  const refused: unknown[] = [
    { filter: { secret: 'classified' } },
    { filter: { secret: { $contains: '' } } },
    { filter: { team: { $in: ['red', 'blue'] } } },
    { filter: { rank: { $like: '%' } } },
    { filter: { $or: [{ rank: 20 }, { secret: 'classified' }] } },
    { filter: { name: { $contains: 5 } } },
    { ordering: 'secret' },
    { ordering: '-team' },
    { search: ['classified'] }
  ]
  for (const args of refused) {
    sql.length = 0
    const reply = await client.request('list', args as Record<string, unknown>)
    t.strictSame([reply.response_status, reply.data], [400, null], `refused: ${JSON.stringify(args)}`)
    t.strictSame(sql, [], `no SQL for ${JSON.stringify(args)}`)
  }
  t.equal(scoped, 1, 'a refused list never got as far as the queryset')
})

t.test('injection attempts as operators, field names or values → 400, never results', async (t) => {
  const client = await things(t)
  const cases: Array<[unknown, string[]]> = [
    [{ name: { $like: '%' } }, ['Unknown operator "$like" for field "name".']],
    [{ name: { $ilike: '%' } }, ['Unknown operator "$ilike" for field "name".']],
    [{ name: { $re: '.*' } }, ['Unknown operator "$re" for field "name".']],
    [{ name: { $fulltext: 'a' } }, ['Unknown operator "$fulltext" for field "name".']],
    [{ name: { $not: { $eq: 'x' } } }, ['Unknown operator "$not" for field "name".']],
    [{ id: { $gt: 0, $or: [{ secret: 'classified' }] } }, ['Unknown operator "$or" for field "id".']],
    [{ $or: [{ rank: 20 }, { secret: 'classified' }] }, ['Unknown field "$or".']],
    [{ $and: [{ rank: 20 }] }, ['Unknown field "$and".']],
    [{ $not: { rank: 20 } }, ['Unknown field "$not".']],
    [{ 'secret.length': 1 }, ['Unknown field "secret.length".']],
    [{ '[raw]: 1 = 1 (#0)': 1 }, ['Unknown field "[raw]: 1 = 1 (#0)".']],
    [{ name: { $eq: { $ne: '' } } }, ['Invalid value for "name": expected string.']],
    [{ name: { $ne: { $like: '%' } } }, ['Invalid value for "name": expected string.']],
    [{ nick: { $ne: { $ne: null } } }, ['Invalid value for "nick": expected string.']],
    [{ id: { $in: [{ $gt: 0 }] } }, ['Invalid value for "id": expected integer.']],
    [{ id: { $nin: [[1]] } }, ['Invalid value for "id": expected integer.']],
    [{ seenAt: { $gt: { $ne: null } } }, ['Invalid value for "seenAt": expected date-time string.']],
    [{ name: ['bravo', 'delta'] }, ['Invalid value for "name": expected string.']]
  ]
  for (const [filter, messages] of cases) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: messages }), JSON.stringify(filter))
  }
  // A "__proto__" key as a client sends it (JSON.parse makes it an own key).
  const proto: unknown = JSON.parse('{"__proto__": {"rank": 20}}')
  t.strictSame(await listOutcome(client, { filter: proto }), bad({ filter: ['Unknown field "__proto__".'] }), '"__proto__" as a field name')
  const orderings: Array<[unknown, string]> = [
    ['rank; drop table thing', 'Unknown ordering field "rank; drop table thing".'],
    ['(select secret)', 'Unknown ordering field "(select secret)".'],
    [{ $raw: 'secret' }, 'Expected a field name or a list of field names.'],
    [['-id', { secret: 'asc' }], 'Expected a field name or a list of field names.']
  ]
  for (const [ordering, message] of orderings) {
    t.strictSame(await listOutcome(client, { ordering }), bad({ ordering: [message] }), JSON.stringify(ordering))
  }
})

t.test('a route that declares nothing: filter and search refused, ordering only by primary key', async (t) => {
  const { open } = await start(t, { '/bare/': { actions: [mixins.list()] } })
  const client = await open('/bare/')
  t.strictSame(await listIds(client, {}), ALL)
  t.strictSame(await listOutcome(client, { filter: { rank: 20 } }), bad({ filter: ['Unknown field "rank".'] }))
  t.strictSame(await listOutcome(client, { filter: { id: 1 } }), bad({ filter: ['Unknown field "id".'] }), 'not even the primary key')
  t.strictSame(await listOutcome(client, { ordering: 'rank' }), bad({ ordering: ['Unknown ordering field "rank".'] }))
  t.strictSame(await listOutcome(client, { search: 'alpha' }), bad({ search: ['Search is not available on this route.'] }))
  t.strictSame(await listIds(client, { ordering: '-id' }), [9, 8, 7, 6, 5, 4, 3, 2, 1], 'the primary key is always orderable')
  t.strictSame(await listIds(client, { filter: {} }), ALL, 'an empty filter names no field')
})

// ---------------------------------------------------------------- getQueryset

t.test('a filter only narrows what getQueryset lets the connection see', async (t) => {
  const { open } = await start(t, {
    '/team/': {
      ...QUERY,
      // The connection sees the rows of the team in its query string.
      getQueryset: (ctx: ActionContext) => ({ team: (ctx.request.query as { team?: string }).team ?? 'none' }),
      actions: [mixins.list()]
    }
  })
  const red = await open('/team/', '?team=red')
  t.strictSame(await listIds(red, {}), [1, 3, 5, 7, 9], 'the scope alone')
  const cases: Array<[Record<string, unknown>, number[], string]> = [
    [{ filter: { name: 'bravo' } }, [], 'a filter matching only an out-of-scope row'],
    [{ filter: { id: 2 } }, [], 'an out-of-scope primary key'],
    [{ filter: { id: { $in: [2, 3, 4] } } }, [3], 'in scope ∩ filter'],
    [{ filter: { rank: 20 } }, [3, 7], 'rank 20 in scope only'],
    [{ filter: { active: false } }, [], 'every inactive row is out of scope'],
    [{ filter: { nick: { $ne: null } } }, [1, 3, 9], 'IS NOT NULL within scope'],
    [{ filter: { name: { $contains: '_' } } }, [], '$contains matching out-of-scope rows only'],
    [{ search: 'delta' }, [], 'a search matching an out-of-scope row'],
    [{ search: 'alpha' }, [1, 7], 'a search within scope'],
    [{ search: 'a', filter: { rank: { $lt: 20 } }, ordering: '-rank' }, [1, 9], 'all three within scope']
  ]
  for (const [args, expected, label] of cases) {
    t.strictSame(await listIds(red, args), expected, `${label}: ${JSON.stringify(args)}`)
  }
  const blue = await open('/team/', '?team=blue')
  t.strictSame(await listIds(blue, { filter: { name: 'bravo' } }), [2], 'the same filter on a connection that may see the row')
  t.strictSame(await listIds(blue, { search: 'alpha' }), [], 'and the other way round')
})

// ---------------------------------------------------------------- paginated and streamed lists

/** The `{count, ids, limit, offset}` of a page reply, or its status and errors. */
function pageOf (reply: WireReply): unknown {
  if (reply.response_status !== 200) return { status: reply.response_status, errors: reply.errors }
  const { count, results, limit, offset } = reply.data as { count: number, results: Array<{ id: number }>, limit: number, offset: number }
  return { count, ids: results.map((r) => r.id), limit, offset }
}

t.test('paginated list: filter, ordering and search apply, and count reflects them', async (t) => {
  const { open } = await start(t, {
    '/paged/': { ...QUERY, actions: [mixins.paginatedList({ defaultLimit: 2 })] },
    '/paged-red/': { ...QUERY, getQueryset: () => ({ team: 'red' }), actions: [mixins.paginatedList({ defaultLimit: 2 })] }
  })
  const client = await open('/paged/')
  const page = async (args: Record<string, unknown>): Promise<unknown> => pageOf(await client.request('list', args))

  t.strictSame(await page({}), { count: 9, ids: [1, 2], limit: 2, offset: 0 }, 'unfiltered')
  t.strictSame(await page({ filter: { active: true } }), { count: 5, ids: [1, 3], limit: 2, offset: 0 }, 'filtered: count 5')
  t.strictSame(await page({ filter: { active: true }, offset: 4 }), { count: 5, ids: [9], limit: 2, offset: 4 }, 'the last filtered page')
  t.strictSame(await page({ filter: { active: true }, offset: 5 }), { count: 5, ids: [], limit: 2, offset: 5 }, 'past the filtered end')
  t.strictSame(await page({ ordering: '-rank', limit: 3 }), { count: 9, ids: [5, 8, 2], limit: 3, offset: 0 }, 'ordered')
  t.strictSame(await page({ ordering: '-rank', limit: 3, offset: 3 }), { count: 9, ids: [3, 7, 1], limit: 3, offset: 3 }, 'ordered, ties by id across the page boundary')
  t.strictSame(await page({ filter: { rank: { $in: [10, 20] } }, ordering: '-rank', offset: 2 }), { count: 5, ids: [7, 1], limit: 2, offset: 2 }, 'filtered and ordered')
  t.strictSame(await page({ search: 'alpha' }), { count: 2, ids: [1, 7], limit: 2, offset: 0 }, 'search: count 2')
  t.strictSame(await page({ search: 'a', offset: 2 }), { count: 6, ids: [3, 6], limit: 2, offset: 2 }, 'search: second page')
  t.strictSame(await page({ filter: { name: { $contains: '_' } } }), { count: 2, ids: [4, 8], limit: 2, offset: 0 }, '$contains: count 2')
  t.strictSame(await page({ filter: { name: { $contains: 'A' } }, limit: 5, offset: 1 }), { count: 6, ids: [2, 3, 6, 7, 9], limit: 5, offset: 1 }, '$contains on a later page')
  t.strictSame(await page({ filter: { nick: null } }), { count: 3, ids: [2, 5], limit: 2, offset: 0 }, 'null filter')

  t.strictSame(outcome(await client.request('list', { filter: { secret: 'x' }, ordering: 'team', search: 1 })), bad({
    filter: ['Unknown field "secret".'], ordering: ['Unknown ordering field "team".'], search: ['Expected a string.']
  }), 'the same 400 as a plain list')

  const scoped = await open('/paged-red/')
  t.strictSame(pageOf(await scoped.request('list', { filter: { rank: { $gte: 10 } } })), { count: 4, ids: [1, 3], limit: 2, offset: 0 }, 'scope and filter: count of both')
  t.strictSame(pageOf(await scoped.request('list', { filter: { name: 'bravo' } })), { count: 0, ids: [], limit: 2, offset: 0 }, 'an out-of-scope match counts 0')
  t.strictSame(pageOf(await scoped.request('list', { search: 'a' })), { count: 4, ids: [1, 3], limit: 2, offset: 0 }, 'scope and search')
})

/**
 * After a stream's last page nothing more may come for it: probe with `retrieve`, whose
 * query runs after any the stream could still start (one in-memory SQLite connection),
 * so a stray page would arrive before the probe's reply.
 */
async function assertNothingMore (t: Test, client: TestClient, id: string): Promise<void> {
  client.send({ action: 'retrieve', pk: 1, request_id: id })
  const next = await client.next()
  t.strictSame({ action: next.action, request_id: next.request_id }, { action: 'retrieve', request_id: id }, 'nothing after the last page')
}

/**
 * The pages of stream `id`, read until its last page (offset + limit >= count) or a reply
 * that is not a page (an error ends a stream), so a broken stream fails fast instead of
 * timing out.
 */
async function readStream (client: TestClient, id: string): Promise<unknown[]> {
  const out: unknown[] = []
  for (;;) {
    const reply = await client.next()
    if (reply.request_id !== id) return [...out, { unexpected: reply }]
    out.push(pageOf(reply))
    if (reply.response_status !== 200) return out
    const { count, limit, offset } = reply.data as { count: number, limit: number, offset: number }
    if (offset + limit >= count) return out
  }
}

t.test('streamed list: every page is filtered, ordered and searched, count reflects the filter', async (t) => {
  const { open } = await start(t, {
    '/stream/': { ...QUERY, actions: [mixins.retrieve(), ...mixins.streamedList({ defaultLimit: 2 })] }
  })
  const client = await open('/stream/')
  const stream = async (id: string, args: Record<string, unknown>): Promise<unknown[]> => {
    client.send({ action: 'list', request_id: id, ...args })
    const pages = await readStream(client, id)
    await assertNothingMore(t, client, `after-${id}`)
    return pages
  }

  t.strictSame(await stream('active', { filter: { active: true } }), [
    { count: 5, ids: [1, 3], limit: 2, offset: 0 },
    { count: 5, ids: [5, 7], limit: 2, offset: 2 },
    { count: 5, ids: [9], limit: 2, offset: 4 }
  ], 'a filter: 5 rows in 3 pages')
  t.strictSame(await stream('desc', { filter: { rank: { $gte: 10 } }, ordering: '-rank', limit: 3 }), [
    { count: 7, ids: [5, 8, 2], limit: 3, offset: 0 },
    { count: 7, ids: [3, 7, 1], limit: 3, offset: 3 },
    { count: 7, ids: [6], limit: 3, offset: 6 }
  ], 'filtered and ordered, ties by id across pages')
  t.strictSame(await stream('in', { filter: { seenAt: { $in: ['2024-01-01T00:00:00.000Z', '2024-05-01T00:00:00.000Z', '2024-09-01T00:00:00.000Z'] } } }), [
    { count: 3, ids: [1, 5], limit: 2, offset: 0 },
    { count: 3, ids: [9], limit: 2, offset: 2 }
  ], 'a date $in')
  t.strictSame(await stream('one-page', { search: 'alpha' }), [
    { count: 2, ids: [1, 7], limit: 2, offset: 0 }
  ], 'a search that fits in one page')
  t.strictSame(await stream('search', { search: 'a' }), [
    { count: 6, ids: [1, 2], limit: 2, offset: 0 },
    { count: 6, ids: [3, 6], limit: 2, offset: 2 },
    { count: 6, ids: [7, 9], limit: 2, offset: 4 }
  ], 'a search: every page, not only the first')
  t.strictSame(await stream('contains', { filter: { name: { $contains: 'A' } }, ordering: '-id' }), [
    { count: 6, ids: [9, 7], limit: 2, offset: 0 },
    { count: 6, ids: [6, 3], limit: 2, offset: 2 },
    { count: 6, ids: [2, 1], limit: 2, offset: 4 }
  ], '$contains: every page')
  t.strictSame(await stream('none', { filter: { name: 'nobody' } }), [{ count: 0, ids: [], limit: 2, offset: 0 }], 'no match: one empty page')

  client.send({ action: 'list', request_id: 'bad', filter: { password: 'x' }, ordering: ['rank', 'secret'] })
  const refused = await client.next()
  t.strictSame([refused.request_id, outcome(refused)], ['bad', bad({
    filter: ['Unknown field "password".'], ordering: ['Unknown ordering field "secret".']
  })], 'a bad stream request is one 400')
  await assertNothingMore(t, client, 'after-bad')
})

/** MikroORM 6 registers every raw() fragment process-wide until a query uses it; MikroORM 7 has no such registry. */
const rawFragments = (RawQueryFragment as unknown as { checkCacheSize?: () => number }).checkCacheSize?.bind(RawQueryFragment)

t.test('a refused list leaves nothing behind in MikroORM\'s process-wide raw-fragment registry', {
  skip: rawFragments === undefined ? 'MikroORM 7 keeps no raw-fragment registry: nothing to leave behind' : false
}, async (t) => {
  const { open } = await start(t, {
    '/things/': { ...QUERY, actions: [mixins.list()] },
    '/paged/': { ...QUERY, actions: [mixins.paginatedList()] }
  })
  const client = await open('/things/')
  const paged = await open('/paged/')
  const before = rawFragments!()

  // Lists that run: every raw() condition they built is used and released.
  for (let i = 0; i < 5; i++) {
    t.strictSame(await listIds(client, { search: 'alpha', filter: { name: { $contains: 'a' } } }), [1, 7])
    t.equal((await paged.request('list', { search: `x${i}` })).response_status, 200)
  }
  t.equal(rawFragments!(), before, 'valid lists: no fragment left behind')

  // Lists refused after a valid search / $contains was already parsed.
  for (let i = 0; i < 5; i++) {
    t.equal((await client.request('list', { search: `needle ${i}`, filter: { rank: 'x' } })).response_status, 400)
    t.equal((await client.request('list', { filter: { name: { $contains: `n${i}` }, secret: 1 } })).response_status, 400)
    t.equal((await paged.request('list', { search: 'a', ordering: 'secret' })).response_status, 400)
  }
  t.equal(rawFragments!(), before, 'refused lists: no fragment left behind')
})

// ---------------------------------------------------------------- the example server

interface PublicUser { id: number, username: string, email: string }

/** The example's users, created through `/ws/` (ids 1..8). */
const USERS: Array<{ username: string, email: string }> = [
  { username: 'alice', email: 'alice@example.com' },
  { username: 'bob', email: 'carol.fan@work.org' },
  { username: 'carol', email: 'C3@EXAMPLE.COM' },
  { username: 'dave', email: '' },
  { username: '50%_off', email: 'promo@shop.net' },
  { username: 'x_y', email: 'xy@example.com' },
  { username: 'zxay', email: 'zxay@other.org' },
  { username: 'bobby', email: 'bobby@example.com' }
]

async function example (t: Test): Promise<{ client: TestClient, users: PublicUser[], orm: MikroORM }> {
  const { base, orm } = await startExample(t)
  const client = await connect(`${base}/ws/`)
  t.teardown(() => client.close())
  const users: PublicUser[] = []
  for (const user of USERS) {
    const reply = await client.request('create', { data: { ...user, password1: 'pw-123456', password2: 'pw-123456' } })
    if (reply.response_status !== 201) throw new Error(`could not create ${user.username}: ${JSON.stringify(reply)}`)
    users.push(reply.data)
  }
  return { client, users, orm }
}

t.test('example /ws/: filter by id, username and email', async (t) => {
  const { client, users } = await example(t)
  t.strictSame(users.map((u) => u.id), [1, 2, 3, 4, 5, 6, 7, 8])

  const reply = await client.request('list', { filter: { id: { $gt: 3 }, email: 'zxay@other.org' } })
  t.strictSame(
    { errors: reply.errors, data: reply.data, action: reply.action, status: reply.response_status },
    { errors: [], data: [{ id: 7, username: 'zxay', email: 'zxay@other.org' }], action: 'list', status: 200 },
    'docs/protocol.md\'s example shape: public users only'
  )
  const cases: Array<[unknown, number[]]> = [
    [{ id: { $gt: 3 }, email: 'alice@example.com' }, []],
    [{ username: 'bob' }, [2]],
    [{ username: { $in: ['bob', 'carol', 'nobody'] } }, [2, 3]],
    [{ username: { $nin: ['bob', 'carol'] }, id: { $lte: 4 } }, [1, 4]],
    [{ email: '' }, [4]],
    [{ email: { $ne: '' }, id: { $gte: 7 } }, [7, 8]],
    [{ username: { $contains: 'BOB' } }, [2, 8]],
    [{ email: { $contains: 'example.com' } }, [1, 3, 6, 8]],
    [{ username: { $contains: 'b' }, email: { $contains: 'example' } }, [8]],
    [{ username: { $contains: '%' } }, [5]],
    [{ username: { $contains: '_' } }, [5, 6]],
    [{ username: { $contains: 'x_y' } }, [6]],
    [{ id: { $lt: 3 } }, [1, 2]],
    [{ username: { $gte: 'carol', $lt: 'x' } }, [3, 4]]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
})

t.test('example /ws/: ordering by username and id', async (t) => {
  const { client, users } = await example(t)
  const byName = [5, 1, 2, 8, 3, 4, 6, 7]
  t.strictSame(await listIds(client, {}), [1, 2, 3, 4, 5, 6, 7, 8], 'default: by id')
  t.strictSame(await listIds(client, { ordering: 'username' }), byName, '"username"')
  t.strictSame(await listIds(client, { ordering: '-username' }), [...byName].reverse(), '"-username"')
  t.strictSame(await listIds(client, { ordering: '-id' }), [8, 7, 6, 5, 4, 3, 2, 1], '"-id"')
  t.strictSame(await listIds(client, { ordering: ['username', '-id'] }), byName, 'a list')
  const full = await client.request('list', { ordering: 'username', filter: { email: { $contains: 'example' } } })
  t.strictSame(full.data, [users[0], users[7], users[2], users[5]], 'whole public users, filtered and ordered')
  t.strictSame(await listOutcome(client, { ordering: 'email' }), bad({ ordering: ['Unknown ordering field "email".'] }), 'email is not orderable')
  t.strictSame(await listOutcome(client, { ordering: '-password' }), bad({ ordering: ['Unknown ordering field "password".'] }), 'never by password')
})

t.test('example /ws/: search over username and email, case-insensitive', async (t) => {
  const { client } = await example(t)
  const cases: Array<[string, number[], string]> = [
    ['CAROL', [2, 3], 'username of 3, email of 2'],
    ['example', [1, 3, 6, 8], 'emails, any case'],
    ['promo', [5], 'email only'],
    ['off', [5], 'username only'],
    ['BoB', [2, 8], 'usernames'],
    ['%', [5], '% literally'],
    ['_', [5, 6], '_ literally'],
    ['x_y', [6], 'x_y literally, not "zxay"'],
    ['scrypt', [], 'the password hash is not searched'],
    ['pw-123456', [], 'nor the password'],
    ['', [1, 2, 3, 4, 5, 6, 7, 8], 'empty: no filter'],
    ['zzz', [], 'no match']
  ]
  for (const [search, expected, label] of cases) {
    t.strictSame(await listIds(client, { search }), expected, `${label}: ${JSON.stringify(search)}`)
  }
  t.strictSame(await listIds(client, { search: 'example', filter: { id: { $gt: 3 } }, ordering: '-username' }), [6, 8], 'with a filter and an ordering')
})

t.test('example /ws/: filtering by password is exactly docs/protocol.md\'s 400 and never queries', async (t) => {
  const { client, orm } = await example(t)
  const sql = spyQueries(orm)

  const reply = await client.request('list', { filter: { password: 'x' } })
  t.strictSame(reply.errors, [{ filter: ['Unknown field "password".'] }], 'the exact errors')
  t.strictSame(
    { data: reply.data, action: reply.action, status: reply.response_status, keys: Object.keys(reply).sort() },
    { data: null, action: 'list', status: 400, keys: ['action', 'data', 'errors', 'request_id', 'response_status'] }
  )
  for (const filter of [{ password: { $contains: 'scrypt' } }, { password: { $ne: '' } }, { password: { $gt: '' } }]) {
    const r = await client.request('list', { filter })
    t.strictSame(outcome(r), bad({ filter: ['Unknown field "password".'] }), JSON.stringify(filter))
    t.notMatch(JSON.stringify(r), /scrypt|alice/, 'no user, no hash in the reply')
  }
  t.strictSame(sql.filter((q) => /select/i.test(q)), [], 'none of them ran a select')

  t.strictSame(await listIds(client, { filter: { username: 'alice' } }), [1])
  t.ok(sql.some((q) => /select/i.test(q)), 'a valid filter does (the spy works)')
})

t.test('example /ws/: injection attempts → 400 keyed filter, never results', async (t) => {
  const { client, orm } = await example(t)
  const sql = spyQueries(orm)
  const cases: Array<[unknown, string[]]> = [
    [{ username: { $like: '%' } }, ['Unknown operator "$like" for field "username".']],
    [{ email: { $ilike: '%' } }, ['Unknown operator "$ilike" for field "email".']],
    [{ username: { $re: '.*' } }, ['Unknown operator "$re" for field "username".']],
    [{ $or: [{ username: 'alice' }, { password: { $ne: '' } }] }, ['Unknown field "$or".']],
    [{ $or: [{ username: { $like: '%' } }] }, ['Unknown field "$or".']],
    [{ $and: [{ id: { $gt: 0 } }] }, ['Unknown field "$and".']],
    [{ username: { $eq: { $ne: '' } } }, ['Invalid value for "username": expected string.']],
    [{ username: { $ne: { $like: '%' } } }, ['Invalid value for "username": expected string.']],
    [{ username: { $like: '%' }, password: { $ne: '' } }, ['Unknown operator "$like" for field "username".', 'Unknown field "password".']],
    [{ id: { $in: [{ $gt: 0 }] } }, ['Invalid value for "id": expected integer.']],
    [{ id: { $gt: 0, $or: [{ password: { $ne: '' } }] } }, ['Unknown operator "$or" for field "id".']],
    [{ email: { $contains: { $ne: '' } } }, ['Invalid value for "email": $contains expects a string.']]
  ]
  for (const [filter, messages] of cases) {
    const reply = await client.request('list', { filter })
    t.strictSame(outcome(reply), bad({ filter: messages }), JSON.stringify(filter))
  }
  t.strictSame(sql.filter((q) => /select/i.test(q)), [], 'none of them ran a select')
})
