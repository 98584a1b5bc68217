/**
 * Relations in create / update / patch input, by related primary key(s), as DRF's
 * PrimaryKeyRelatedField takes them: DRF's texts for a value of the wrong type and for a
 * key naming no object, every failing field in one 400, the check on the message's own
 * EntityManager and on the group-commit path, and a foreign-key violation that still
 * reaches the database (a row deleted after the check, a write that skipped it) answered
 * as a 400 keyed by the field — never a 500, never an error in the log. Real sockets, a
 * real database (SQLite, or PostgreSQL with DATABASE_URL).
 */
import type { MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import wsRest, { action, mixins, type RouteOptions } from '../index.js'
import type { Teardown } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { dialect, initOrm, spyQueries } from './helpers/database.js'
import type { SqlEntityManager } from '@mikro-orm/sqlite' // @mikro-orm/knex's, shared by both SQL drivers
import { Author, Book, LIBRARY, seedLibrary } from './helpers/library.js'

const BookInput = Type.Object({
  title: Type.String({ minLength: 1 }),
  body: Type.Optional(Type.String()),
  author: Type.Integer(),
  tags: Type.Optional(Type.Array(Type.Integer()))
})
const BookPublic = Type.Object({ id: Type.Integer(), title: Type.String() })
const bookModel = { entity: Book, schema: { create: BookInput, update: BookInput, response: BookPublic } }
const writes = [mixins.create(), mixins.update(), mixins.patch()]

const missing = (pk: string): string => `Invalid pk "${pk}" - object does not exist.`
const wrongType = (type: string): string => `Incorrect type. Expected pk value, received ${type}.`
const notAList = (type: string): string => `Expected a list of items but got type "${type}".`
const NOT_NULL = 'This field may not be null.'
/** What SQLite's foreign-key error allows: it names neither the column nor the key. */
const MISSING_UNKNOWN = 'Invalid pk - object does not exist.'
const pgOnly = { skip: dialect === 'sqlite' ? 'needs a second connection writing during the request (runs on PostgreSQL: set DATABASE_URL)' : false }

interface Library {
  orm: MikroORM
  base: string
  client: TestClient
  /** Every line the app logged at warn level or above. */
  logged: Array<{ level: number, msg: string }>
}

/**
 * The library (authors Ann, Bob, Cy, Dee; tags red, green, blue; books "One" by Ann tagged
 * red and "Two" by Bob) behind `/books/`, with `extra` routes, logging into `logged`.
 */
async function start (t: Teardown, extra: (app: ReturnType<typeof Fastify>, orm: MikroORM) => void = () => {}): Promise<Library> {
  const orm = await initOrm(t, LIBRARY)
  await seedLibrary(orm, { authors: ['Ann', 'Bob', 'Cy', 'Dee'], tags: ['red', 'green', 'blue'], books: [['One', 1, [1]], ['Two', 2, []]] })
  const logged: Library['logged'] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { logged.push(JSON.parse(line)) } } } })
  app.addHook('onClose', async () => { await orm.close() })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { orm })
  app.wsRest.route('/books/', { ...bookModel, actions: writes })
  extra(app, orm)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  return { orm, base, client: await openClient(t, `${base}/books/`), logged }
}

/** A 400 whose one error object is exactly `fields`. */
function checkInvalid (t: Test, reply: WireReply, fields: Record<string, string[]>, what: string): void {
  t.strictSame([reply.response_status, reply.data, reply.errors], [400, null, [fields]], what)
}

/** Nothing at error level or above: a client's mistake is no server failure. */
function nothingLogged (t: Test, library: Library): void {
  t.strictSame(library.logged.filter((line) => line.level >= 50).map((line) => line.msg), [], 'nothing logged at error level')
}

/** A stored book: its title, its author's id and its tags' ids. */
async function stored (orm: MikroORM, id: number): Promise<{ title: string, author: number, tags: number[] } | null> {
  const book = await orm.em.fork().findOne(Book, id, { populate: ['tags'] })
  if (book === null) return null
  return { title: book.title, author: book.author.id, tags: book.tags.getItems().map((tag) => tag.id).sort() }
}

async function bookCount (orm: MikroORM): Promise<number> {
  return await orm.em.fork().count(Book, {})
}

