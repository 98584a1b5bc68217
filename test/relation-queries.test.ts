/**
 * Relations in list queries: filtering by a to-one relation's key, by membership of a
 * to-many relation (either side of a many-to-many, and one-to-many), and by, ordering by
 * and searching a related scalar (`author.name`) — in plain, paginated, streamed and
 * cursor lists; the 400s; the declaration errors; `relationPaths`; and the in-memory
 * predicate filtered-list subscriptions decide changed rows with.
 */
import type { MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type RouteOptions } from '../index.js'
import { QueryRules, type QueryOptions } from '../lib/filtering.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { Author, Book, LIBRARY, Review, seedLibrary, Tag } from './helpers/library.js'
import { startApp } from './helpers/server.js'
import { thrownBy } from './helpers/throws.js'

/**
 * Authors 1..5. Their first letters differ and are all capitals, so ordering by name is the
 * same under any collation. Two names hold `_` / `%`, and two others are the decoys a
 * LIKE-based `$contains` would match too ("o_b" would match "Oxbow", "0%" "Eve 2000").
 */
const AUTHORS = ['Ann', 'Bo_b', 'Cy 100%', 'Eve 2000', 'Oxbow']
/** Tags 1..3. */
const TAGS = ['red', 'blue', 'green']
/** Books 1..7: title, author id, tag ids. Books 1 and 7 carry both red and blue. */
const BOOKS: Array<[string, number, number[]]> = [
  ['Alpha', 3, [1, 2]],
  ['Beta', 1, [2]],
  ['Gamma', 5, []],
  ['Delta', 1, [1]],
  ['Epsilon', 2, [3, 1]],
  ['Zeta', 4, [2, 3]],
  ['Eta ann', 3, [1, 2]]
]
const ALL = [1, 2, 3, 4, 5, 6, 7]
/** The books ordered by author name, ties by id. */
const BY_AUTHOR = [2, 4, 5, 1, 7, 6, 3]
/** The books ordered by author name descending, ties by id (ascending). */
const BY_AUTHOR_DESC = [3, 6, 1, 7, 5, 2, 4]

const BookPublic = Type.Object({ id: Type.Integer(), title: Type.String() })
const NamedPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const ReviewPublic = Type.Object({ id: Type.Integer(), text: Type.String() })

const QUERY = {
  filterFields: ['id', 'title', 'author', 'tags', 'author.name'],
  orderingFields: ['title', 'author.name'],
  searchFields: ['title', 'author.name']
}

type BookRoute = Omit<RouteOptions<Book>, 'entity' | 'schema'>

interface Started {
  open: (path: string) => Promise<TestClient>
  orm: MikroORM
}

/**
 * A bare app with the library seeded, the given Book routes, and `/authors/`, `/tags/`
 * (filtered by their to-many `books`) and `/reviews/` (a nullable to-one `book`).
 * Reviews 1..3: of book 1, of no book, of book 2.
 */
async function start (t: Test, routes: Record<string, BookRoute>): Promise<Started> {
  const { orm, base } = await startApp(t, [...LIBRARY, Review], (app) => {
    for (const [path, options] of Object.entries(routes)) {
      app.wsRest.route(path, { entity: Book, schema: { response: BookPublic }, ...options })
    }
    app.wsRest.route('/authors/', { entity: Author, schema: { response: NamedPublic }, filterFields: ['books'], actions: [mixins.list()] })
    app.wsRest.route('/tags/', { entity: Tag, schema: { response: NamedPublic }, filterFields: ['books'], actions: [mixins.list()] })
    app.wsRest.route('/reviews/', {
      entity: Review,
      schema: { response: ReviewPublic },
      filterFields: ['book', 'book.title'],
      orderingFields: ['book.title'],
      actions: [mixins.list()]
    })
    app.wsRest.route('/reviews/cursor/', { entity: Review, schema: { response: ReviewPublic }, orderingFields: ['book.title'], actions: [mixins.cursorList()] })
  })
  await seedLibrary(orm, { authors: AUTHORS, tags: TAGS, books: BOOKS })
  const em = orm.em.fork()
  for (const [text, book] of [['good', 1], ['orphan', null], ['meh', 2]] as const) {
    em.create(Review, { text, book } as any)
    await em.flush() // one at a time: ids 1, 2, 3 in this order on any database
  }
  return {
    orm,
    open: async (path) => {
      const client = await connect(`${base}${path}`)
      t.teardown(() => client.close())
      return client
    }
  }
}

