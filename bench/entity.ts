/**
 * The entities both benchmark servers serve, their TypeBox schemas, and the seeding both
 * use, so the plugin and the hand-written baseline do the same work on the same rows:
 * `Note` for the single-table ops, and `Doc` with its `Owner` (many-to-one) and `Label`s
 * (many-to-many) for the `nested` op, a list whose rows carry both relations as objects.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { MikroORM as PostgreSqlORM } from '@mikro-orm/postgresql'
import { MikroORM as SqliteORM } from '@mikro-orm/sqlite'
import { Type } from '@sinclair/typebox'
import { updateSchema } from '../lib/orm-compat.js'
import { isPostgresUrl, ensurePgDatabase } from './pg.js'
import { HOOKED_ENTITIES, isPostgres, seedHooked, type HookedSeed } from './entity-hooked.js'

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

// ---------------------------------------------------------------------------- nested

export const Owner = defineEntity({
  name: 'Owner',
  tableName: 'owner',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string()
  })
})
export type Owner = InferEntity<typeof Owner>

export const Label = defineEntity({
  name: 'Label',
  tableName: 'label',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string()
  })
})
export type Label = InferEntity<typeof Label>

export const Doc = defineEntity({
  name: 'Doc',
  tableName: 'doc',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string(),
    owner: () => p.manyToOne(Owner),
    // Named, so the reset can empty it by name.
    labels: () => p.manyToMany(Label).owner().pivotTable('doc_label')
  })
})
export type Doc = InferEntity<typeof Doc>

const OwnerPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const LabelPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
/** A doc as the `nested` list shows it: the owner and the labels as objects, not keys. */
export const DocNested = Type.Object({
  id: Type.Integer(),
  title: Type.String(),
  owner: OwnerPublic,
  labels: Type.Array(LabelPublic)
})

/** A doc as the `nested` list shows it (the baseline's serializer builds it by hand); labels ordered by id. */
export interface DocView { id: number, title: string, owner: { id: number, name: string }, labels: Array<{ id: number, name: string }> }

/**
 * Docs the `nested` op lists, always this many whatever `rows` the flat ops use: the
 * nested list is a page-sized list, so its cost compares with the flat first page of 20.
 */
export const NESTED_ROWS = 20
const OWNERS = 5
const LABELS = 6

/** The owner and the label ids of seeded doc `id`: 2 labels, 3 on every third doc, not always inserted in id order. */
function docRelations (id: number): { owner: number, labels: number[] } {
  const labels = [(id - 1) % LABELS + 1, id % LABELS + 1]
  if (id % 3 === 0) labels.push((id + 2) % LABELS + 1)
  return { owner: (id - 1) % OWNERS + 1, labels }
}

/** What seeded doc `id` looks like in a `nested` reply: the load generator checks replies against it. */
export function seededDoc (id: number): DocView {
  const { owner, labels } = docRelations(id)
  return {
    id,
    title: `doc ${id}`,
    owner: { id: owner, name: `owner ${owner}` },
    labels: [...labels].sort((a, b) => a - b).map((label) => ({ id: label, name: `label ${label}` }))
  }
}

/** Empty the doc tables and seed NESTED_ROWS docs, their owners and labels, with ids 1.. so replies can be checked exactly. */
async function seedDocs (orm: MikroORM): Promise<void> {
  const connection = orm.em.getConnection()
  if (isPostgres(orm)) await connection.execute('truncate table doc_label, doc, owner, label restart identity cascade')
  else for (const table of ['doc_label', 'doc', 'owner', 'label']) await connection.execute(`delete from ${table}`)
  const em = orm.em.fork()
  const owners = Array.from({ length: OWNERS }, (_, i) => em.create(Owner, { id: i + 1, name: `owner ${i + 1}` }))
  const labels = Array.from({ length: LABELS }, (_, i) => em.create(Label, { id: i + 1, name: `label ${i + 1}` }))
  for (let id = 1; id <= NESTED_ROWS; id++) {
    const relations = docRelations(id)
    em.create(Doc, { id, title: `doc ${id}`, owner: owners[relations.owner - 1]!, labels: relations.labels.map((l) => labels[l - 1]!) })
  }
  await em.flush()
  const [counts] = await connection.execute<Array<{ docs: number, links: number }>>(
    // Cast: PostgreSQL's count(*) is a bigint, which its driver hands over as a string.
    'select cast((select count(*) from doc) as integer) as docs, cast((select count(*) from doc_label) as integer) as links')
  let links = 0
  for (let id = 1; id <= NESTED_ROWS; id++) links += docRelations(id).labels.length
  if (counts?.docs !== NESTED_ROWS || counts.links !== links) throw new Error(`seeding gave ${counts?.docs} docs with ${counts?.links} labels, expected ${NESTED_ROWS} with ${links}`)
}

