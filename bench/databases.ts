/**
 * The databases the ops part runs on (`--db memory,file,postgres`), and what each server of
 * a run gets on it:
 *
 * - `memory`: in-memory SQLite: the framework's own cost shows.
 * - `file`: a durable SQLite file with SQLite's defaults (rollback journal, synchronous
 *   FULL: every commit waits for fsync), in a fresh temporary directory per server start,
 *   on the disk of `os.tmpdir()` (never /dev/shm): what a small deployment runs.
 * - `postgres`: PostgreSQL at `--pg-url`, one database per server (`<name>_baseline`,
 *   `<name>_plugin`, created when missing): what a larger deployment runs. The database
 *   server is not pinned: it runs on whichever core is free, and its CPU time is not in
 *   the servers' µs/request.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pgUrlFor } from './pg.js'
import type { ServerKind } from './servers.js'

export const DATABASES = ['memory', 'file', 'postgres'] as const
export type DbKind = typeof DATABASES[number]

/** Parse `--db a,b`: known names, each once, in the order given. */
export function parseDatabases (value: string): DbKind[] {
  const kinds = value.split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (const kind of kinds) if (!(DATABASES as readonly string[]).includes(kind)) throw new Error(`--db: unknown database ${kind} (known: ${DATABASES.join(', ')})`)
  return [...new Set(kinds)] as DbKind[]
}

/** One server's database: the `BENCH_DB` it is started with, and what to remove once it stopped. */
export interface ServerDb {
  benchDb: string
  cleanup: () => void
}

export function serverDb (kind: DbKind, server: ServerKind, pgUrl: string): ServerDb {
  switch (kind) {
    case 'memory':
      return { benchDb: ':memory:', cleanup: () => {} }
    case 'file': {
      const dir = mkdtempSync(join(tmpdir(), `wsrest-bench-${server}-`))
      return { benchDb: join(dir, 'bench.sqlite3'), cleanup: () => { rmSync(dir, { recursive: true, force: true }) } }
    }
    case 'postgres':
      return { benchDb: pgUrlFor(pgUrl, server), cleanup: () => {} }
  }
}

/** The file system type under os.tmpdir() (ext4, overlay, tmpfs…): the `file` numbers depend on it. */
export function tmpFileSystem (): string {
  try {
    return execFileSync('stat', ['-f', '-c', '%T', tmpdir()], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}
