/**
 * The in-memory matcher against the database: for random rows and random conditions, the
 * rows `compileCondition` admits (a route's scope, as subscriptions decide it on a row
 * snapshot) and the rows `QueryRules.parse(args).matches` admits (a client's filter and
 * search) must be exactly the rows the database returns for the same condition — NULLs,
 * SQL's three-valued logic under `$not`, `$in` / `$nin` with NULL, unicode, mixed case,
 * `%` and `_` included. Also: a scope naming a property events do not carry is refused,
 * never decided as if the row had it (docs/protocol.md, subscriptions).
 *
 * Seeded (default 1): the seed is printed; `MATCHER_SEED=<seed>` replays a run, `MATCHER_SEED=random` tries a new one.
 */
import { defineEntity, type EntityMetadata, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins } from '../index.js'
import { QueryRules } from '../lib/filtering.js'
import { RowReader, type Row } from '../lib/observer/changes.js'
import { analyzeCondition, compileCondition } from '../lib/observer/matcher.js'
import { emptyConditionsOf } from '../lib/orm-compat.js'
import { openClient } from './helpers/client.js'
import { dialect, initOrm } from './helpers/database.js'
import { Rng } from './helpers/fuzz.js'
import { startApp } from './helpers/server.js'

const Cell = defineEntity({
  name: 'Cell',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    n: p.integer().nullable(),
    s: p.string().nullable(),
    b: p.boolean().nullable(),
    d: p.datetime().nullable(),
    // Never in a row snapshot: a scope on it cannot be decided in memory.
    secret: p.string().nullable().hidden()
  })
})
type Cell = InferEntity<typeof Cell>

// A fixed seed by default, so a run is the same every time (CI included); `MATCHER_SEED=random` explores.
const given = process.env.MATCHER_SEED ?? ''
const seed = given === 'random' ? Math.floor(Math.random() * 2 ** 32) >>> 0 : given === '' ? 1 : Number(given) >>> 0
t.comment(`matcher differential seed ${seed} on ${dialect} (replay: MATCHER_SEED=${seed})`)

const ROWS = 2000
const SCOPES = 500
const FILTERS = 300

const NUMBERS = [-3, -1, 0, 1, 2, 5, 10, 42]
const STRINGS = ['Alpha', 'alpha', 'ALPHA', 'beta', 'Beta', '', ' ', 'a_b', 'axb', '100%', '1000', '%', '_', 'Ünïcode', 'ünïcode',
  'straße', 'STRASSE', 'Ω', 'ω', 'x😀', 'x\uFFFD', 'zeta', 'Zeta', 'é', 'e\u0301']
const DATES = ['2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.001Z', '2021-06-15T12:30:00.000Z', '1999-12-31T23:59:59.999Z', '2030-03-03T03:03:03.000Z']
const BOOLS = [true, false]
/** What `$contains` and `search` look for: ASCII, mixed case, LIKE's wildcards. */
const NEEDLES = ['a', 'A', 'al', 'PHA', '%', '_', 'a_b', '0%', '00', 'et', 'x', 'z', 'ZET', ' ']
/**
 * Needles whose case differs outside ASCII. SQLite's lower() folds ASCII only, so
 * `$contains: 'ü'` misses "Ünïcode" there while JavaScript's toLowerCase() matches it.
 */
const UNICODE_NEEDLES = ['ü', 'Ü', 'ω', 'Ω', 'ß', 'é', '😀', 'ünï']

type Field = 'n' | 's' | 'b' | 'd'
const FIELDS: Field[] = ['n', 's', 'b', 'd']
const OPERATORS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin'] as const

function pool (field: Field): unknown[] {
  return field === 'n' ? NUMBERS : field === 's' ? STRINGS : field === 'b' ? BOOLS : DATES
}

/** A value of `field` (null now and then), as a Date where the ORM is given one. */
function value (rng: Rng, field: Field, nulls: number, asDate: boolean): unknown {
  if (rng.chance(nulls)) return null
  const v = rng.pick(pool(field))
  return field === 'd' && asDate ? new Date(v as string) : v
}