t.test('create with valid related keys: written as the relations, one lookup per relation field', async (t) => {
  const library = await start(t)
  const sql = spyQueries(library.orm)
  const reply = await library.client.request('create', { data: { title: 'Three', author: 3, tags: [3, 1] } })
  t.strictSame([reply.response_status, reply.errors], [201, []])
  t.strictSame(Object.keys(reply.data).sort(), ['id', 'title'])
  t.strictSame(await stored(library.orm, reply.data.id), { title: 'Three', author: 3, tags: [1, 3] }, 'author and tags stored')
  t.equal(sql.filter((q) => /^select\b.*\bfrom [`"]author[`"]/i.test(q)).length, 1, 'one lookup of the author')
  t.equal(sql.filter((q) => /^select\b.*\bfrom [`"]tag[`"]/i.test(q)).length, 1, 'one lookup of both tags')

  // DRF takes a numeric string for an integer key, and stores the number.
  const numeric = await library.client.request('create', { data: { title: 'Four', author: '2', tags: ['2', 3] } })
  t.equal(numeric.response_status, 201, 'numeric strings accepted')
  t.strictSame(await stored(library.orm, numeric.data.id), { title: 'Four', author: 2, tags: [2, 3] })

  // tags is optional; a repeated key is one tag.
  const plain = await library.client.request('create', { data: { title: 'Five', author: 4, tags: [1, 1] } })
  t.equal(plain.response_status, 201)
  t.strictSame(await stored(library.orm, plain.data.id), { title: 'Five', author: 4, tags: [1] })
  nothingLogged(t, library)
})

t.test('a key naming no object: DRF\'s text, keyed by the field, nothing written', async (t) => {
  const library = await start(t)
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 999 } }),
    { author: [missing('999')] }, 'missing author')
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: '998' } }),
    { author: [missing('998')] }, 'missing author sent as a string: shown as sent')
  // The first missing key of the list, in the client's order; one message for the field.
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 1, tags: [1, 999, 2, 998] } }),
    { tags: [missing('999')] }, 'missing tag in a list')
  // Beyond any integer column: missing, not a database error.
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 3000000000 } }),
    { author: [missing('3000000000')] }, 'a key out of the column\'s range')
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 1, tags: ['99999999999999999999999'] } }),
    { tags: [missing('99999999999999999999999')] }, 'a key out of any integer\'s range')
  t.equal(await bookCount(library.orm), 2, 'nothing written')
  nothingLogged(t, library)
})

t.test('a value that cannot be a key: DRF\'s "Incorrect type" text, and "Expected a list" for a to-many', async (t) => {
  const library = await start(t)
  const cases: Array<[unknown, string]> = [
    ['abc', 'str'], ['', 'str'], ['5.5', 'str'], [{ id: 1 }, 'dict'], [[1], 'list'], [true, 'bool'], [1.5, 'float']
  ]
  for (const [value, type] of cases) {
    checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: value } }),
      { author: [wrongType(type)] }, `author ${JSON.stringify(value)}`)
  }
  for (const [value, type] of [['1', 'str'], [{ 0: 1 }, 'dict'], [1, 'int'], [true, 'bool']] as Array<[unknown, string]>) {
    checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 1, tags: value } }),
      { tags: [notAList(type)] }, `tags ${JSON.stringify(value)}`)
  }
  // A bad item: the same text as for a single key, under the field itself (not by index), the first bad item's.
  for (const [value, type] of [[[1, 'x'], 'str'], [[{}], 'dict'], [[[1]], 'list'], [[2, false], 'bool'], [[1.5, 'x'], 'float']] as Array<[unknown, string]>) {
    checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 1, tags: value } }),
      { tags: [wrongType(type)] }, `tags ${JSON.stringify(value)}`)
  }
  // null: a required to-one and a to-many may not be null.
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: null } }), { author: [NOT_NULL] }, 'null author')
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 1, tags: null } }), { tags: [NOT_NULL] }, 'null tags')
  t.equal(await bookCount(library.orm), 2, 'nothing written')
  nothingLogged(t, library)
})

t.test('every failing field at once: the schema\'s, the types\' and the missing objects\'', async (t) => {
  const library = await start(t)
  checkInvalid(t, await library.client.request('create', { data: { title: '', author: 999 } }), {
    title: ['This field may not be blank.'],
    author: [missing('999')]
  }, 'bad title + missing author')
  checkInvalid(t, await library.client.request('create', { data: { author: 'x', tags: [1, 999] } }), {
    title: ['This field is required.'],
    author: [wrongType('str')],
    tags: [missing('999')]
  }, 'no title + wrong author type + missing tag')
  checkInvalid(t, await library.client.request('create', { data: { title: 'X', author: 998, tags: [997] } }), {
    author: [missing('998')],
    tags: [missing('997')]
  }, 'both relations missing')
  checkInvalid(t, await library.client.request('create', { data: { title: 'X' } }),
    { author: ['This field is required.'] }, 'a required relation left out')
  t.equal(await bookCount(library.orm), 2, 'nothing written')
  nothingLogged(t, library)
})