/** A client on `/books/`: `list` with the QUERY declarations. */
async function books (t: Test): Promise<TestClient> {
  const { open } = await start(t, { '/books/': { ...QUERY, actions: [mixins.list()] } })
  return await open('/books/')
}

/** The ids a `list` returns — or, when it fails, its status and errors (so a failure shows why). */
async function listIds (client: TestClient, args: Record<string, unknown>): Promise<unknown> {
  const reply = await client.request('list', args)
  if (reply.response_status !== 200 || !Array.isArray(reply.data)) {
    return { status: reply.response_status, errors: reply.errors }
  }
  return reply.data.map((row: { id: number }) => row.id)
}

/** The outcome of a `list` refused with `fields`, and of any reply, as compared. */
function bad (fields: Record<string, string[]>): unknown {
  return { status: 400, errors: [fields], data: null }
}

async function listOutcome (client: TestClient, args: Record<string, unknown>): Promise<unknown> {
  const reply = await client.request('list', args)
  return { status: reply.response_status, errors: reply.errors, data: reply.data }
}

/** The `{count, ids, offset}` of a page reply, or its status and errors. */
function pageOf (reply: WireReply): unknown {
  if (reply.response_status !== 200) return { status: reply.response_status, errors: reply.errors }
  const { count, results, offset } = reply.data as { count: number, results: Array<{ id: number }>, offset: number }
  return { count, ids: results.map((r) => r.id), offset }
}

// ---------------------------------------------------------------- to-one relations

t.test('filter by a to-one relation: the related key, with every comparison operator', async (t) => {
  const client = await books(t)
  const cases: Array<[unknown, number[]]> = [
    [{ author: 1 }, [2, 4]],
    [{ author: { $eq: 3 } }, [1, 7]],
    [{ author: { $in: [1, 3] } }, [1, 2, 4, 7]],
    [{ author: { $in: [2, 99] } }, [5]],
    [{ author: { $ne: 1 } }, [1, 3, 5, 6, 7]],
    [{ author: { $nin: [1, 3] } }, [3, 5, 6]],
    [{ author: { $gt: 3 } }, [3, 6]],
    [{ author: { $gte: 4, $lt: 5 } }, [6]],
    [{ author: { $lte: 2 } }, [2, 4, 5]],
    [{ author: 99 }, []],
    [{ author: 1, title: 'Delta' }, [4]]
  ]
  for (const [filter, expected] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, JSON.stringify(filter))
  }
})

t.test('a nullable to-one relation: null filters by IS NULL, and a path through it is null too', async (t) => {
  const { open } = await start(t, {})
  const reviews = await open('/reviews/')
  const cases: Array<[unknown, number[], string]> = [
    [{ book: null }, [2], 'no book'],
    [{ book: { $ne: null } }, [1, 3], 'some book'],
    [{ book: { $ne: 1 } }, [3], 'NULL never compares: the orphan is not "not book 1"'],
    [{ book: { $nin: [2] } }, [1], 'nor "not in [2]"'],
    [{ 'book.title': null }, [2], 'a path through a null relation is null (left join)'],
    [{ 'book.title': { $ne: 'Alpha' } }, [3], 'and never compares'],
    [{ 'book.title': { $contains: 'a' } }, [1, 3], '$contains through it']
  ]
  for (const [filter, expected, label] of cases) {
    t.strictSame(await listIds(reviews, { filter }), expected, `${label}: ${JSON.stringify(filter)}`)
  }
  t.strictSame(await listOutcome(await open('/reviews/cursor/'), { ordering: 'book.title' }), bad({
    ordering: ['Cannot page by cursor on "book.title": it may be null.']
  }), 'a cursor list cannot page by a path through a nullable relation (keyset comparisons skip NULL)')
})

