/**
 * Reads without entities (lib/plain-reads.ts): where a reply shows only the row's own
 * columns, retrieve and list read plain rows instead of hydrating entities — and every
 * reply is exactly what the entity would have rendered, for each column type, on SQLite and
 * PostgreSQL, on both MikroORM majors. Where a plain row could differ (a getter in the
 * schema, an object permission that wants the entity, a MikroORM filter) entities are read
 * as before. Hydration is observed through the entity's `onInit` hook, which MikroORM runs
 * for every entity it creates.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { action, mixins, type Permission, type RouteOptions } from '../index.js'
import { metadataOf } from '../lib/orm-compat.js'
import { openClient, type TestClient } from './helpers/client.js'
import { startApp, type Running } from './helpers/server.js'

let hydrated = 0

const Owner = defineEntity({
  name: 'PlainOwner',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string()
  })
})

const Thing = defineEntity({
  name: 'Thing',
  hooks: { onInit: [() => { hydrated++ }] },
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string(),
    body: p.text(),
    score: p.float(),
    count: p.integer(),
    done: p.boolean(),
    note: p.string().nullable(),
    archived: p.boolean().default(false),
    at: p.datetime().length(3),
    owner: () => p.manyToOne(Owner).nullable()
  })
})
type Thing = InferEntity<typeof Thing>

const ThingPublic = Type.Object({
  id: Type.Integer(),
  title: Type.String(),
  body: Type.String(),
  score: Type.Number(),
  count: Type.Integer(),
  done: Type.Boolean(),
  note: Type.Union([Type.String(), Type.Null()]),
  at: Type.String({ format: 'date-time' }),
  owner: Type.Union([Type.Integer(), Type.Null()])
})

/** The same rows rendered from entities, through the route's own serializer: what every plain reply must equal. */
const rendered = action('rendered', async (ctx) => {
  const things = await ctx.em.find(Thing, {}, { orderBy: { id: 'asc' } })
  return { data: await ctx.model!.render(ctx, things) }
})

async function startThings (t: Test, extra: Partial<RouteOptions<Thing>> = {}): Promise<Running & { client: TestClient }> {
  const running = await startApp(t, [Owner, Thing], (app) => {
    app.wsRest.route('/things/', {
      entity: Thing,
      schema: { response: ThingPublic },
      filterFields: ['title', 'done', 'owner'],
      orderingFields: ['id', 'score'],
      actions: [mixins.retrieve(), mixins.paginatedList({ defaultLimit: 3 }), rendered],
      ...extra
    })
    app.wsRest.route('/all-things/', { entity: Thing, schema: { response: ThingPublic }, actions: [mixins.list()] })
  })
  const em = running.orm.em.fork()
  const owner = em.create(Owner, { name: 'o' })
  for (let i = 0; i < 5; i++) {
    em.create(Thing, {
      title: `t${i} "quoted" ü`,
      body: 'x'.repeat(i * 10),
      score: i + 0.25,
      count: i * 1000,
      done: i % 2 === 0,
      note: i === 1 ? null : `n${i}`,
      at: new Date(Date.UTC(2026, 0, i + 1, 12, 30, 15, 123)),
      owner: i === 2 ? null : owner
    })
  }
  await em.flush()
  hydrated = 0
  return { ...running, client: await openClient(t, `${running.base}/things/`) }
}

t.test('retrieve and list replies read plain rows, and equal what the entities render', async (t) => {
  const { base, client } = await startThings(t)
  const expected = (await client.request('rendered')).data as Array<{ id: number }>
  t.equal(expected.length, 5)
  hydrated = 0

  for (const row of expected) {
    const reply = await client.request('retrieve', { pk: row.id })
    t.strictSame([reply.response_status, reply.data], [200, row], `retrieve ${row.id}`)
  }
  const page = await client.request('list', { offset: 1 })
  t.strictSame(page.data, { count: 5, limit: 3, offset: 1, results: expected.slice(1, 4) })
  const filtered = await client.request('list', { filter: { done: true }, ordering: ['-score'] })
  t.strictSame(filtered.data.results, expected.filter((_, i) => i % 2 === 0).reverse())
  const all = await openClient(t, `${base}/all-things/`)
  t.strictSame((await all.request('list')).data, expected, 'a whole list')
  t.equal(hydrated, 0, 'no entity was hydrated for these replies')
  t.equal((await client.request('retrieve', { pk: 999 })).response_status, 404)
})

t.test('a getter in the response schema: entities are read, and the getter is in the reply', async (t) => {
  const WithGetter = Type.Object({ id: Type.Integer(), title: Type.String(), label: Type.String() })
  const { client } = await startThings(t, {
    schema: { response: WithGetter },
    fields: { label: { get: (thing: Thing) => `#${thing.id} ${thing.title}` } }
  })
  const reply = await client.request('retrieve', { pk: 1 })
  t.strictSame(reply.data, { id: 1, title: 't0 "quoted" ü', label: '#1 t0 "quoted" ü' })
  t.ok(hydrated > 0, 'the entity was hydrated')
})

t.test('an object permission gets the entity: entities are read for it', async (t) => {
  const seen: unknown[] = []
  const onlyDone: Permission = {
    hasObjectPermission (_ctx, _action, object) {
      seen.push(object)
      return object.done === true
    }
  }
  const { orm, client } = await startThings(t, { permissions: [onlyDone] })
  t.strictSame((await client.request('retrieve', { pk: 1 })).response_status, 200)
  t.strictSame((await client.request('retrieve', { pk: 2 })).response_status, 403)
  const thing = metadataOf(orm.getMetadata(), 'Thing')!.class as unknown as abstract new () => unknown
  t.ok(seen.every((object) => object instanceof thing), 'the permission got entities')
  t.equal(seen.length, 2)
})

t.test('an entity with a MikroORM filter enabled by default is read through em.find, which applies it', async (t) => {
  const Filtered = defineEntity({
    name: 'Filtered',
    filters: { live: { name: 'live', cond: { archived: false }, default: true } },
    properties: (p) => ({
      id: p.integer().primary().autoincrement(),
      title: p.string(),
      archived: p.boolean().default(false)
    })
  })
  const FilteredPublic = Type.Object({ id: Type.Integer(), title: Type.String() })
  const running = await startApp(t, [Filtered], (app) => {
    app.wsRest.route('/filtered/', { entity: Filtered, schema: { response: FilteredPublic }, actions: [mixins.retrieve(), mixins.list()] })
  })
  const em = running.orm.em.fork()
  em.create(Filtered, { title: 'live' })
  em.create(Filtered, { title: 'gone', archived: true })
  await em.flush()
  const client = await openClient(t, `${running.base}/filtered/`)
  t.strictSame((await client.request('list')).data, [{ id: 1, title: 'live' }], 'the archived row stays filtered out')
  t.equal((await client.request('retrieve', { pk: 2 })).response_status, 404)
})
