/**
 * The action mixins (create, list, retrieve, update, patch, delete): each alone on its
 * own route and all together, over a real socket to a bare app on in-memory SQLite.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type RouteOptions } from '../index.js'
import { connect, openClient, type TestClient, type WireReply } from './helpers/client.js'
import { startApp } from './helpers/server.js'
import { Item, itemModel, seedItems } from './helpers/item.js'

/** A value stored on every row that no reply may ever carry. */
const SECRET = 'TOP-SECRET-VALUE'

const Note = defineEntity({
  name: 'Note',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string().unique(),
    body: p.string().default(''),
    secret: p.string().default(SECRET),
    owner: p.string().default('alice'),
    deleted: p.boolean().default(false),
    revision: p.integer().default(0)
  })
})
type Note = InferEntity<typeof Note>

const NoteInput = Type.Object({ title: Type.String({ minLength: 1 }), body: Type.String() })
/** The public shape: no secret, owner, deleted or revision. */
const NotePublic = Type.Object({ id: Type.Integer(), title: Type.String(), body: Type.String() })
const NOTE_SCHEMA = { create: NoteInput, update: NoteInput, response: NotePublic }

const ACTIONS = ['create', 'list', 'retrieve', 'update', 'patch', 'delete'] as const
type ActionName = typeof ACTIONS[number]

/** Every row as stored, ordered by id (read through a fresh fork, never the app's identity map). */
async function rows (orm: MikroORM): Promise<Note[]> {
  return await orm.em.fork().find(Note, {}, { orderBy: { id: 'asc' } })
}

async function row (orm: MikroORM, id: number): Promise<Note | null> {
  return await orm.em.fork().findOne(Note, { id })
}

/** Insert rows directly, bypassing the plugin, so each test starts from a known table. */
async function seed (orm: MikroORM, notes: Array<Partial<Note> & { title: string }>): Promise<Note[]> {
  const em = orm.em.fork()
  const created = notes.map((n) => em.create(Note, { body: '', secret: SECRET, owner: 'alice', deleted: false, revision: 0, ...n }))
  await em.flush()
  return created
}

/** A bare app with one Note route per entry of `routes`; all replies are recorded so tests can check none leaks. */
async function start (
  t: Test,
  routes: Record<string, Omit<RouteOptions<Note>, 'entity'>>
): Promise<{ orm: MikroORM, open: (path: string) => Promise<TestClient>, seen: WireReply[] }> {
  const seen: WireReply[] = []
  const { orm, base } = await startApp(t, [Note], (app) => {
    for (const [path, options] of Object.entries(routes)) app.wsRest.route(path, { entity: Note, ...options })
  })
  const open = async (path: string): Promise<TestClient> => {
    const client = await connect(`${base}${path}`)
    t.teardown(() => client.close())
    client.socket.on('message', (data) => seen.push(JSON.parse(data.toString()) as WireReply))
    return client
  }
  return { orm, open, seen }
}

/** The secret column never reaches the wire, under any key. */
function assertNoSecret (t: Test, seen: WireReply[]): void {
  t.ok(seen.length > 0, 'replies were recorded')
  const leaked = seen.filter((r) => JSON.stringify(r).includes(SECRET) || JSON.stringify(r).includes('"secret"'))
  t.strictSame(leaked, [], 'no reply carries the secret field or value')
}

/** Arguments valid for any action, so a 405 can only come from the action's absence. */
const ANY_ARGS = { pk: 1, data: { title: 'from-405-probe', body: 'b' } }

/** Every action but `own` is refused with DCRF's 405 and changes nothing. */
async function assertOnly (t: Test, client: TestClient, orm: MikroORM, own: ActionName): Promise<void> {
  const before = await rows(orm)
  for (const action of ACTIONS) {
    if (action === own) continue
    const reply = await client.request(action, ANY_ARGS)
    t.strictSame(
      { errors: reply.errors, data: reply.data, action: reply.action, status: reply.response_status },
      { errors: [`Method "${action}" not allowed.`], data: null, action, status: 405 },
      `${own}-only route refuses ${action}`
    )
  }
  t.strictSame(await rows(orm), before, 'refused actions wrote nothing')
}