t.test('update and patch: relations replaced, checked the same way', async (t) => {
  const library = await start(t)
  const { client, orm } = library
  // patch of tags only: replaced, the author untouched.
  const patched = await client.request('patch', { pk: 1, data: { tags: [2, 3] } })
  t.strictSame([patched.response_status, patched.data], [200, { id: 1, title: 'One' }])
  t.strictSame(await stored(orm, 1), { title: 'One', author: 1, tags: [2, 3] }, 'tags replaced')
  t.equal((await client.request('patch', { pk: 1, data: { tags: [] } })).response_status, 200)
  t.strictSame(await stored(orm, 1), { title: 'One', author: 1, tags: [] }, 'tags cleared')

  checkInvalid(t, await client.request('patch', { pk: 2, data: { tags: [1, 999] } }), { tags: [missing('999')] }, 'patch with a missing tag')
  checkInvalid(t, await client.request('patch', { pk: 2, data: { author: null } }), { author: [NOT_NULL] }, 'patch with a null author')
  checkInvalid(t, await client.request('patch', { pk: 2, data: { author: [2] } }), { author: [wrongType('list')] }, 'patch with a list for the author')
  t.strictSame(await stored(orm, 2), { title: 'Two', author: 2, tags: [] }, 'no refused patch was written')

  const updated = await client.request('update', { pk: 2, data: { title: 'Two bis', author: '4', tags: [1] } })
  t.equal(updated.response_status, 200)
  t.strictSame(await stored(orm, 2), { title: 'Two bis', author: 4, tags: [1] }, 'update: author and tags replaced')
  checkInvalid(t, await client.request('update', { pk: 2, data: { title: '', author: 999, tags: [1] } }), {
    title: ['This field may not be blank.'],
    author: [missing('999')]
  }, 'update with a bad title and a missing author')
  t.strictSame(await stored(orm, 2), { title: 'Two bis', author: 4, tags: [1] }, 'the refused update was not written')
  nothingLogged(t, library)
})

t.test('group commit: each socket\'s own 400 or its own write', async (t) => {
  const library = await start(t)
  const { orm, base } = library
  const SOCKETS = 12
  const em = orm.em.fork()
  const books = Array.from({ length: SOCKETS }, (_, i) => em.create(Book, { title: `g${i}`, author: 1, tags: [] } as any))
  await em.flush()
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async () => await openClient(t, `${base}/books/`)))
  const sql = spyQueries(orm)
  // Every socket at once: even ones valid, odd ones naming a missing tag (patch) or author (create).
  clients.forEach((client, i) => client.send({ action: 'patch', request_id: i, pk: books[i].id, data: { tags: i % 2 === 0 ? [2] : [2, 900 + i] } }))
  const patches = await Promise.all(clients.map(async (client) => await client.next()))
  clients.forEach((client, i) => client.send({ action: 'create', request_id: i, data: { title: `n${i}`, author: i % 2 === 0 ? 3 : 900 + i } }))
  const creates = await Promise.all(clients.map(async (client) => await client.next()))
  for (let i = 0; i < SOCKETS; i++) {
    if (i % 2 === 0) {
      t.equal(patches[i].response_status, 200, `patch ${i} written`)
      t.strictSame((await stored(orm, books[i].id))?.tags, [2])
      t.equal(creates[i].response_status, 201, `create ${i} written`)
      t.equal((await stored(orm, creates[i].data.id))?.author, 3)
    } else {
      checkInvalid(t, patches[i], { tags: [missing(String(900 + i))] }, `patch ${i}`)
      t.strictSame((await stored(orm, books[i].id))?.tags, [], `patch ${i} not written`)
      checkInvalid(t, creates[i], { author: [missing(String(900 + i))] }, `create ${i}`)
    }
  }
  t.ok(sql.filter((q) => /^begin/i.test(q)).length < SOCKETS, 'the valid writes were grouped')
  t.equal(await bookCount(orm), 2 + SOCKETS + SOCKETS / 2, 'only the valid creates written')
  nothingLogged(t, library)
})

/** A route whose performCreate writes what `body` asks for instead of the (validated) data. */
function uncheckedRoute (calls: { count: number }): (app: ReturnType<typeof Fastify>, orm: MikroORM) => void {
  return (app, orm) => {
    const route: RouteOptions<Book, typeof BookInput, typeof BookInput, typeof BookPublic> = {
      ...bookModel,
      async performCreate (ctx, data) {
        calls.count++
        const written: Record<string, unknown> = { ...data }
        if (data.body === 'missing author') written.author = 999
        if (data.body === 'missing tag') written.tags = [1, 999]
        // Another connection deletes the author after the check, before this write (PostgreSQL: a pool of several).
        if (data.body === 'author deleted meanwhile') await orm.em.fork().nativeDelete(Author, { id: data.author })
        return ctx.em.create(Book, written as any)
      },
      actions: [mixins.create()]
    }
    app.wsRest.route('/unchecked/', route)
  }
}

