/**
 * Relations in replies and events (docs/protocol.md → "Relations"): the response schema
 * is the whole output — a relation declared as a key is its key, declared as an object
 * the related object shaped by it, a to-many an array ordered by primary key — whatever
 * the EntityManager has loaded; computed and renamed fields; events equal to what
 * `retrieve` answers; many-to-many changes published; cascaded deletes and detached
 * many-to-many links published; and a bounded number of queries for any list length.
 */
import { Cascade, defineEntity, EntitySchema, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import t from 'tap'
import wsRest, { action, mixins, type RouteOptions } from '../index.js'
import type { Teardown } from './helpers/async.js'
import { openClient, type TestClient } from './helpers/client.js'
import { initOrm, spyQueries } from './helpers/database.js'
import { Author, Book, LIBRARY, Tag, seedLibrary } from './helpers/library.js'
import { startApp, type Running } from './helpers/server.js'

const AuthorPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const TagPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const BookNested = Type.Object({ id: Type.Integer(), title: Type.String(), author: AuthorPublic, tags: Type.Array(TagPublic) })
const BookKeys = Type.Object({ id: Type.Integer(), title: Type.String(), author: Type.Integer(), tags: Type.Array(Type.Integer()) })
const BookInput = Type.Object({
  title: Type.String({ minLength: 1 }),
  body: Type.Optional(Type.String()),
  author: Type.Integer(),
  tags: Type.Optional(Type.Array(Type.Integer()))
})

const crud = [
  mixins.create(), mixins.list(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete(),
  mixins.subscribeInstance(), mixins.subscribeList()
]

/** Books by `response`, plus authors and tags routes; the seed: Alice (1), Bob (2); tags red (1), green (2), blue (3). */
async function startLibrary (t: Teardown, response: typeof BookNested | typeof BookKeys, extra: Partial<RouteOptions> = {}): Promise<Running> {
  const running = await startApp(t, LIBRARY, (app) => {
    app.wsRest.route('/books/', {
      entity: Book,
      schema: { create: BookInput, update: BookInput, response },
      filterFields: ['id', 'author', 'tags', 'author.name'],
      ...extra,
      actions: [...crud, ...(extra.actions ?? [])]
    })
    app.wsRest.route('/authors/', {
      entity: Author,
      schema: { response: AuthorPublic },
      actions: [mixins.delete()]
    })
    app.wsRest.route('/tags/', {
      entity: Tag,
      schema: { response: TagPublic },
      actions: [mixins.delete()]
    })
  })
  await seedLibrary(running.orm, { authors: ['Alice', 'Bob'], tags: ['red', 'green', 'blue'], books: [] })
  return running
}

async function create (client: TestClient, data: Record<string, unknown>): Promise<any> {
  const reply = await client.request('create', { data })
  if (reply.response_status !== 201) throw new Error(`create failed: ${JSON.stringify(reply)}`)
  return reply.data
}

t.test('nested objects: exactly the declared shape, to-many ordered by key, in create, retrieve, list and update', async (t) => {
  const { base } = await startLibrary(t, BookNested)
  const client = await openClient(t, `${base}/books/`)
  const created = await create(client, { title: 'Dune', author: 1, tags: [3, 1] })
  const expected = { id: created.id, title: 'Dune', author: { id: 1, name: 'Alice' }, tags: [{ id: 1, name: 'red' }, { id: 3, name: 'blue' }] }
  t.strictSame(created, expected, 'create answers the nested shape: the author without email, the tags with names, by id')
  t.strictSame((await client.request('retrieve', { pk: created.id })).data, expected, 'retrieve alike')
  t.strictSame((await client.request('list')).data, [expected], 'list alike')
  const updated = await client.request('update', { pk: created.id, data: { title: 'Dune II', author: 2, tags: [2] } })
  t.strictSame(updated.data, { id: created.id, title: 'Dune II', author: { id: 2, name: 'Bob' }, tags: [{ id: 2, name: 'green' }] })
  const patched = await client.request('patch', { pk: created.id, data: { title: 'Dune III' } })
  t.strictSame(patched.data.tags, [{ id: 2, name: 'green' }], 'a patch that leaves tags alone keeps them')
  t.notOk(JSON.stringify(patched.data).includes('private.example'), 'the author\'s email never leaves the server')
})

t.test('keys: a relation declared as a scalar is its key, also when the entity manager has it fully loaded', async (t) => {
  const loadedEverything = action('loaded', async (ctx) => {
    // Every relation loaded, emails included: the schema alone decides what is sent.
    const books = await ctx.em.find(Book, {}, { populate: ['author', 'tags'] as never, orderBy: { id: 'asc' } })
    return { data: await ctx.model!.render(ctx, books) }
  })
  const { base } = await startLibrary(t, BookKeys, { actions: [loadedEverything] })
  const client = await openClient(t, `${base}/books/`)
  const created = await create(client, { title: 'Leaky', author: 1, tags: [2, 1] })
  t.strictSame(created, { id: created.id, title: 'Leaky', author: 1, tags: [1, 2] }, 'create: keys, ordered')
  t.strictSame((await client.request('retrieve', { pk: created.id })).data, created, 'retrieve: keys, not [] for a loaded-later collection')
  t.strictSame((await client.request('loaded')).data, [created], 'fully loaded entities: still only keys, no email')
})

t.test('computed and renamed fields, in replies and events alike', async (t) => {
  const Shape = Type.Object({
    id: Type.Integer(),
    pk: Type.Integer(),
    title: Type.String(),
    author_name: Type.String(),
    byline: Type.String(),
    viewer: Type.Union([Type.String(), Type.Null()])
  })
  const { base } = await startLibrary(t, Shape as never, {
    fields: {
      pk: { source: 'id' },
      author_name: { source: 'author.name' },
      byline: { get: (book: any) => `${String(book.title)} by ${String(book.author.name)}`, populate: ['author'] },
      // The action context where there is one (replies); events are rendered once for everyone.
      viewer: { get: (_book: unknown, ctx) => ctx === undefined ? null : ctx.action }
    }
  })
  const client = await openClient(t, `${base}/books/`)
  const subscriber = await openClient(t, `${base}/books/`)
  const created = await create(client, { title: 'Emma', author: 2 })
  t.strictSame(created, { id: created.id, pk: created.id, title: 'Emma', author_name: 'Bob', byline: 'Emma by Bob', viewer: 'create' })
  await subscriber.ask({ action: 'subscribe_instance', request_id: 's', pk: created.id })
  await client.request('patch', { pk: created.id, data: { title: 'Emma!' } })
  const event = await subscriber.next()
  t.strictSame(event.data, { id: created.id, pk: created.id, title: 'Emma!', author_name: 'Bob', byline: 'Emma! by Bob', viewer: null })
  t.equal(event.action, 'update')
})

t.test('computed and renamed fields that read no relation: events too, equal to retrieve', async (t) => {
  // Nothing to populate: the event must still be rendered from the entity, not from the
  // row snapshot (which has no `pk` or `shout`), and not dropped.
  const Shape = Type.Object({ id: Type.Integer(), pk: Type.Integer(), title: Type.String(), shout: Type.String() })
  const { base } = await startLibrary(t, Shape as never, {
    filterFields: ['id'], // no relation for list subscriptions to decide on either
    fields: { pk: { source: 'id' }, shout: { get: (book: any) => String(book.title).toUpperCase() } }
  })
  const client = await openClient(t, `${base}/books/`)
  const subscriber = await openClient(t, `${base}/books/`)
  t.equal((await subscriber.ask({ action: 'subscribe_list', request_id: 'l' })).response_status, 201)
  const created = await create(client, { title: 'Emma', author: 2 })
  t.strictSame(created, { id: created.id, pk: created.id, title: 'Emma', shout: 'EMMA' })
  t.strictSame(await subscriber.next(), { errors: [], data: created, action: 'create', response_status: 201, request_id: 'l' })
  await client.request('patch', { pk: created.id, data: { title: 'Emma!' } })
  const retrieved = (await client.request('retrieve', { pk: created.id })).data
  t.strictSame(retrieved, { id: created.id, pk: created.id, title: 'Emma!', shout: 'EMMA!' })
  t.strictSame((await subscriber.next()).data, retrieved, 'the update event is the retrieve')
})

/** An entity class with a getter: `full_name` is no MikroORM property, only the class has it. */
class Person {
  id!: number
  first!: string
  last!: string
  get full_name (): string { return `${this.first} ${this.last}` }
}
const PersonSchema = new EntitySchema<Person>({
  class: Person,
  properties: {
    id: { type: 'integer', primary: true, autoincrement: true },
    first: { type: 'string' },
    last: { type: 'string' }
  } as never // EntitySchema's type asks for every member of the class, the getter too
})

t.test('a getter of the entity class declared in the response schema: in events as in replies', async (t) => {
  const PersonInput = Type.Object({ first: Type.String(), last: Type.String() })
  const { base } = await startApp(t, [PersonSchema], (app) => {
    app.wsRest.route('/people/', {
      entity: Person,
      schema: { create: PersonInput, update: PersonInput, response: Type.Object({ id: Type.Integer(), first: Type.String(), full_name: Type.String() }) },
      actions: [mixins.create(), mixins.retrieve(), mixins.patch(), mixins.subscribeInstance(), mixins.subscribeList()]
    })
  })
  const client = await openClient(t, `${base}/people/`)
  const subscriber = await openClient(t, `${base}/people/`)
  t.equal((await subscriber.ask({ action: 'subscribe_list', request_id: 'l' })).response_status, 201)
  const created = (await client.request('create', { data: { first: 'Ada', last: 'Lovelace' } })).data
  t.strictSame(created, { id: created.id, first: 'Ada', full_name: 'Ada Lovelace' })
  t.strictSame((await subscriber.next()).data, created, 'the create event has the getter too')
  await client.request('patch', { pk: created.id, data: { last: 'King' } })
  const retrieved = (await client.request('retrieve', { pk: created.id })).data
  t.strictSame(retrieved.full_name, 'Ada King')
  t.strictSame((await subscriber.next()).data, retrieved, 'the update event is the retrieve')
})

t.test('declaration errors: an undeclared computed field, a to-many not declared as an array', async (t) => {
  const orm = await initOrm(t, LIBRARY)
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { orm })
  t.throws(() => app.wsRest.route('/a/', {
    entity: Book, schema: { response: BookKeys }, fields: { extra: { source: 'title' } }, actions: [mixins.list()]
  }), /fields\.extra.*not declared in the response schema/)
  t.throws(() => app.wsRest.route('/b/', {
    entity: Book, schema: { response: Type.Object({ id: Type.Integer(), tags: Type.Integer() }) }, actions: [mixins.list()]
  }), /"tags" is a to-many relation; declare it as an array/)
  t.throws(() => app.wsRest.route('/c/', {
    entity: Book, schema: { response: BookKeys }, fields: { title: { source: 'tags.name' } }, actions: [mixins.list()]
  }), /"tags" is not a to-one relation/)
})

t.test('events are replies: instance and list subscribers get what retrieve answers; tags-only changes publish update', async (t) => {
  const { base } = await startLibrary(t, BookNested)
  const writer = await openClient(t, `${base}/books/`)
  const instance = await openClient(t, `${base}/books/`)
  const list = await openClient(t, `${base}/books/`)
  // Subscribed before the create, whose event is taken: an event is published after its
  // write's reply (docs/live-data.md), so a list subscription made after the reply could
  // still get it (on PostgreSQL, rendering it may wait for a new pool connection).
  t.equal((await list.ask({ action: 'subscribe_list', request_id: 'l' })).response_status, 201)
  const book = await create(writer, { title: 'Ulysses', author: 1, tags: [1] })
  t.same(await list.next(), { errors: [], data: book, action: 'create', response_status: 201, request_id: 'l' }, 'the create: equal to its reply')
  t.equal((await instance.ask({ action: 'subscribe_instance', request_id: 'i', pk: book.id })).response_status, 201)

  await writer.request('patch', { pk: book.id, data: { tags: [3, 2] } })
  const retrieved = (await writer.request('retrieve', { pk: book.id })).data
  t.strictSame(retrieved.tags, [{ id: 2, name: 'green' }, { id: 3, name: 'blue' }])
  const event = await instance.next()
  t.strictSame(event, { errors: [], data: retrieved, action: 'update', response_status: 200, request_id: 'i' }, 'a tags-only patch: update, equal to retrieve')
  t.strictSame((await list.next()).data, retrieved, 'the list subscriber too')

  await writer.request('patch', { pk: book.id, data: { author: 2, title: 'Ulysses (2)' } })
  const again = (await writer.request('retrieve', { pk: book.id })).data
  t.strictSame((await instance.next()).data, again, 'a moved author: the new nested author')
  t.strictSame((await list.next()).data, again)

  await writer.request('delete', { pk: book.id })
  t.strictSame((await instance.next()).data, { pk: book.id }, 'a delete still carries only the pk')
})

t.test('filtered lists follow relations: author moved in and out, a tag added and removed', async (t) => {
  const { base } = await startLibrary(t, BookNested)
  const writer = await openClient(t, `${base}/books/`)
  const byAuthor = await openClient(t, `${base}/books/`)
  const byTag = await openClient(t, `${base}/books/`)
  await byAuthor.ask({ action: 'subscribe_list', request_id: 'a', filter: { author: 2 } })
  await byTag.ask({ action: 'subscribe_list', request_id: 't', filter: { tags: 2 } })

  const book = await create(writer, { title: 'Moby', author: 1, tags: [1] })
  // Not in either filter yet: the next event each gets proves this create sent none.
  await writer.request('patch', { pk: book.id, data: { author: 2 } })
  const entered = await byAuthor.next()
  t.equal(entered.action, 'create', 'moved to author 2: create')
  t.strictSame(entered.data.author, { id: 2, name: 'Bob' })
  await writer.request('patch', { pk: book.id, data: { tags: [1, 2] } })
  t.equal((await byAuthor.next()).action, 'update', 'still author 2: update')
  const tagged = await byTag.next()
  t.equal(tagged.action, 'create', 'tag 2 added: create for the tag filter')
  t.strictSame(tagged.data.tags.map((tag: { id: number }) => tag.id), [1, 2])
  await writer.request('patch', { pk: book.id, data: { tags: [1] } })
  t.strictSame(await byTag.next(), { errors: [], data: { pk: book.id }, action: 'delete', response_status: 204, request_id: 't' }, 'tag 2 removed: delete')
  t.equal((await byAuthor.next()).action, 'update')
  await writer.request('patch', { pk: book.id, data: { author: 1 } })
  t.strictSame((await byAuthor.next()).action, 'delete', 'moved away from author 2: delete')
})

t.test('a list filtered by a related scalar (author.name) follows a book moved between authors, before and after', async (t) => {
  const { base } = await startLibrary(t, BookNested)
  const writer = await openClient(t, `${base}/books/`)
  const bobs = await openClient(t, `${base}/books/`)
  await bobs.ask({ action: 'subscribe_list', request_id: 'bob', filter: { 'author.name': 'Bob' } })
  const book = await create(writer, { title: 'Moved', author: 1 })
  // Alice's book sends nothing; moving it to Bob must be a create (its old author, Alice, was looked up).
  await writer.request('patch', { pk: book.id, data: { author: 2 } })
  const entered = await bobs.next()
  t.strictSame([entered.action, entered.data.id, entered.data.author], ['create', book.id, { id: 2, name: 'Bob' }])
  await writer.request('patch', { pk: book.id, data: { title: 'Moved!' } })
  t.strictSame([(await bobs.next()).action], ['update'], 'still Bob\'s: update')
  await writer.request('patch', { pk: book.id, data: { author: 1 } })
  t.strictSame(await bobs.next(), { errors: [], data: { pk: book.id }, action: 'delete', response_status: 204, request_id: 'bob' }, 'back to Alice: delete')
})

t.test('cascades: deleting an author publishes a delete per removed book; deleting a tag an update per book that had it', async (t) => {
  const { base, orm } = await startLibrary(t, BookNested)
  const writer = await openClient(t, `${base}/books/`)
  const watcher = await openClient(t, `${base}/books/`)
  // Subscribed before the creates, whose events are taken: a subscription made after a
  // write's reply may still get its event (docs/live-data.md).
  await watcher.ask({ action: 'subscribe_list', request_id: 'all' })
  await watcher.ask({ action: 'subscribe_list', request_id: 'green', filter: { tags: 2 } })
  const first = await create(writer, { title: 'One', author: 1, tags: [1, 2] })
  const second = await create(writer, { title: 'Two', author: 1, tags: [2] })
  const other = await create(writer, { title: 'Three', author: 2, tags: [3] })
  t.same((await watcher.take(5)).map((e) => [e.request_id, e.action, e.data.id]).sort(), [
    ['all', 'create', first.id], ['all', 'create', second.id], ['all', 'create', other.id],
    ['green', 'create', first.id], ['green', 'create', second.id]
  ].sort(), 'the creates: one event per matching subscription')

  const tags = await openClient(t, `${base}/tags/`)
  t.equal((await tags.request('delete', { pk: 2 })).response_status, 204)
  const afterTag = await watcher.take(4)
  const byRequest = (id: string): any[] => afterTag.filter((e) => e.request_id === id)
  t.strictSame(byRequest('all').map((e) => [e.action, e.data.id, e.data.tags.map((x: { id: number }) => x.id)]).sort(),
    [['update', first.id, [1]], ['update', second.id, []]], 'each book that had the tag: update without it')
  t.strictSame(byRequest('green').map((e) => [e.action, e.data.pk]).sort(), [['delete', first.id], ['delete', second.id]],
    'the list filtered by the tag: delete')

  const authors = await openClient(t, `${base}/authors/`)
  t.equal((await authors.request('delete', { pk: 1 })).response_status, 204)
  const afterAuthor = await watcher.take(2)
  t.strictSame(afterAuthor.map((e) => [e.action, e.data.pk]).sort(), [['delete', first.id], ['delete', second.id]], 'a delete per cascaded book')
  t.equal(await orm.em.fork().count(Book, {}), 1, 'only the other author\'s book is left')
  await writer.request('patch', { pk: other.id, data: { title: 'Three!' } })
  t.equal((await watcher.next()).data.title, 'Three!', 'and nothing else was published in between')
})

/** Orphan removal (a shelf's items) and a cascaded to-one (a car's engine). */
const Shelf = defineEntity({
  name: 'Shelf',
  properties: (p) => ({ id: p.integer().primary().autoincrement(), name: p.string(), items: () => p.oneToMany(Item).mappedBy('shelf').orphanRemoval() })
})
const Item = defineEntity({
  name: 'Item',
  properties: (p) => ({ id: p.integer().primary().autoincrement(), name: p.string(), shelf: () => p.manyToOne(Shelf) })
})
const Engine = defineEntity({ name: 'Engine', properties: (p) => ({ id: p.integer().primary().autoincrement(), hp: p.integer() }) })
const Car = defineEntity({
  name: 'Car',
  properties: (p) => ({ id: p.integer().primary().autoincrement(), engine: () => p.oneToOne(Engine).owner().cascade(Cascade.PERSIST, Cascade.REMOVE) })
})

t.test('cascades: orphan removal and a cascaded to-one publish a delete per removed row, to filtered lists too', async (t) => {
  const { base, orm } = await startApp(t, [Shelf, Item, Engine, Car], (app) => {
    app.wsRest.route('/shelves/', { entity: Shelf, schema: { response: Type.Object({ id: Type.Integer() }) }, actions: [mixins.delete()] })
    app.wsRest.route('/items/', {
      entity: Item,
      schema: { response: Type.Object({ id: Type.Integer(), name: Type.String(), shelf: Type.Integer() }) },
      filterFields: ['shelf'],
      actions: [mixins.subscribeInstance(), mixins.subscribeList()]
    })
    app.wsRest.route('/cars/', { entity: Car, schema: { response: Type.Object({ id: Type.Integer() }) }, actions: [mixins.delete()] })
    app.wsRest.route('/engines/', {
      entity: Engine,
      schema: { response: Type.Object({ id: Type.Integer(), hp: Type.Integer() }) },
      filterFields: ['hp'],
      actions: [mixins.subscribeInstance(), mixins.subscribeList()]
    })
  })
  const em = orm.em.fork()
  const shelf = em.create(Shelf, { name: 'top' })
  em.create(Item, { name: 'a', shelf })
  em.create(Item, { name: 'b', shelf })
  em.create(Car, { engine: em.create(Engine, { hp: 100 }) })
  await em.flush()

  const items = await openClient(t, `${base}/items/`)
  await items.ask({ action: 'subscribe_instance', request_id: 'a', pk: 1 })
  await items.ask({ action: 'subscribe_list', request_id: 'top', filter: { shelf: 1 } })
  t.equal((await (await openClient(t, `${base}/shelves/`)).request('delete', { pk: 1 })).response_status, 204)
  t.strictSame((await items.take(3)).map((e) => [e.request_id, e.action, e.data.pk]).sort(),
    [['a', 'delete', 1], ['top', 'delete', 1], ['top', 'delete', 2]], 'orphan removal: a delete per item')

  const engines = await openClient(t, `${base}/engines/`)
  await engines.ask({ action: 'subscribe_instance', request_id: 'e', pk: 1 })
  await engines.ask({ action: 'subscribe_list', request_id: 'strong', filter: { hp: 100 } })
  t.equal((await (await openClient(t, `${base}/cars/`)).request('delete', { pk: 1 })).response_status, 204)
  t.strictSame((await engines.take(2)).map((e) => [e.request_id, e.action, e.data.pk]).sort(),
    [['e', 'delete', 1], ['strong', 'delete', 1]], 'the engine went with its car: the filtered list hears of it too')
  t.equal(await orm.em.fork().count(Engine, {}), 0)
})

t.test('no N+1: a nested list costs the same number of queries for 2 rows as for 20, coalesced or scoped', async (t) => {
  for (const scoped of [false, true]) {
    const { base, orm } = await startLibrary(t, BookNested, scoped ? { getQueryset: () => ({ id: { $gt: 0 } }) } : {})
    await seedBooks(orm, 20)
    const client = await openClient(t, `${base}/books/`)
    const queries = spyQueries(orm)
    const count = async (args: Record<string, unknown>): Promise<number> => {
      queries.length = 0
      const reply = await client.request('list', args)
      t.equal(reply.response_status, 200)
      return queries.length
    }
    const two = await count({ filter: { id: { $lte: 2 } } })
    const twenty = await count({})
    t.equal(twenty, two, `${scoped ? 'scoped' : 'coalesced'} list: ${twenty} queries for 20 rows, ${two} for 2`)
    t.ok(twenty <= 3, 'one query for the rows and one per relation at most')
  }
})

/**
 * Books by either author, each with two tags — written with plain SQL, which publishes
 * nothing: no event rendering of the seed can fall into a query count.
 */
async function seedBooks (orm: MikroORM, n: number): Promise<void> {
  const connection = orm.em.getConnection()
  for (let i = 1; i <= n; i++) {
    await connection.execute(`insert into book (id, title, body, author_id) values (${i}, 'Book ${i}', '', ${1 + (i % 2)})`)
    for (const tag of new Set([1 + (i % 3), 1 + ((i + 1) % 3)])) {
      await connection.execute(`insert into book_tags (book_id, tag_id) values (${i}, ${tag})`)
    }
  }
}

t.test('no N+1 in group commit: 30 sockets creating at once load the nested relations per flush, not per request', async (t) => {
  const { base, orm } = await startLibrary(t, BookNested)
  const clients = await Promise.all(Array.from({ length: 30 }, async () => await openClient(t, `${base}/books/`)))
  const queries = spyQueries(orm)
  clients.forEach((client, i) => client.send({ action: 'create', request_id: i, data: { title: `B${i}`, author: 1 + (i % 2), tags: [1 + (i % 3)] } }))
  const replies = await Promise.all(clients.map(async (client) => await client.next()))
  t.ok(replies.every((r) => r.response_status === 201 && typeof r.data.author.name === 'string' && r.data.tags.length === 1), 'every reply nested')
  const flushes = queries.filter((q) => /^insert into [`"]book[`"]/.test(q)).length
  // The tags' names: one pivot+tag query per flush when batched; one per request otherwise.
  // A flush's events load them once more, for all its rows, and may do so before the last
  // reply (MikroORM 7 loads to-many relations with a query of their own, MikroORM 6 joins them).
  const tagLoads = queries.filter((q) => /from [`"]book_tags[`"]/.test(q)).length
  t.ok(flushes < 30, `the creates were grouped (${flushes} flushes for 30)`)
  t.ok(tagLoads <= 2 * flushes, `${tagLoads} loads of the tags for ${flushes} flushes`)
})

t.test('no N+1 in coalesced reads: identical nested lists of 10 sockets load each relation once', async (t) => {
  const { base, orm } = await startLibrary(t, BookNested)
  await seedBooks(orm, 20)
  const clients = await Promise.all(Array.from({ length: 10 }, async () => await openClient(t, `${base}/books/`)))
  const queries = spyQueries(orm)
  clients.forEach((client, i) => client.send({ action: 'list', request_id: i }))
  const replies = await Promise.all(clients.map(async (client) => await client.next()))
  t.ok(replies.every((r) => r.response_status === 200 && r.data.length === 20), 'every socket got the 20 nested rows')
  const lists = queries.filter((q) => /from [`"]book[`"]/.test(q) && !/book_tags/.test(q)).length
  const tagLoads = queries.filter((q) => /from [`"]book_tags[`"]/.test(q)).length
  t.ok(tagLoads <= lists, `${tagLoads} loads of the tags for ${lists} list queries (10 sockets)`)
})

t.test('grouped deletes load what they cascade to once per batch, not once per row', async (t) => {
  const { base, orm } = await startLibrary(t, BookNested)
  const em = orm.em.fork()
  for (let i = 0; i < 30; i++) em.create(Author, { name: `A${i}` })
  await em.flush()
  const first = 3 // after Alice and Bob
  const clients = await Promise.all(Array.from({ length: 30 }, async () => await openClient(t, `${base}/authors/`)))
  const queries = spyQueries(orm)
  clients.forEach((client, i) => client.send({ action: 'delete', request_id: i, pk: first + i }))
  const replies = await Promise.all(clients.map(async (client) => await client.next()))
  t.ok(replies.every((r) => r.response_status === 204), 'every delete answered 204')
  const flushes = queries.filter((q) => /^delete from [`"]author[`"]/.test(q)).length
  const bookLoads = queries.filter((q) => /from [`"]book[`"]/.test(q)).length
  t.ok(flushes < 30, `the deletes were grouped (${flushes} flushes for 30)`)
  t.ok(bookLoads <= flushes, `${bookLoads} loads of the cascaded books for ${flushes} flushes`)
})