t.test('create alone: 201 with the created object, other actions 405', async (t) => {
  const { orm, open, seen } = await start(t, { '/notes/': { schema: { create: NoteInput, response: NotePublic }, actions: [mixins.create()] } })
  const client = await open('/notes/')

  const reply = await client.request('create', { data: { title: 'first', body: 'hello' } })
  t.equal(reply.response_status, 201)
  t.strictSame(reply.errors, [])
  t.equal(reply.action, 'create')
  t.strictSame(reply.data, { id: 1, title: 'first', body: 'hello' }, 'exactly the response schema fields')
  const stored = await row(orm, 1)
  t.equal(stored?.title, 'first')
  t.equal(stored?.secret, SECRET, 'the row does have a secret, which the reply left out')

  // Invalid data: every failing field at once, nothing written.
  const bad = await client.request('create', { data: { body: 5 } })
  t.equal(bad.response_status, 400)
  t.strictSame(bad.errors, [{ title: ['This field is required.'], body: ['Not a valid string.'] }])
  t.equal(bad.data, null)
  const missing = await client.request('create', {})
  t.strictSame([missing.response_status, missing.errors], [400, [{ data: ['This field is required.'] }]])
  t.equal((await rows(orm)).length, 1, 'failed creates wrote nothing')

  await assertOnly(t, client, orm, 'create')
  assertNoSecret(t, seen)
})

t.test('list alone: every object ordered by id, other actions 405', async (t) => {
  const { orm, open, seen } = await start(t, { '/notes/': { schema: { response: NotePublic }, actions: [mixins.list()] } })
  await seed(orm, [{ title: 'a', body: '1' }, { title: 'b', body: '2' }, { title: 'c', body: '3' }])
  const client = await open('/notes/')

  const reply = await client.request('list')
  t.strictSame(
    { status: reply.response_status, errors: reply.errors, action: reply.action },
    { status: 200, errors: [], action: 'list' }
  )
  t.strictSame(reply.data, [
    { id: 1, title: 'a', body: '1' },
    { id: 2, title: 'b', body: '2' },
    { id: 3, title: 'c', body: '3' }
  ])

  await assertOnly(t, client, orm, 'list')
  assertNoSecret(t, seen)
})

t.test('retrieve alone: pk as number or numeric string, 404, missing pk, other actions 405', async (t) => {
  const { orm, open, seen } = await start(t, { '/notes/': { schema: { response: NotePublic }, actions: [mixins.retrieve()] } })
  await seed(orm, [{ title: 'a', body: '1' }, { title: 'b', body: '2' }])
  const client = await open('/notes/')

  const byNumber = await client.request('retrieve', { pk: 2 })
  t.strictSame(
    { status: byNumber.response_status, errors: byNumber.errors, action: byNumber.action, data: byNumber.data },
    { status: 200, errors: [], action: 'retrieve', data: { id: 2, title: 'b', body: '2' } }
  )
  const byString = await client.request('retrieve', { pk: '2' })
  t.strictSame(byString.data, { id: 2, title: 'b', body: '2' }, 'a numeric string pk finds the same row')

  for (const pk of [99, '99', 'abc', { $gt: 0 }, [1], 1.5, true]) {
    const reply = await client.request('retrieve', { pk })
    t.strictSame([reply.response_status, reply.errors, reply.data], [404, ['Not found'], null], `pk ${JSON.stringify(pk)} → 404`)
  }
  for (const args of [{}, { pk: null }]) {
    const reply = await client.request('retrieve', args)
    t.strictSame([reply.response_status, reply.errors, reply.data], [400, [{ pk: ['This field is required.'] }], null], `${JSON.stringify(args)} → 400 keyed pk`)
  }

  await assertOnly(t, client, orm, 'retrieve')
  assertNoSecret(t, seen)
})