// ---------------------------------------------------------------- to-many relations

t.test('filter by a to-many relation: has that related row, or any of those', async (t) => {
  const client = await books(t)
  const cases: Array<[unknown, number[], string]> = [
    [{ tags: 1 }, [1, 4, 5, 7], 'a key: has that tag'],
    [{ tags: { $eq: 3 } }, [5, 6], '$eq: the same'],
    [{ tags: { $in: [1, 2] } }, [1, 2, 4, 5, 6, 7], '$in: any of them; books 1 and 7 (both tags) once each'],
    [{ tags: { $in: [3] } }, [5, 6], '$in of one'],
    [{ tags: { $in: [] } }, [], '$in of none: nothing'],
    [{ tags: 99 }, [], 'no such tag'],
    [{ tags: { $eq: 1, $in: [3] } }, [5], 'two operators: both memberships (has red, and has green)'],
    [{ tags: 2, author: 3 }, [1, 7], 'with another field'],
    [{ tags: { $in: [1, 2] }, 'author.name': { $contains: 'y' } }, [1, 7], 'with a path']
  ]
  for (const [filter, expected, label] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, `${label}: ${JSON.stringify(filter)}`)
  }
})

t.test('to-many from the other sides: one-to-many, and the inverse side of a many-to-many', async (t) => {
  const { open } = await start(t, {})
  const authors = await open('/authors/')
  t.strictSame(await listIds(authors, { filter: { books: 5 } }), [2], 'the author of book 5')
  t.strictSame(await listIds(authors, { filter: { books: { $in: [1, 2, 7] } } }), [1, 3], 'authors of any of them, each once')
  const tags = await open('/tags/')
  t.strictSame(await listIds(tags, { filter: { books: 1 } }), [1, 2], 'the tags of book 1')
  t.strictSame(await listIds(tags, { filter: { books: { $in: [5, 6] } } }), [1, 2, 3], 'tags of any of them, each once')
  t.strictSame(await listIds(tags, { filter: { books: 3 } }), [], 'a book without tags')
})

// ---------------------------------------------------------------- paths

t.test('filter by a related scalar (author.name): comparisons, and $contains with % and _ literal', async (t) => {
  const client = await books(t)
  const cases: Array<[unknown, number[], string]> = [
    [{ 'author.name': 'Ann' }, [2, 4], 'equality'],
    [{ 'author.name': 'ann' }, [], 'equality is exact'],
    [{ 'author.name': { $eq: 'Bo_b' } }, [5], '$eq, _ literal'],
    [{ 'author.name': { $ne: 'Ann' } }, [1, 3, 5, 6, 7], '$ne'],
    [{ 'author.name': { $in: ['Ann', 'Oxbow'] } }, [2, 3, 4], '$in'],
    [{ 'author.name': { $nin: ['Ann', 'Cy 100%'] } }, [3, 5, 6], '$nin'],
    [{ 'author.name': { $gt: 'Cz' } }, [3, 6], '$gt'],
    [{ 'author.name': { $gte: 'Bo_b', $lt: 'D' } }, [1, 5, 7], '$gte and $lt'],
    [{ 'author.name': { $contains: 'ANN' } }, [2, 4], '$contains, case-insensitive'],
    [{ 'author.name': { $contains: '_' } }, [5], '_ is a character, not "any one character"'],
    [{ 'author.name': { $contains: 'o_b' } }, [5], '"o_b" does not match "Oxbow"'],
    [{ 'author.name': { $contains: '%' } }, [1, 7], '% is a character, not a wildcard'],
    [{ 'author.name': { $contains: '0%' } }, [1, 7], '"0%" does not match "Eve 2000"'],
    [{ 'author.name': { $contains: '' } }, ALL, 'the empty string is in every name'],
    [{ 'author.name': { $contains: 'a' }, title: { $contains: 'DEL' } }, [4], 'with a $contains on an own field'],
    [{ author: 1, 'author.name': 'Ann' }, [2, 4], 'with the relation itself'],
    [{ author: 2, 'author.name': 'Ann' }, [], 'contradicting the relation']
  ]
  for (const [filter, expected, label] of cases) {
    t.strictSame(await listIds(client, { filter }), expected, `${label}: ${JSON.stringify(filter)}`)
  }
})

