/**
 * PostgreSQL for the bench: recognising a `postgresql://` URL, creating its database when
 * missing (through the server's `postgres` database, as test/helpers/database.ts does), and
 * naming each server's own database.
 */

/** The `pg` driver's client, as far as this module uses it. */
interface PgClient {
  connect: () => Promise<void>
  query: (sql: string, values?: unknown[]) => Promise<{ rows: unknown[] }>
  end: () => Promise<void>
}

export const isPostgresUrl = (db: string): boolean => /^postgres(ql)?:\/\//.test(db)

/** `url` with any password masked, for messages. */
export const shownUrl = (url: string): string => url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@')

/**
 * Run `fn` with a short-lived client on the server's `postgres` database. The `pg` driver
 * comes with @mikro-orm/postgresql but ships no types: a computed specifier keeps tsc from
 * looking for them.
 */
async function withAdmin<T> (url: string, fn: (client: PgClient) => Promise<T>): Promise<T> {
  const pgModule = 'pg'
  const { default: pg } = await import(pgModule) as { default: { Client: new (config: object) => PgClient } }
  const adminUrl = new URL(url)
  adminUrl.pathname = '/postgres'
  const client = new pg.Client({ connectionString: adminUrl.href, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
    return await fn(client)
  } finally {
    await client.end().catch(() => {})
  }
}

/** The database name of `url` (its path). */
export function databaseName (url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''))
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error(`--pg-url: database name ${JSON.stringify(name)} must be a plain identifier`)
  return name
}

/** Create the database of `url` if it does not exist yet. */
export async function ensurePgDatabase (url: string): Promise<void> {
  const name = databaseName(url)
  await withAdmin(url, async (client) => {
    const found = await client.query('select 1 from pg_database where datname = $1', [name])
    if (found.rows.length > 0) return
    try {
      await client.query(`create database "${name}"`)
    } catch (err) {
      // Another process (the other bench server) created it meanwhile.
      if (!/already exists/.test((err as Error).message)) throw err
    }
  })
}

/** `url` with its database name suffixed: each bench server gets a database of its own. */
export function pgUrlFor (url: string, suffix: string): string {
  const own = new URL(url)
  own.pathname = `/${databaseName(url)}_${suffix}`
  return own.href
}

/** Is PostgreSQL at `url` reachable? The error message when not. */
export async function pgProblem (url: string): Promise<string | undefined> {
  try {
    await withAdmin(url, async (client) => await client.query('select 1'))
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}