t.test('update alone: whole object required, unknown fields stripped, other actions 405', async (t) => {
  const { orm, open, seen } = await start(t, { '/notes/': { schema: { update: NoteInput, response: NotePublic }, actions: [mixins.update()] } })
  await seed(orm, [{ title: 'a', body: '1' }, { title: 'b', body: '2' }])
  const client = await open('/notes/')

  const reply = await client.request('update', {
    pk: 1,
    // id, secret, owner, deleted and revision are on the entity but not in the update schema.
    data: { title: 'a2', body: 'new', id: 50, secret: 'leak', owner: 'mallory', deleted: true, revision: 9 }
  })
  t.strictSame(
    { status: reply.response_status, errors: reply.errors, action: reply.action, data: reply.data },
    { status: 200, errors: [], action: 'update', data: { id: 1, title: 'a2', body: 'new' } }
  )
  const stored = await row(orm, 1)
  t.strictSame(
    { title: stored?.title, body: stored?.body, secret: stored?.secret, owner: stored?.owner, deleted: stored?.deleted, revision: stored?.revision },
    { title: 'a2', body: 'new', secret: SECRET, owner: 'alice', deleted: false, revision: 0 },
    'declared fields written, undeclared ones not'
  )
  t.equal(await row(orm, 50), null, 'the id in data was not applied')

  // A subset is not enough for update.
  const partial = await client.request('update', { pk: 1, data: { title: 'only-title' } })
  t.strictSame([partial.response_status, partial.errors, partial.data], [400, [{ body: ['This field is required.'] }], null])
  const empty = await client.request('update', { pk: 1, data: {} })
  t.strictSame(empty.errors, [{ title: ['This field is required.'], body: ['This field is required.'] }])
  const noData = await client.request('update', { pk: 1 })
  t.strictSame([noData.response_status, noData.errors], [400, [{ data: ['This field is required.'] }]])
  const notObject = await client.request('update', { pk: 1, data: 'text' })
  t.strictSame(notObject.errors, [{ non_field_errors: ['Invalid data. Expected a dictionary, but got str.'] }])
  t.equal((await row(orm, 1))?.title, 'a2', 'rejected updates changed nothing')

  const byString = await client.request('update', { pk: '2', data: { title: 'b2', body: '22' } })
  t.strictSame(byString.data, { id: 2, title: 'b2', body: '22' }, 'numeric string pk')
  const notFound = await client.request('update', { pk: 3, data: { title: 'c', body: '3' } })
  t.strictSame([notFound.response_status, notFound.errors, notFound.data], [404, ['Not found'], null])
  const noPk = await client.request('update', { data: { title: 'c', body: '3' } })
  t.strictSame([noPk.response_status, noPk.errors], [400, [{ pk: ['This field is required.'] }]])
  t.equal((await rows(orm)).length, 2, 'update never creates')

  await assertOnly(t, client, orm, 'update')
  assertNoSecret(t, seen)
})

t.test('patch alone: any subset, unknown fields stripped, other actions 405', async (t) => {
  const { orm, open, seen } = await start(t, { '/notes/': { schema: { update: NoteInput, response: NotePublic }, actions: [mixins.patch()] } })
  await seed(orm, [{ title: 'a', body: '1' }])
  const client = await open('/notes/')

  const bodyOnly = await client.request('patch', { pk: 1, data: { body: 'changed', secret: 'leak', owner: 'mallory' } })
  t.strictSame(
    { status: bodyOnly.response_status, errors: bodyOnly.errors, action: bodyOnly.action, data: bodyOnly.data },
    { status: 200, errors: [], action: 'patch', data: { id: 1, title: 'a', body: 'changed' } }
  )
  const titleOnly = await client.request('patch', { pk: '1', data: { title: 'a2' } })
  t.strictSame(titleOnly.data, { id: 1, title: 'a2', body: 'changed' }, 'the body kept from the previous patch')
  const nothing = await client.request('patch', { pk: 1, data: {} })
  t.strictSame([nothing.response_status, nothing.data], [200, { id: 1, title: 'a2', body: 'changed' }], 'an empty subset is valid')

  const stored = await row(orm, 1)
  t.strictSame(
    { title: stored?.title, body: stored?.body, secret: stored?.secret, owner: stored?.owner },
    { title: 'a2', body: 'changed', secret: SECRET, owner: 'alice' },
    'patched fields written, undeclared ones not'
  )

  // A present field is still validated.
  const blank = await client.request('patch', { pk: 1, data: { title: '' } })
  t.strictSame([blank.response_status, blank.errors], [400, [{ title: ['This field may not be blank.'] }]])
  const noData = await client.request('patch', { pk: 1 })
  t.strictSame([noData.response_status, noData.errors], [400, [{ data: ['This field is required.'] }]])
  const notFound = await client.request('patch', { pk: 2, data: { body: 'x' } })
  t.strictSame([notFound.response_status, notFound.errors], [404, ['Not found']])
  t.equal((await row(orm, 1))?.title, 'a2', 'rejected patches changed nothing')

  await assertOnly(t, client, orm, 'patch')
  assertNoSecret(t, seen)
})