/** A random MikroORM condition over the entity's columns, nested up to `depth`. */
function condition (rng: Rng, depth: number): Record<string, unknown> {
  const roll = depth <= 0 ? 0 : rng.int(10)
  if (roll <= 3) return fieldCondition(rng)
  if (roll === 4) {
    // Several fields in one object: an implicit AND.
    const out: Record<string, unknown> = {}
    for (const f of FIELDS) if (rng.chance(0.5)) Object.assign(out, fieldCondition(rng, f))
    return out
  }
  if (roll === 5) return { $and: Array.from({ length: rng.int(4) }, () => condition(rng, depth - 1)) }
  if (roll <= 7) return { $or: Array.from({ length: rng.int(4) }, () => condition(rng, depth - 1)) }
  return { $not: condition(rng, depth - 1) }
}

function fieldCondition (rng: Rng, field: Field = rng.pick(FIELDS)): Record<string, unknown> {
  const roll = rng.int(10)
  if (roll === 0) return { [field]: value(rng, field, 0.4, true) }
  if (roll === 1) return { [field]: Array.from({ length: 1 + rng.int(3) }, () => value(rng, field, 0.2, true)) }
  const ops: Record<string, unknown> = {}
  for (let i = 0; i < 1 + rng.int(2); i++) {
    const op = rng.pick(OPERATORS)
    ops[op] = op === '$in' || op === '$nin'
      ? Array.from({ length: rng.int(4) }, () => value(rng, field, 0.2, true))
      : value(rng, field, 0.25, true)
  }
  return { [field]: ops }
}

/** A random client `filter` / `search` of the route (the wire's JSON: dates as strings). */
function clientArgs (rng: Rng, needles: string[]): Record<string, unknown> {
  const args: Record<string, unknown> = {}
  const filter: Record<string, unknown> = {}
  for (const f of FIELDS) {
    if (!rng.chance(0.4)) continue
    if (rng.chance(0.25)) {
      filter[f] = value(rng, f, 0.3, false)
      continue
    }
    const ops: Record<string, unknown> = {}
    for (let i = 0; i < 1 + rng.int(2); i++) {
      if (f === 's' && rng.chance(0.3)) {
        ops.$contains = rng.pick(needles)
        continue
      }
      const op = rng.pick(OPERATORS)
      ops[op] = op === '$in' || op === '$nin'
        ? Array.from({ length: 1 + rng.int(3) }, () => value(rng, f, 0.2, false))
        : value(rng, f, 0.25, false)
    }
    filter[f] = ops
  }
  if (Object.keys(filter).length > 0) args.filter = filter
  if (rng.chance(0.3)) args.search = rng.pick(needles)
  return args
}

function show (value: unknown): string {
  return JSON.stringify(value, (_k, v) => typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v) ? `date:${v}` : v)
}

async function seedRows (orm: MikroORM, rng: Rng): Promise<Row[]> {
  const em = orm.em.fork()
  for (let i = 0; i < ROWS; i++) {
    em.create(Cell, {
      n: value(rng, 'n', 0.2, false) as number | null,
      s: value(rng, 's', 0.2, false) as string | null,
      b: value(rng, 'b', 0.25, false) as boolean | null,
      d: value(rng, 'd', 0.2, true) as Date | null,
      secret: rng.chance(0.5) ? 'x' : null
    } as never)
  }
  await em.flush()
  const reader = new RowReader(orm.getMetadata().get(Cell) as EntityMetadata)
  const all = await orm.em.fork().find(Cell, {}, { orderBy: { id: 'asc' } })
  return all.map((c) => reader.read(c as unknown as Record<string, unknown>))
}

async function ids (orm: MikroORM, where: unknown): Promise<number[]> {
  const found = await orm.em.fork().find(Cell, where as never, { fields: ['id'], orderBy: { id: 'asc' } })
  return found.map((c) => c.id)
}

