/**
 * The database every test runs on, chosen in one place.
 *
 * - `DATABASE_URL` unset: SQLite, in memory (a file when a test must reopen it).
 * - `DATABASE_URL=postgresql://…`: PostgreSQL. Each database a test asks for is a fresh
 *   `wsrest_<random>` created through the URL's database and dropped (`WITH (FORCE)`) in
 *   teardown after its ORMs are closed, so test files stay isolated when tap runs them
 *   in parallel.
 *
 * When `DATABASE_URL` is set but PostgreSQL cannot be reached, a file that imports this
 * module fails to load when `REQUIRE_SERVICES=1` (CI), and is skipped with the reason
 * otherwise.
 */
import type { Teardown } from './async.js'
import type { LogContext, MikroORM } from '@mikro-orm/core'
import { MikroORM as PostgreSqlORM } from '@mikro-orm/postgresql'
import { MikroORM as SqliteORM } from '@mikro-orm/sqlite'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tap from 'tap'
import { updateSchema } from '../../lib/orm-compat.js'


const url = process.env.DATABASE_URL === '' ? undefined : process.env.DATABASE_URL

/** Which database the tests run on. */
export const dialect: 'sqlite' | 'postgresql' = url === undefined ? 'sqlite' : 'postgresql'

/** `url` with any password masked, for messages. */
function shown (url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@')
}

if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
  throw new Error(`DATABASE_URL must be a postgresql:// URL (or unset for SQLite), got ${shown(url)}`)
}

/** Options every test ORM shares. */
const common = { debug: false, allowGlobalContext: false } as const

/** The `pg` driver's client, as far as {@link admin} uses it. */
interface PgClient { connect: () => Promise<void>, query: (sql: string) => Promise<unknown>, end: () => Promise<void> }

/**
 * Run `sql` on the URL's own database over a short-lived connection, with the `pg` driver
 * that both MikroORM majors' PostgreSQL packages bring (MikroORM 6 re-exported knex, 7 does
 * not). `pg` ships no types of its own: a computed specifier keeps tsc from looking for them.
 */
async function admin (sql: string): Promise<void> {
  const pgModule = 'pg'
  const { default: pg } = await import(pgModule) as { default: { Client: new (config: object) => PgClient } }
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
    await client.query(sql)
  } finally {
    await client.end().catch(() => {})
  }
}

// Is the service there? Checked once per test file, before any test is declared.
if (url !== undefined) {
  const problem = await admin('select 1').then(() => undefined, (err: Error) => err.message)
  if (problem !== undefined) {
    const reason = `PostgreSQL at ${shown(url)} is not available (${problem})`
    if (process.env.REQUIRE_SERVICES === '1') {
      throw new Error(`${reason}; REQUIRE_SERVICES=1 makes this a failure`)
    }
    tap.plan(0, `${reason}; unset DATABASE_URL to run on SQLite, or set REQUIRE_SERVICES=1 to fail instead`)
    process.exit(0)
  }
}

/** A database of its own for one test, removed in that test's teardown. */
export interface TestDatabase {
  /** The options that make the example's `buildApp` use this database. */
  readonly exampleOptions: { db: string } | { databaseUrl: string }
  /**
   * A MikroORM on this database, closed in teardown if the test has not closed it.
   * A `reopenable` database can be opened again after a close to see what was committed.
   */
  open: (entities: any[]) => Promise<MikroORM>
}

/** Create a fresh database; `reopenable` keeps SQLite in a file instead of in memory. */
export async function createDatabase (t: Teardown, options: { reopenable?: boolean } = {}): Promise<TestDatabase> {
  const opened: MikroORM[] = []
  const closeAll = async (): Promise<void> => {
    for (const orm of opened) await orm.close(true)
  }

  if (url === undefined) {
    let dbName = ':memory:'
    if (options.reopenable === true) {
      const dir = mkdtempSync(join(tmpdir(), 'wsrest-'))
      dbName = join(dir, 'db.sqlite3')
      t.teardown(async () => { await closeAll(); rmSync(dir, { recursive: true, force: true }) })
    } else {
      t.teardown(closeAll)
    }
    return {
      exampleOptions: { db: dbName },
      open: async (entities) => {
        const orm = await SqliteORM.init({ ...common, dbName, entities })
        opened.push(orm)
        return orm
      }
    }
  }

  const name = `wsrest_${randomBytes(6).toString('hex')}`
  await admin(`CREATE DATABASE "${name}"`)
  // Runs after the teardowns the test registers later (tap runs them last-in, first-out),
  // so the app and its ORM are closed before the database goes.
  t.teardown(async () => {
    await closeAll()
    await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
  })
  const clientUrl = new URL(url)
  clientUrl.pathname = `/${name}`
  return {
    exampleOptions: { databaseUrl: clientUrl.href },
    open: async (entities) => {
      const orm = await PostgreSqlORM.init({ ...common, clientUrl: clientUrl.href, entities })
      opened.push(orm)
      return orm
    }
  }
}

/** A MikroORM on a fresh database of its own with the schema of `entities` created. */
export async function initOrm (t: Teardown, entities: any[]): Promise<MikroORM> {
  const orm = await (await createDatabase(t)).open(entities)
  await updateSchema(orm)
  return orm
}

/** Every SQL statement `orm` runs from now on (a spy on its query logger). */
export function spyQueries (orm: MikroORM): string[] {
  const seen: string[] = []
  const logger = orm.config.getLogger()
  const original = logger.logQuery.bind(logger)
  logger.logQuery = (context: LogContext) => {
    seen.push(String(context.query))
    original(context)
  }
  return seen
}