t.test('delete alone: 204 with data null, row gone, other actions 405', async (t) => {
  const { orm, open } = await start(t, { '/notes/': { schema: { response: NotePublic }, actions: [mixins.delete()] } })
  await seed(orm, [{ title: 'a' }, { title: 'b' }, { title: 'c' }])
  const client = await open('/notes/')

  const reply = await client.request('delete', { pk: 1 })
  t.strictSame(
    { status: reply.response_status, errors: reply.errors, action: reply.action, data: reply.data },
    { status: 204, errors: [], action: 'delete', data: null }
  )
  t.equal(await row(orm, 1), null, 'the row is gone')
  const byString = await client.request('delete', { pk: '2' })
  t.equal(byString.response_status, 204, 'numeric string pk')
  t.equal(await row(orm, 2), null)

  const again = await client.request('delete', { pk: 1 })
  t.strictSame([again.response_status, again.errors, again.data], [404, ['Not found'], null], 'deleting twice → 404')
  const noPk = await client.request('delete')
  t.strictSame([noPk.response_status, noPk.errors], [400, [{ pk: ['This field is required.'] }]])
  t.strictSame((await rows(orm)).map((n) => n.title), ['c'], 'only the named rows were deleted')

  // Also exported as mixins.destroy (delete is a reserved word elsewhere).
  t.equal(mixins.destroy, mixins.delete)
  await assertOnly(t, client, orm, 'delete')
})

t.test('all six mixins on one route: a full life cycle, the secret never sent', async (t) => {
  const { orm, open, seen } = await start(t, {
    '/notes/': {
      schema: NOTE_SCHEMA,
      actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete()]
    }
  })
  const client = await open('/notes/')

  const a = await client.request('create', { data: { title: 'a', body: '1', secret: 'client-secret' } })
  const b = await client.request('create', { data: { title: 'b', body: '2' } })
  t.strictSame([a.response_status, a.data, b.response_status, b.data], [201, { id: 1, title: 'a', body: '1' }, 201, { id: 2, title: 'b', body: '2' }])
  t.equal((await row(orm, 1))?.secret, SECRET, 'a secret sent in create data was not written')

  t.strictSame((await client.request('list')).data, [a.data, b.data])
  t.strictSame((await client.request('retrieve', { pk: 1 })).data, a.data)
  t.strictSame((await client.request('update', { pk: 1, data: { title: 'a2', body: '1b' } })).data, { id: 1, title: 'a2', body: '1b' })
  t.strictSame((await client.request('patch', { pk: 2, data: { body: '2b' } })).data, { id: 2, title: 'b', body: '2b' })
  t.strictSame((await client.request('retrieve', { pk: 2 })).data, { id: 2, title: 'b', body: '2b' }, 'the patch persisted')
  const del = await client.request('delete', { pk: 1 })
  t.strictSame([del.response_status, del.data], [204, null])
  t.strictSame((await client.request('list')).data, [{ id: 2, title: 'b', body: '2b' }])
  t.equal((await client.request('retrieve', { pk: 1 })).response_status, 404)
  const unknown = await client.request('destroy', { pk: 2 })
  t.strictSame([unknown.response_status, unknown.errors], [405, ['Method "destroy" not allowed.']], 'only the six DCRF names exist')

  t.strictSame((await rows(orm)).map((n) => [n.id, n.title, n.body]), [[2, 'b', '2b']])
  assertNoSecret(t, seen)
})

t.test('unique violations are a 400 keyed by the field, on create, update and patch', async (t) => {
  const { orm, open } = await start(t, {
    '/notes/': { schema: NOTE_SCHEMA, actions: [mixins.create(), mixins.update(), mixins.patch()] }
  })
  await seed(orm, [{ title: 'taken', body: '1' }, { title: 'other', body: '2' }])
  const client = await open('/notes/')
  const expected = [400, [{ title: ['note with this title already exists.'] }], null]

  const create = await client.request('create', { data: { title: 'taken', body: 'x' } })
  t.strictSame([create.response_status, create.errors, create.data], expected, 'create')
  const update = await client.request('update', { pk: 2, data: { title: 'taken', body: 'x' } })
  t.strictSame([update.response_status, update.errors, update.data], expected, 'update')
  const patch = await client.request('patch', { pk: 2, data: { title: 'taken' } })
  t.strictSame([patch.response_status, patch.errors, patch.data], expected, 'patch')

  t.strictSame((await rows(orm)).map((n) => [n.id, n.title, n.body]), [[1, 'taken', '1'], [2, 'other', '2']], 'nothing written')
  // A row keeping its own value is no violation.
  const own = await client.request('update', { pk: 1, data: { title: 'taken', body: '1b' } })
  t.strictSame([own.response_status, own.data], [200, { id: 1, title: 'taken', body: '1b' }])
  // The failed transactions left the socket usable.
  const ok = await client.request('patch', { pk: 2, data: { title: 'free' } })
  t.strictSame([ok.response_status, ok.data], [200, { id: 2, title: 'free', body: '2' }])
})