t.test('scopes: compileCondition admits exactly the rows the database returns', async (t) => {
  const orm = await initOrm(t, [Cell])
  const rng = new Rng(seed)
  const rows = await seedRows(orm, rng)
  const meta = orm.getMetadata().get(Cell) as EntityMetadata
  let failures = 0
  for (let i = 0; i < SCOPES && failures < 5; i++) {
    const cond = condition(rng, 3)
    const text = show(cond)
    const predicate = compileCondition(meta, cond, emptyConditionsOf(orm, Cell))
    if (predicate === undefined) {
      failures++
      t.fail(`not compiled: ${text}`)
      continue
    }
    let expected: number[]
    try {
      expected = await ids(orm, cond)
    } catch (err) {
      // A shape MikroORM itself cannot turn into SQL is no scope a route could have.
      t.comment(`MikroORM refused ${text}: ${(err as Error).message.slice(0, 120)}`)
      continue
    }
    const actual = rows.filter(predicate).map((r) => r.id as number)
    if (show(actual) !== show(expected)) {
      failures++
      const extra = actual.filter((id) => !expected.includes(id)).slice(0, 3)
      const missing = expected.filter((id) => !actual.includes(id)).slice(0, 3)
      t.fail(`condition #${i} ${text}`, {
        admittedButNotInSql: extra.map((id) => rows.find((r) => r.id === id)),
        inSqlButNotAdmitted: missing.map((id) => rows.find((r) => r.id === id))
      })
    }
  }
  if (failures === 0) t.pass(`${SCOPES} conditions agree on ${ROWS} rows`)
})

async function differentialFilters (t: Test, needles: string[], offset: number): Promise<void> {
  const orm = await initOrm(t, [Cell])
  const rng = new Rng(seed + offset)
  const rows = await seedRows(orm, rng)
  const rules = new QueryRules(orm.getMetadata().get(Cell) as EntityMetadata, orm.em.getPlatform(), {
    filterFields: ['n', 's', 'b', 'd'],
    searchFields: ['s']
  })
  let failures = 0
  let checked = 0
  for (let i = 0; i < FILTERS && failures < 5; i++) {
    const args = clientArgs(rng, needles)
    let query
    try {
      query = rules.parse(args)
    } catch {
      continue
    }
    checked++
    const expected = await ids(orm, query.where() ?? {})
    const actual = rows.filter(query.matches).map((r) => r.id as number)
    if (show(actual) !== show(expected)) {
      failures++
      const extra = actual.filter((id) => !expected.includes(id)).slice(0, 3)
      const missing = expected.filter((id) => !actual.includes(id)).slice(0, 3)
      t.fail(`args #${i} ${show(args)}`, {
        admittedButNotInSql: extra.map((id) => rows.find((r) => r.id === id)),
        inSqlButNotAdmitted: missing.map((id) => rows.find((r) => r.id === id))
      })
    }
  }
  if (failures === 0) t.pass(`${checked} client filters agree on ${ROWS} rows`)
}

t.test('client filters and search: ListQuery.matches admits exactly the rows the list query returns', async (t) => {
  await differentialFilters(t, NEEDLES, 1)
})

t.test('client $contains / search with non-ASCII case differences (SQLite\'s lower() folds ASCII only, PostgreSQL\'s all)', async (t) => {
  await differentialFilters(t, [...NEEDLES, ...UNICODE_NEEDLES], 2)
})

t.test('three-valued logic: NOT, $ne and $nin exclude NULL as SQL does', async (t) => {
  const orm = await initOrm(t, [Cell])
  const em = orm.em.fork()
  em.create(Cell, { s: 'secret' } as never)
  em.create(Cell, { s: 'open' } as never)
  em.create(Cell, { s: null } as never)
  await em.flush()
  const meta = orm.getMetadata().get(Cell) as EntityMetadata
  const rows = (await orm.em.fork().find(Cell, {}, { orderBy: { id: 'asc' } })).map((c) => new RowReader(meta).read(c as unknown as Record<string, unknown>))
  const cases: Array<[Record<string, unknown>, string[]]> = [
    [{ $not: { s: 'secret' } }, ['open']],
    [{ s: { $ne: 'secret' } }, ['open']],
    [{ s: { $nin: ['secret', null] } }, []],
    [{ s: { $in: ['secret', null] } }, ['secret']],
    [{ s: { $ne: null } }, ['secret', 'open']],
    [{ $not: { s: null } }, ['secret', 'open']],
    [{ $not: { $or: [{ s: 'secret' }, { n: 1 }] } }, []],
    // Nothing to match: every row on MikroORM 6, which drops both; none on MikroORM 7 (`1 = 0`).
    [{ $or: [] }, emptyConditionsOf(orm, Cell).emptyOrIsFalse ? [] : ['secret', 'open', null as unknown as string]],
    [{ $not: {} }, emptyConditionsOf(orm, Cell).notOfNothingIsFalse ? [] : ['secret', 'open', null as unknown as string]],
    [{ $not: { $or: [] } }, ['secret', 'open', null as unknown as string]]
  ]
  for (const [cond, expected] of cases) {
    const predicate = compileCondition(meta, cond, emptyConditionsOf(orm, Cell))
    t.strictSame(rows.filter(predicate ?? (() => false)).map((r) => r.s), expected, `matcher: ${JSON.stringify(cond)}`)
    t.strictSame((await orm.em.fork().find(Cell, cond as never, { orderBy: { id: 'asc' } })).map((c) => c.s), expected, `database: ${JSON.stringify(cond)}`)
  }
})

