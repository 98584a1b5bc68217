/**
 * A small schema with relations, shared by the relation tests: `Author` (with a private
 * `email`), `Book` (many-to-one `author`, many-to-many `tags`) and `Tag`. Deleting an
 * author removes their books (the ORM's cascade), as real apps declare it.
 */
import { Cascade, defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'

export const Author = defineEntity({
  name: 'Author',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    email: p.string().default(''),
    books: () => p.oneToMany(Book).mappedBy('author').cascade(Cascade.ALL)
  })
})
export type Author = InferEntity<typeof Author>

export const Tag = defineEntity({
  name: 'Tag',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string().unique(),
    books: () => p.manyToMany(Book).mappedBy('tags')
  })
})
export type Tag = InferEntity<typeof Tag>

export const Book = defineEntity({
  name: 'Book',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string(),
    body: p.string().default(''),
    author: () => p.manyToOne(Author),
    tags: () => p.manyToMany(Tag).owner()
  })
})
export type Book = InferEntity<typeof Book>

export const LIBRARY = [Author, Book, Tag]

/** Seed rows: authors by name, tags by name, books as `[title, authorIndex, tagIndexes]` (1-based ids follow the order). */
export async function seedLibrary (
  orm: MikroORM,
  seed: { authors: string[], tags: string[], books: Array<[string, number, number[]]> }
): Promise<void> {
  const em = orm.em.fork()
  for (const name of seed.authors) em.create(Author, { name, email: `${name.toLowerCase()}@private.example` })
  for (const name of seed.tags) em.create(Tag, { name })
  await em.flush()
  for (const [title, author, tags] of seed.books) em.create(Book, { title, author, tags } as any)
  await em.flush()
}

/**
 * A review, optionally of a book: a nullable many-to-one, for what a null relation means
 * to filters on it and on paths through it. Not in LIBRARY; add it where a test needs it.
 */
export const Review = defineEntity({
  name: 'Review',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    text: p.string(),
    book: () => p.manyToOne(Book).nullable()
  })
})
export type Review = InferEntity<typeof Review>