t.test('ordering by a related scalar, either way, ties broken by id', async (t) => {
  const { open } = await start(t, {
    '/books/': { ...QUERY, actions: [mixins.list()] },
    '/by-author/': { ...QUERY, ordering: '-author.name', actions: [mixins.list()] }
  })
  const client = await open('/books/')
  t.strictSame(await listIds(client, { ordering: 'author.name' }), BY_AUTHOR, '"author.name"')
  t.strictSame(await listIds(client, { ordering: '-author.name' }), BY_AUTHOR_DESC, '"-author.name": ties still by ascending id')
  t.strictSame(await listIds(client, { ordering: ['-author.name', '-id'] }), [3, 6, 7, 1, 5, 4, 2], 'an explicit id direction')
  t.strictSame(await listIds(client, { ordering: ['author.name', '-title'] }), [4, 2, 5, 7, 1, 6, 3], 'then by an own field')
  t.strictSame(await listIds(client, { ordering: 'author.name', filter: { tags: 1 } }), [4, 5, 1, 7], 'a filtered list')
  t.strictSame(await listIds(await open('/by-author/'), {}), BY_AUTHOR_DESC, 'a path as the route\'s default ordering')
})

t.test('search over an own field and a related one', async (t) => {
  const client = await books(t)
  const cases: Array<[string, number[], string]> = [
    ['ann', [2, 4, 7], 'the author of 2 and 4, the title of 7'],
    ['ALPHA', [1], 'a title only'],
    ['oxbow', [3], 'an author only'],
    ['_', [5], '_ literally'],
    ['o_b', [5], 'o_b literally, not "Oxbow"'],
    ['%', [1, 7], '% literally'],
    ['zzz', [], 'no match']
  ]
  for (const [search, expected, label] of cases) {
    t.strictSame(await listIds(client, { search }), expected, `${label}: ${JSON.stringify(search)}`)
  }
  t.strictSame(await listIds(client, { search: 'a', filter: { tags: 2 }, ordering: '-author.name' }), [6, 1, 7, 2], 'with a filter and an ordering')
})

// ---------------------------------------------------------------- paginated, streamed and cursor lists

t.test('paginated list: counts with a to-many filter are of books, not of joined rows', async (t) => {
  const { open } = await start(t, { '/paged/': { ...QUERY, actions: [mixins.paginatedList({ defaultLimit: 4 })] } })
  const client = await open('/paged/')
  const page = async (args: Record<string, unknown>): Promise<unknown> => pageOf(await client.request('list', args))
  t.strictSame(await page({ filter: { tags: { $in: [1, 2] } } }), { count: 6, ids: [1, 2, 4, 5], offset: 0 }, 'both tags of books 1 and 7 count once')
  t.strictSame(await page({ filter: { tags: { $in: [1, 2] } }, offset: 4 }), { count: 6, ids: [6, 7], offset: 4 }, 'the last page')
  t.strictSame(await page({ filter: { tags: { $in: [1, 2] } }, ordering: 'author.name', limit: 3, offset: 3 }), { count: 6, ids: [1, 7, 6], offset: 3 }, 'ordered by a path')
  t.strictSame(await page({ filter: { 'author.name': { $contains: 'y' } }, limit: 1 }), { count: 2, ids: [1], offset: 0 }, '$contains on a path: the count query too')
  t.strictSame(await page({ search: 'ann', limit: 2 }), { count: 3, ids: [2, 4], offset: 0 }, 'search through a path: the count query too')
})

