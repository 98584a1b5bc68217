/**
 * The entity both benchmark servers serve, its TypeBox schemas, and the seeding both use,
 * so the plugin and the hand-written baseline do the same work on the same rows.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { MikroORM as SqliteORM } from '@mikro-orm/sqlite'
import { Type } from '@sinclair/typebox'

export const Note = defineEntity({
  name: 'Note',
  tableName: 'note',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string(),
    body: p.text(),
    done: p.boolean().default(false),
    createdAt: p.datetime().onCreate(() => new Date())
  })
})
export type Note = InferEntity<typeof Note>

/** `data` of create. */
export const NoteCreate = Type.Object({
  title: Type.String({ minLength: 1, maxLength: 200 }),
  body: Type.String({ maxLength: 10_000 }),
  done: Type.Optional(Type.Boolean())
})
/** `data` of update (all of it) and patch (any subset). */
export const NoteUpdate = Type.Object({
  title: Type.String({ minLength: 1, maxLength: 200 }),
  body: Type.String({ maxLength: 10_000 }),
  done: Type.Boolean()
})
/** A note as every reply shows it. */
export const NotePublic = Type.Object({
  id: Type.Integer(),
  title: Type.String(),
  body: Type.String(),
  done: Type.Boolean()
})

/** The public fields of a note, picked by hand (the baseline's serializer). */
export interface NoteView { id: number, title: string, body: string, done: boolean }

/** The title and body a seeded row `id` has: the load generator checks replies against them. */
export const seedTitle = (id: number): string => `note ${id}`
export const SEED_BODY = 'A seeded note. It has a body of about a hundred characters, like a short comment or a todo item has.'

/** What the no-database `noop` action (plugin) and the bare echo handler (baseline) answer. */
export const NOOP_DATA: NoteView = Object.freeze({ id: 1, title: seedTitle(1), body: SEED_BODY, done: false })

/** An ORM on SQLite: `:memory:` (the default) or a file shared by several processes. */
export async function openOrm (dbName: string): Promise<MikroORM> {
  return await SqliteORM.init({ dbName, entities: [Note], debug: false, allowGlobalContext: false })
}

/** What a reset leaves: rows `minId..maxId` (seeded titles), and `deletable` more rows after them for delete runs. */
export interface SeedInfo { minId: number, maxId: number, deletableFrom: number, deletableTo: number }

/**
 * Empty the table and fill it again: `rows` notes with ids 1..rows through the ORM, then
 * `deletable` more (ids rows+1..rows+deletable) by one INSERT … SELECT, which is quick even
 * for hundreds of thousands of rows. The schema itself stays, so no cached statement of
 * either server goes stale.
 */
export async function seed (orm: MikroORM, rows: number, deletable = 0): Promise<SeedInfo> {
  await orm.schema.updateSchema()
  const connection = orm.em.getConnection()
  await connection.execute('delete from note')
  const sequence = await connection.execute<Array<{ name: string }>>("select name from sqlite_master where name = 'sqlite_sequence'")
  if (sequence.length > 0) await connection.execute("delete from sqlite_sequence where name = 'note'")
  const em = orm.em.fork()
  for (let i = 1; i <= rows; i++) em.create(Note, { title: seedTitle(i), body: SEED_BODY, done: false })
  await em.flush()
  const ids = await connection.execute<Array<{ lo: number, hi: number, n: number }>>('select min(id) as lo, max(id) as hi, count(*) as n from note')
  const { lo, hi, n } = ids[0]!
  if (n !== rows || (rows > 0 && (lo !== 1 || hi !== rows))) throw new Error(`seeding gave ids ${lo}..${hi} (${n} rows), expected 1..${rows}`)
  if (deletable > 0) {
    await connection.execute(
      `insert into note (title, body, done, created_at)
       with recursive c(x) as (select 1 union all select x + 1 from c where x < ${deletable})
       select 'doomed ' || x, 'to be deleted', 0, (select created_at from note order by id limit 1) from c`)
  }
  return { minId: 1, maxId: rows, deletableFrom: rows + 1, deletableTo: rows + deletable }
}