t.test('a condition on a property snapshots do not carry is never decided in memory', async (t) => {
  const orm = await initOrm(t, [Cell])
  const meta = orm.getMetadata().get(Cell) as EntityMetadata
  const em = orm.em.fork()
  const cell = em.create(Cell, { n: 1, s: 'a', b: true, d: new Date(0), secret: 'x' })
  await em.flush()
  const row = new RowReader(meta).read(cell as unknown as Record<string, unknown>)
  // Exactly the properties the snapshot carries can be named: the matcher and RowReader agree.
  for (const prop of meta.props) {
    const result = analyzeCondition(meta, { [prop.name]: null }, emptyConditionsOf(orm, Cell))
    t.equal('predicate' in result, prop.name in row, `${prop.name}: decidable iff in the snapshot`)
  }
  t.strictSame(analyzeCondition(meta, { secret: { $ne: 'x' } }, emptyConditionsOf(orm, Cell)), { reason: 'property', property: 'secret' })
  t.strictSame(analyzeCondition(meta, { $or: [{ n: 1 }, { $not: { secret: null } }] }, emptyConditionsOf(orm, Cell)), { reason: 'property', property: 'secret' })
  t.strictSame(analyzeCondition(meta, { s: { $like: 'a%' }, secret: null }, emptyConditionsOf(orm, Cell)), { reason: 'property', property: 'secret' },
    'the property is reported even next to something else undecidable')
  t.equal(compileCondition(meta, { secret: { $ne: 'x' } }, emptyConditionsOf(orm, Cell)), undefined)
})

// ------------------------------------------------------------------ the hidden soft-delete flag, end to end

const Note = defineEntity({
  name: 'Note',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    deleted: p.boolean().default(false).hidden()
  })
})

// `$ne` on the missing flag used to drop every event; `$not` admitted soft-deleted rows (NOT of a failed comparison).
for (const scope of [{ deleted: { $ne: true } }, { $not: { deleted: true } }]) {
  t.test(`a scope on a hidden property refuses live updates instead of failing open: ${JSON.stringify(scope)}`, async (t) => {
    const { orm, base } = await startApp(t, [Note], (app) => {
      app.wsRest.route('/notes/', {
        entity: Note,
        schema: { response: Type.Object({ id: Type.Integer(), name: Type.String() }) },
        getQueryset: () => scope as never,
        actions: [mixins.list(), mixins.retrieve(), mixins.subscribeList(), mixins.subscribeInstance()]
      })
    })
    const em = orm.em.fork()
    const live = em.create(Note, { name: 'live' })
    em.create(Note, { name: 'gone', deleted: true })
    await em.flush()
    const client = await openClient(t, `${base}/notes/`)
    t.strictSame((await client.request('list')).data.map((n: { name: string }) => n.name), ['live'], 'list hides the soft-deleted row')
    const refused = { response_status: 400, errors: [{ non_field_errors: ['Live updates are not available for this route\'s scope.'] }] }
    const list = await client.ask({ action: 'subscribe_list', request_id: 'l' })
    t.strictSame({ response_status: list.response_status, errors: list.errors }, refused, 'subscribe_list is refused')
    const instance = await client.ask({ action: 'subscribe_instance', request_id: 'i', pk: live.id })
    t.strictSame({ response_status: instance.response_status, errors: instance.errors }, refused, 'subscribe_instance is refused')
    // Nothing was subscribed: a soft delete and a new soft-deleted row send no event.
    const em2 = orm.em.fork()
    const again = await em2.findOneOrFail(Note, live.id)
    again.deleted = true
    em2.create(Note, { name: 'also gone', deleted: true })
    await em2.flush()
    t.strictSame((await client.request('list')).data, [], 'the reply comes first: no event was sent')
  })
}