t.test('streamed list: every page filtered by a relation and ordered by a path', async (t) => {
  const { open } = await start(t, { '/stream/': { ...QUERY, actions: mixins.streamedList({ defaultLimit: 2 }) } })
  const client = await open('/stream/')
  client.send({ action: 'list', request_id: 's', filter: { tags: { $in: [1, 2] } }, ordering: '-author.name' })
  const pages: unknown[] = []
  for (let i = 0; i < 3; i++) {
    const reply = await client.next()
    pages.push([reply.request_id, pageOf(reply)])
  }
  t.strictSame(pages, [
    ['s', { count: 6, ids: [6, 1], offset: 0 }],
    ['s', { count: 6, ids: [7, 5], offset: 2 }],
    ['s', { count: 6, ids: [2, 4], offset: 4 }]
  ])
})

/** A cursor page's ids, and whether it has a next / previous page. */
interface CursorPage { ids: number[], next: string | null, previous: string | null }

async function cursorPage (client: TestClient, args: Record<string, unknown>): Promise<CursorPage> {
  const reply = await client.request('list', args)
  if (reply.response_status !== 200) throw new Error(`expected a page, got ${JSON.stringify(reply)}`)
  const { results, next, previous } = reply.data as { results: Array<{ id: number }>, next: string | null, previous: string | null }
  return { ids: results.map((r) => r.id), next, previous }
}

/** Every page from the first, following `next`, then back from the last following `previous`. */
async function walk (client: TestClient, args: Record<string, unknown>): Promise<{ forward: number[][], back: number[][] }> {
  const forward: number[][] = []
  let page = await cursorPage(client, args)
  forward.push(page.ids)
  while (page.next !== null && forward.length < 10) {
    page = await cursorPage(client, { ...args, cursor: page.next })
    forward.push(page.ids)
  }
  const back: number[][] = []
  while (page.previous !== null && back.length < 10) {
    page = await cursorPage(client, { ...args, cursor: page.previous })
    back.push(page.ids)
  }
  return { forward, back }
}

t.test('cursor list ordered by a path: next to the end and previous back, across ties', async (t) => {
  const { open } = await start(t, { '/cursor/': { ...QUERY, actions: [mixins.cursorList({ defaultLimit: 2 })] } })
  const client = await open('/cursor/')
  t.strictSame(await walk(client, { ordering: 'author.name' }), {
    forward: [[2, 4], [5, 1], [7, 6], [3]],
    back: [[7, 6], [5, 1], [2, 4]]
  }, '"author.name"')
  t.strictSame(await walk(client, { ordering: '-author.name' }), {
    forward: [[3, 6], [1, 7], [5, 2], [4]],
    back: [[5, 2], [1, 7], [3, 6]]
  }, '"-author.name"')
  t.strictSame(await walk(client, { ordering: ['author.name', '-title'], filter: { tags: { $in: [1, 2] } }, limit: 3 }), {
    forward: [[4, 2, 5], [7, 1, 6]],
    back: [[4, 2, 5]]
  }, 'then by an own field, filtered by a to-many relation')
  t.strictSame(await walk(client, { ordering: '-author.name', filter: { 'author.name': { $contains: 'O' } }, limit: 1 }), {
    forward: [[3], [5]],
    back: [[3]]
  }, 'filtered by the path it is ordered by')
  t.strictSame(await walk(client, { ordering: 'author.name', search: 'ann' }), {
    forward: [[2, 4], [7]],
    back: [[2, 4]]
  }, 'searched through the path')
})

// ---------------------------------------------------------------- 400s