t.test('lookupField: detail actions find objects by another property, the argument named after it', async (t) => {
  const { orm, open } = await start(t, {
    '/by-title/': {
      schema: NOTE_SCHEMA,
      lookupField: 'title',
      actions: [mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete()]
    },
    // lookupArg renames the message argument.
    '/by-slug/': { schema: NOTE_SCHEMA, lookupField: 'title', lookupArg: 'slug', actions: [mixins.retrieve()] }
  })
  await seed(orm, [{ title: 'alpha', body: '1' }, { title: 'beta', body: '2' }, { title: '7', body: '3' }])
  const client = await open('/by-title/')

  t.strictSame((await client.request('retrieve', { title: 'beta' })).data, { id: 2, title: 'beta', body: '2' })
  t.strictSame((await client.request('retrieve', { title: 7 })).data, { id: 3, title: '7', body: '3' }, 'a number is looked up as its string')
  const byPk = await client.request('retrieve', { pk: 1 })
  t.strictSame([byPk.response_status, byPk.errors], [400, [{ title: ['This field is required.'] }]], 'pk is not the lookup argument here')
  const missing = await client.request('retrieve', { title: 'gamma' })
  t.strictSame([missing.response_status, missing.errors], [404, ['Not found']])
  const operator = await client.request('retrieve', { title: { $like: '%' } })
  t.strictSame([operator.response_status, operator.errors], [404, ['Not found']], 'an operator object never reaches the ORM')

  t.strictSame((await client.request('patch', { title: 'alpha', data: { body: 'patched' } })).data, { id: 1, title: 'alpha', body: 'patched' })
  t.strictSame((await client.request('update', { title: 'alpha', data: { title: 'alpha2', body: 'updated' } })).data, { id: 1, title: 'alpha2', body: 'updated' })
  t.equal((await client.request('retrieve', { title: 'alpha' })).response_status, 404, 'the old title no longer finds it')
  t.equal((await client.request('delete', { title: 'beta' })).response_status, 204)
  t.strictSame((await rows(orm)).map((n) => n.title), ['alpha2', '7'])

  const slug = await open('/by-slug/')
  t.strictSame((await slug.request('retrieve', { slug: 'alpha2' })).data, { id: 1, title: 'alpha2', body: 'updated' })
  const noSlug = await slug.request('retrieve', { title: 'alpha2' })
  t.strictSame([noSlug.response_status, noSlug.errors], [400, [{ slug: ['This field is required.'] }]])
})