// ---------------------------------------------------------------------------- ORM and seed

/**
 * An ORM on `db`: SQLite `:memory:` (the default) or a SQLite file (with SQLite's own
 * defaults: rollback journal, synchronous FULL), or PostgreSQL given a `postgresql://` URL
 * (the database is created when missing).
 */
export async function openOrm (db: string): Promise<MikroORM> {
  const common = { entities: [Note, Owner, Label, Doc, ...HOOKED_ENTITIES], debug: false, allowGlobalContext: false }
  if (isPostgresUrl(db)) {
    await ensurePgDatabase(db)
    return await PostgreSqlORM.init({ ...common, clientUrl: db })
  }
  return await SqliteORM.init({ ...common, dbName: db })
}

/** What a reset leaves: rows `minId..maxId` (seeded titles), and `deletable` more rows after them for delete runs; the hooked ops' rows. */
export interface SeedInfo extends HookedSeed { minId: number, maxId: number, deletableFrom: number, deletableTo: number }

/**
 * Empty the table and fill it again: `rows` notes with ids 1..rows through the ORM, then
 * `deletable` more (ids rows+1..rows+deletable) by one INSERT … SELECT, which is quick even
 * for hundreds of thousands of rows; and the NESTED_ROWS docs of the `nested` op. The
 * schema itself stays, so no cached statement of either server goes stale.
 */
export async function seed (orm: MikroORM, rows: number, deletable = 0): Promise<SeedInfo> {
  await updateSchema(orm)
  await seedDocs(orm)
  const hooked = await seedHooked(orm, rows)
  const connection = orm.em.getConnection()
  if (isPostgres(orm)) {
    // TRUNCATE: deleting the delete run's hundreds of thousands of rows row by row takes long on PostgreSQL.
    await connection.execute('truncate table note restart identity')
  } else {
    await connection.execute('delete from note')
    const sequence = await connection.execute<Array<{ name: string }>>("select name from sqlite_master where name = 'sqlite_sequence'")
    if (sequence.length > 0) await connection.execute("delete from sqlite_sequence where name = 'note'")
  }
  const em = orm.em.fork()
  for (let i = 1; i <= rows; i++) em.create(Note, { title: seedTitle(i), body: SEED_BODY, done: false })
  await em.flush()
  const ids = await connection.execute<Array<{ lo: number, hi: number, n: number }>>('select min(id) as lo, max(id) as hi, cast(count(*) as integer) as n from note')
  const { lo, hi, n } = ids[0]!
  if (n !== rows || (rows > 0 && (lo !== 1 || hi !== rows))) throw new Error(`seeding gave ids ${lo}..${hi} (${n} rows), expected 1..${rows}`)
  if (deletable > 0) {
    await connection.execute(
      `insert into note (title, body, done, created_at)
       with recursive c(x) as (select 1 union all select x + 1 from c where x < ${deletable})
       select 'doomed ' || x, 'to be deleted', 1 = 0, (select created_at from note order by id limit 1) from c`)
  }
  return { minId: 1, maxId: rows, deletableFrom: rows + 1, deletableTo: rows + deletable, ...hooked }
}