t.test('400 keyed filter: operators a to-many field does not have, and wrongly typed related keys', async (t) => {
  const client = await books(t)
  const cases: Array<[unknown, string[]]> = [
    [{ tags: { $gt: 1 } }, ['Operator "$gt" is not available for "tags".']],
    [{ tags: { $ne: 1 } }, ['Operator "$ne" is not available for "tags".']],
    [{ tags: { $nin: [1] } }, ['Operator "$nin" is not available for "tags".']],
    [{ tags: { $contains: 'r' } }, ['Operator "$contains" is not available for "tags".']],
    [{ tags: { $in: [1], $lte: 2 } }, ['Operator "$lte" is not available for "tags".']],
    [{ tags: { $like: 1 } }, ['Unknown operator "$like" for field "tags".']],
    [{ tags: 'red' }, ['Invalid value for "tags": expected integer.']],
    [{ tags: null }, ['Invalid value for "tags": expected integer.']],
    [{ tags: [1, 2] }, ['Invalid value for "tags": expected integer.']],
    [{ tags: { $in: [1, 'blue'] } }, ['Invalid value for "tags": expected integer.']],
    [{ author: 'x' }, ['Invalid value for "author": expected integer.']],
    [{ author: '1' }, ['Invalid value for "author": expected integer.']],
    [{ author: null }, ['Invalid value for "author": expected integer.']],
    [{ author: { id: 1 } }, ['Unknown operator "id" for field "author".']],
    [{ author: { $in: [1, 2.5] } }, ['Invalid value for "author": expected integer.']],
    [{ author: { $contains: '1' } }, ['Operator "$contains" needs a string field; "author" is not one.']],
    [{ 'author.name': 5 }, ['Invalid value for "author.name": expected string.']],
    [{ 'author.name': null }, ['Invalid value for "author.name": expected string.']],
    [{ 'author.email': 'ann@private.example' }, ['Unknown field "author.email".']],
    [{ 'tags.name': 'red' }, ['Unknown field "tags.name".']],
    [{ author: { name: 'Ann' } }, ['Unknown operator "name" for field "author".']]
  ]
  for (const [filter, messages] of cases) {
    t.strictSame(await listOutcome(client, { filter }), bad({ filter: messages }), JSON.stringify(filter))
  }
  t.strictSame(await listOutcome(client, { ordering: 'author' }), bad({ ordering: ['Unknown ordering field "author".'] }), 'a relation is not orderable')
  t.strictSame(await listOutcome(client, { ordering: '-author.email' }), bad({ ordering: ['Unknown ordering field "author.email".'] }), 'an undeclared path is not')
})

// ---------------------------------------------------------------- declarations

t.test('declarations that cannot work fail at registration, naming the path', async (t) => {
  const errors: Array<{ code?: string, message: string }> = []
  const cases: Array<[Partial<QueryOptions>, RegExp]> = [
    [{ filterFields: ['author.books.title'] }, /"author\.books\.title": a path may go through one relation only/],
    [{ orderingFields: ['author.name.length'] }, /"author\.name\.length": a path may go through one relation only/],
    [{ filterFields: ['tags.name'] }, /"tags\.name": "tags" is not a to-one relation/],
    [{ searchFields: ['tags.name'] }, /"tags\.name": "tags" is not a to-one relation/],
    [{ filterFields: ['title.length'] }, /"title\.length": "title" is not a to-one relation/],
    [{ filterFields: ['nope.name'] }, /"nope\.name": "nope" is not a property of Book/],
    [{ orderingFields: ['author.nope'] }, /"author\.nope": "nope" is not a property of Author/],
    [{ filterFields: ['author.books'] }, /"author\.books": "books" of Author is not a scalar property/],
    [{ filterFields: ['nope'] }, /"nope" is not a property of Book/],
    [{ filterFields: ['constructor'] }, /"constructor" is not a property of Book/],
    [{ orderingFields: ['author'] }, /"author" is a relation/],
    [{ orderingFields: ['tags'] }, /"tags" is a relation/],
    [{ searchFields: ['author'] }, /"author" is a relation/],
    [{ searchFields: ['author.id'] }, /"author\.id" is not a string property/],
    [{ ordering: 'author.name' }, /Unknown ordering field "author\.name"/]
  ]
  await startApp(t, LIBRARY, (app) => {
    for (const [options] of cases) {
      errors.push(thrownBy(() => app.wsRest.route('/bad/', { entity: Book, schema: { response: BookPublic }, ...options, actions: [mixins.list()] })))
    }
  })
  cases.forEach(([options, message], i) => {
    t.equal(errors[i].code, 'FST_WSREST_INVALID_OPTION', JSON.stringify(options))
    t.match(errors[i].message, message, JSON.stringify(options))
  })
})