t.test('getQueryset scopes every action to what the connection may see', async (t) => {
  const { orm, open } = await start(t, {
    '/notes/': {
      schema: NOTE_SCHEMA,
      // Each connection sees only the notes of the owner named in its URL.
      getQueryset: (ctx) => ({ owner: (ctx.request.query as { owner?: string }).owner ?? '' }),
      actions: [mixins.list(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete()]
    }
  })
  await seed(orm, [
    { title: 'a1', owner: 'alice' }, { title: 'b1', owner: 'bob' }, { title: 'a2', owner: 'alice' }, { title: 'b2', owner: 'bob' }
  ])
  const alice = await open('/notes/?owner=alice')
  const bob = await open('/notes/?owner=bob')

  t.strictSame((await alice.request('list')).data.map((n: { title: string }) => n.title), ['a1', 'a2'])
  t.strictSame((await bob.request('list')).data.map((n: { title: string }) => n.title), ['b1', 'b2'])
  t.equal((await alice.request('retrieve', { pk: 1 })).response_status, 200)

  // Bob's row 1 exists but is outside alice's scope: 404, as if it did not exist, for every detail action.
  for (const [action, args] of [
    ['retrieve', {}], ['update', { data: { title: 'x', body: 'x' } }], ['patch', { data: { body: 'x' } }], ['delete', {}]
  ] as const) {
    const reply = await alice.request(action, { pk: 2, ...args })
    t.strictSame([reply.response_status, reply.errors, reply.data], [404, ['Not found'], null], `${action} outside the scope → 404`)
  }
  const untouched = await row(orm, 2)
  t.strictSame([untouched?.title, untouched?.body], ['b1', ''], "bob's row is unchanged and still there")

  const nobody = await open('/notes/')
  t.strictSame((await nobody.request('list')).data, [], 'an empty scope sees nothing')
})

t.test('performCreate, performUpdate and performDelete overrides are used (soft delete)', async (t) => {
  const calls: string[] = []
  const { orm, open } = await start(t, {
    '/notes/': {
      schema: NOTE_SCHEMA,
      // Soft-deleted rows are out of scope.
      getQueryset: () => ({ deleted: false }),
      performCreate: (ctx, data) => {
        calls.push('create')
        return ctx.em.create(Note, { ...(data as { title: string, body: string }), owner: (ctx.request.query as { owner: string }).owner })
      },
      performUpdate: (ctx, entity, data) => {
        calls.push('update')
        ctx.em.assign(entity, data)
        entity.revision += 1
      },
      performDelete: (_ctx, entity) => {
        calls.push('delete')
        entity.deleted = true
      },
      actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete()]
    }
  })
  const client = await open('/notes/?owner=carol')

  const created = await client.request('create', { data: { title: 'n', body: 'b' } })
  t.strictSame([created.response_status, created.data], [201, { id: 1, title: 'n', body: 'b' }])
  t.equal((await row(orm, 1))?.owner, 'carol', 'performCreate set the owner from the connection')

  t.strictSame((await client.request('update', { pk: 1, data: { title: 'n2', body: 'b2' } })).data, { id: 1, title: 'n2', body: 'b2' })
  t.strictSame((await client.request('patch', { pk: 1, data: { body: 'b3' } })).data, { id: 1, title: 'n2', body: 'b3' })
  t.equal((await row(orm, 1))?.revision, 2, 'performUpdate ran for update and for patch')

  const del = await client.request('delete', { pk: 1 })
  t.strictSame([del.response_status, del.data], [204, null])
  const kept = await row(orm, 1)
  t.strictSame([kept?.deleted, kept?.title], [true, 'n2'], 'soft delete: the row is still there, flagged')
  t.equal((await client.request('retrieve', { pk: 1 })).response_status, 404, 'a soft-deleted row is not found')
  t.strictSame((await client.request('list')).data, [], 'nor listed')
  t.equal((await client.request('delete', { pk: 1 })).response_status, 404, 'nor deleted twice')

  t.strictSame(calls, ['create', 'update', 'update', 'delete'])
})

t.test('a mixin response schema overrides the route one for that action only', async (t) => {
  const Brief = Type.Object({ id: Type.Integer(), title: Type.String() })
  const WithRevision = Type.Object({ id: Type.Integer(), revision: Type.Integer() })
  const { orm, open, seen } = await start(t, {
    '/notes/': {
      schema: NOTE_SCHEMA,
      actions: [
        mixins.create({ response: Brief }),
        mixins.list(),
        mixins.retrieve({ response: Brief }),
        mixins.update({ response: WithRevision }),
        mixins.patch()
      ]
    }
  })
  await seed(orm, [{ title: 'a', body: '1', revision: 4 }])
  const client = await open('/notes/')

  t.strictSame((await client.request('create', { data: { title: 'b', body: '2' } })).data, { id: 2, title: 'b' })
  t.strictSame((await client.request('retrieve', { pk: 1 })).data, { id: 1, title: 'a' })
  t.strictSame((await client.request('update', { pk: 1, data: { title: 'a', body: '1b' } })).data, { id: 1, revision: 4 })
  // The actions without their own schema keep the route's.
  t.strictSame((await client.request('patch', { pk: 2, data: { body: '2b' } })).data, { id: 2, title: 'b', body: '2b' })
  t.strictSame((await client.request('list')).data, [{ id: 1, title: 'a', body: '1b' }, { id: 2, title: 'b', body: '2b' }])
  assertNoSecret(t, seen)
})