t.test('a foreign-key violation reaching the database: a 400 keyed by the field, never a 500 or an error log', async (t) => {
  const calls = { count: 0 }
  const library = await start(t, uncheckedRoute(calls))
  const client = await openClient(t, `${library.base}/unchecked/`)

  // The check runs before performCreate: it never sees a missing key the client sent.
  checkInvalid(t, await client.request('create', { data: { title: 'X', author: 999 } }), { author: [missing('999')] }, 'checked before performCreate')
  t.equal(calls.count, 0, 'performCreate not called for a refused request')

  // PostgreSQL names the column and key; SQLite names neither, but the table tells the relation.
  const author = await client.request('create', { data: { title: 'X', body: 'missing author', author: 1 } })
  checkInvalid(t, author, { author: [dialect === 'postgresql' ? missing('999') : MISSING_UNKNOWN] }, 'missing author at the write')
  const tag = await client.request('create', { data: { title: 'X', body: 'missing tag', author: 1 } })
  checkInvalid(t, tag, { tags: [dialect === 'postgresql' ? missing('999') : MISSING_UNKNOWN] }, 'missing tag at the write')
  t.equal(calls.count, 2)
  t.notMatch(JSON.stringify([author.errors, tag.errors]), /constraint|insert|book_|_id|SQL/i, 'nothing internal in the replies')
  t.equal(await bookCount(library.orm), 2, 'nothing written: both transactions rolled back')

  const retry = await client.request('create', { data: { title: 'Fine', author: 1 } })
  t.equal(retry.response_status, 201, 'the socket works on')
  nothingLogged(t, library)
})

t.test('an author deleted by another transaction between the check and the write → the same 400', pgOnly, async (t) => {
  const calls = { count: 0 }
  const library = await start(t, uncheckedRoute(calls))
  const client = await openClient(t, `${library.base}/unchecked/`)
  // Dee (4) has no books, so nothing holds her row: the deletion commits while the create runs.
  const reply = await client.request('create', { data: { title: 'X', body: 'author deleted meanwhile', author: 4 } })
  checkInvalid(t, reply, { author: [missing('4')] }, 'the deleted author')
  t.equal(calls.count, 1, 'the check passed: the author existed then')
  t.equal(await library.orm.em.fork().count(Author, { id: 4 }), 0, 'the other transaction\'s delete stands')
  t.equal(await bookCount(library.orm), 2, 'the create was not written')
  nothingLogged(t, library)
})

t.test('deleting a row others still refer to: a 400, not a 500', async (t) => {
  const library = await start(t, (app) => {
    app.wsRest.route('/authors/', {
      entity: Author,
      schema: { response: Type.Object({ id: Type.Integer(), name: Type.String() }) },
      // A bulk delete bypasses the ORM's cascade: the database refuses to orphan Ann's book.
      actions: [action('purge', { transaction: true }, async (ctx, args) => {
        await ctx.em.nativeDelete(Author, { id: args.pk as number })
        return { data: 'purged' }
      })]
    })
  })
  const client = await openClient(t, `${library.base}/authors/`)
  checkInvalid(t, await client.request('purge', { pk: 1 }),
    { non_field_errors: ['Cannot delete this object: other objects refer to it.'] }, 'a referenced author')
  t.equal(await library.orm.em.fork().count(Author, { id: 1 }), 1, 'still there')
  t.strictSame((await client.request('purge', { pk: 4 })).response_status, 200, 'an author without books goes')
  nothingLogged(t, library)
})

t.test('a foreign key checked at COMMIT (a deferred constraint) → the same 400', pgOnly, async (t) => {
  const calls = { count: 0 }
  const library = await start(t, uncheckedRoute(calls))
  await (library.orm.em.fork() as SqlEntityManager).execute('alter table book alter constraint book_author_id_foreign deferrable initially deferred')
  const client = await openClient(t, `${library.base}/unchecked/`)
  const reply = await client.request('create', { data: { title: 'X', body: 'missing author', author: 1 } })
  checkInvalid(t, reply, { author: [missing('999')] }, 'missing author found at COMMIT')
  t.equal(calls.count, 1)
  t.equal(await bookCount(library.orm), 2, 'nothing written')
  nothingLogged(t, library)
})