// ---------------------------------------------------------------- what rows need, and the in-memory predicate

t.test('relationPaths: the to-many relations and paths that filters and search read from rows', async (t) => {
  const { orm } = await startApp(t, LIBRARY, () => {})
  const rules = (options: QueryOptions): string[] => new QueryRules(orm.getMetadata().get(Book), orm.em.getPlatform(), options).relationPaths
  t.strictSame(rules(QUERY), ['tags', 'author.name'], 'each once, the to-one relation (a key the row holds anyway) left out')
  t.strictSame(rules({ searchFields: ['author.name'] }), ['author.name'], 'a search field')
  t.strictSame(rules({ orderingFields: ['author.name'], filterFields: ['author', 'title'] }), [], 'orderings and to-one relations need nothing')
  t.strictSame(rules({}), [])
})

t.test('the in-memory predicate reads relations as rows carry them, and fails closed on missing keys', async (t) => {
  const { orm } = await startApp(t, LIBRARY, () => {})
  const rules = new QueryRules(orm.getMetadata().get(Book), orm.em.getPlatform(), QUERY)
  /** Book 1 as a snapshot with its relation paths loaded. */
  const row = { id: 1, title: 'Alpha', body: '', author: 3, tags: [1, 2], 'author.name': 'Cy 100%' }
  const without = (key: string): Record<string, unknown> => Object.fromEntries(Object.entries(row).filter(([k]) => k !== key))
  const cases: Array<[Record<string, unknown>, Record<string, unknown>, boolean, string]> = [
    [{ filter: { author: 3 } }, row, true, 'to-one: the key'],
    [{ filter: { author: 1 } }, row, false, 'to-one: another key'],
    [{ filter: { author: { $in: [1, 3] } } }, row, true, 'to-one: $in'],
    [{ filter: { author: { $ne: 1 } } }, row, true, 'to-one: $ne'],
    [{ filter: { author: { $nin: [3] } } }, row, false, 'to-one: $nin'],
    [{ filter: { author: { $gt: 2 } } }, row, true, 'to-one: $gt'],
    [{ filter: { author: { $ne: 1 } } }, without('author'), false, 'to-one missing: $ne does not match'],
    [{ filter: { author: { $nin: [1] } } }, without('author'), false, 'to-one missing: $nin does not match'],
    [{ filter: { author: { $ne: 1 } } }, { ...row, author: null }, false, 'to-one null: NULL never compares'],
    [{ filter: { tags: 2 } }, row, true, 'to-many: has that one'],
    [{ filter: { tags: 3 } }, row, false, 'to-many: has not'],
    [{ filter: { tags: { $eq: 1 } } }, row, true, 'to-many: $eq'],
    [{ filter: { tags: { $in: [3, 2] } } }, row, true, 'to-many: $in, one of them'],
    [{ filter: { tags: { $in: [3] } } }, row, false, 'to-many: $in, none of them'],
    [{ filter: { tags: { $in: [] } } }, row, false, 'to-many: $in of none'],
    [{ filter: { tags: { $eq: 1, $in: [3] } } }, row, false, 'to-many: both memberships needed'],
    [{ filter: { tags: 1 } }, { ...row, tags: [] }, false, 'to-many: no related rows'],
    [{ filter: { tags: 1 } }, without('tags'), false, 'to-many missing: fails closed'],
    [{ filter: { tags: { $in: [1] } } }, { ...row, tags: null }, false, 'to-many not an array: fails closed'],
    [{ filter: { 'author.name': 'Cy 100%' } }, row, true, 'path: equality'],
    [{ filter: { 'author.name': 'cy 100%' } }, row, false, 'path: equality is exact'],
    [{ filter: { 'author.name': { $contains: '0%' } } }, row, true, 'path: $contains'],
    [{ filter: { 'author.name': { $contains: '_' } } }, row, false, 'path: $contains, _ literal'],
    [{ filter: { 'author.name': { $contains: '_' } } }, { ...row, 'author.name': 'Bo_b' }, true, 'path: $contains, _ present'],
    [{ filter: { 'author.name': { $gt: 'Cz' } } }, { ...row, 'author.name': 'Eve 2000' }, true, 'path: $gt'],
    [{ filter: { 'author.name': { $ne: 'Ann' } } }, row, true, 'path: $ne'],
    [{ filter: { 'author.name': { $ne: 'Ann' } } }, without('author.name'), false, 'path missing: $ne does not match'],
    [{ filter: { 'author.name': { $nin: ['Ann'] } } }, without('author.name'), false, 'path missing: $nin does not match'],
    [{ filter: { 'author.name': { $contains: '' } } }, without('author.name'), false, 'path missing: $contains does not match'],
    [{ filter: { 'author.name': { $ne: 'Ann' } } }, { ...row, 'author.name': null }, false, 'path null: NULL never compares'],
    [{ search: 'cy' }, row, true, 'search: through the path'],
    [{ search: 'alp' }, without('author.name'), true, 'search: the title matches, whatever the path'],
    [{ search: 'cy' }, without('author.name'), false, 'search: the path missing, no match'],
    [{ search: 'ann' }, { ...row, title: 'Beta', 'author.name': 'Ann' }, true, 'search: another row'],
    [{ filter: { tags: 1, 'author.name': { $contains: 'CY' }, author: 3 }, ordering: '-author.name' }, row, true, 'all together; the ordering changes nothing'],
    [{ filter: { tags: 1, 'author.name': { $contains: 'CY' }, author: 4 } }, row, false, 'all together, one failing']
  ]
  for (const [args, subject, expected, label] of cases) {
    t.equal(rules.parse(args).matches(subject), expected, `${label}: ${JSON.stringify(args)} on ${JSON.stringify(subject)}`)
  }
})

t.test('a nullable path in memory: null when the relation is null, as the left join makes it', async (t) => {
  const { orm } = await startApp(t, [...LIBRARY, Review], () => {})
  const rules = new QueryRules(orm.getMetadata().get(Review), orm.em.getPlatform(), { filterFields: ['book', 'book.title'] })
  const orphan = { id: 2, text: 'orphan', book: null, 'book.title': null }
  const reviewed = { id: 1, text: 'good', book: 1, 'book.title': 'Alpha' }
  t.equal(rules.parse({ filter: { book: null } }).matches(orphan), true, 'book null')
  t.equal(rules.parse({ filter: { book: null } }).matches(reviewed), false)
  t.equal(rules.parse({ filter: { 'book.title': null } }).matches(orphan), true, 'the path null')
  t.equal(rules.parse({ filter: { 'book.title': null } }).matches(reviewed), false)
  t.equal(rules.parse({ filter: { 'book.title': { $ne: 'Alpha' } } }).matches(orphan), false, 'NULL never compares')
  t.equal(rules.parse({ filter: { 'book.title': null } }).matches({ id: 2, text: 'orphan', book: null }), false, 'the path missing: fails closed, even for null')
})