t.test('a failed action rolls back everything it wrote, answers 500, and the socket keeps working', async (t) => {
  const { orm, open } = await start(t, {
    '/notes/': {
      schema: NOTE_SCHEMA,
      // Each perform* writes and flushes first, then fails: only a rollback can undo the write.
      performCreate: async (ctx, data) => {
        ctx.em.create(Note, data as { title: string, body: string })
        await ctx.em.flush()
        throw new Error('boom after create')
      },
      performUpdate: async (ctx, entity, data) => {
        ctx.em.assign(entity, data)
        await ctx.em.flush()
        throw new Error('boom after update')
      },
      performDelete: async (ctx, entity) => {
        ctx.em.remove(entity)
        await ctx.em.flush()
        throw new Error('boom after delete')
      },
      actions: [mixins.create(), mixins.list(), mixins.update(), mixins.patch(), mixins.delete()]
    }
  })
  await seed(orm, [{ title: 'a', body: '1' }])
  const client = await open('/notes/')
  const internal = [500, ['Internal server error'], null]

  const create = await client.request('create', { data: { title: 'ghost', body: 'x' } })
  t.strictSame([create.response_status, create.errors, create.data], internal, 'create: 500, no cause leaked')
  t.equal(await orm.em.fork().findOne(Note, { title: 'ghost' }), null, 'the flushed row was rolled back')

  const update = await client.request('update', { pk: 1, data: { title: 'changed', body: 'changed' } })
  t.strictSame([update.response_status, update.errors, update.data], internal, 'update: 500')
  const patch = await client.request('patch', { pk: 1, data: { body: 'changed' } })
  t.strictSame([patch.response_status, patch.errors, patch.data], internal, 'patch: 500')
  const del = await client.request('delete', { pk: 1 })
  t.strictSame([del.response_status, del.errors, del.data], internal, 'delete: 500')

  t.strictSame((await rows(orm)).map((n) => [n.id, n.title, n.body]), [[1, 'a', '1']], 'the table is exactly as before')
  const list = await client.request('list')
  t.strictSame([list.response_status, list.data], [200, [{ id: 1, title: 'a', body: '1' }]], 'the socket still answers')
})

t.test('a route is refused at registration when a mixin lacks its input schema', async (t) => {
  // Otherwise the route would register and fail only at message time, as a 500 on every write.
  const cases = [
    ['create', { response: NotePublic, update: NoteInput }, mixins.create()],
    ['update', { response: NotePublic, create: NoteInput }, mixins.update()],
    ['patch', { response: NotePublic, create: NoteInput }, mixins.patch()]
  ] as const
  for (const [name, schema, mixin] of cases) {
    await t.rejects(
      startApp(t, [Note], (app) => { app.wsRest.route('/notes/', { entity: Note, schema, actions: [mixin] }) }),
      { code: 'FST_WSREST_INVALID_OPTION' },
      `${name} without its input schema`
    )
  }
  // The schema each needs is enough.
  const { base } = await startApp(t, [Note], (app) => {
    app.wsRest.route('/notes/', { entity: Note, schema: { response: NotePublic, create: NoteInput, update: NoteInput }, actions: [mixins.create(), mixins.update(), mixins.patch()] })
  })
  const client = await connect(`${base}/notes/`)
  t.teardown(() => client.close())
  t.equal((await client.request('create', { data: { title: 'ok', body: '' } })).response_status, 201)
})

t.test('getQueryset(ctx, args) sees the message\'s arguments, as DCRF\'s get_queryset(**kwargs)', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      // `{"action": "list", "only": "bee"}`: a scope chosen by the message (validated here, as any input).
      getQueryset: (_ctx, args) => typeof args.only === 'string' ? { name: args.only } : undefined,
      actions: [mixins.list(), mixins.retrieve()]
    })
  })
  const [ant, bee] = await seedItems(orm, 'ant', 'bee')
  const client = await openClient(t, `${base}/items/`)
  t.strictSame((await client.request('list', { only: 'bee' })).data, [{ id: bee, name: 'bee' }])
  t.strictSame((await client.request('list')).data.map((i: { id: number }) => i.id), [ant, bee])
  t.equal((await client.request('retrieve', { pk: ant, only: 'bee' })).response_status, 404, 'detail actions are scoped by it too')
})
