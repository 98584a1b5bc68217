/**
 * What both benchmark servers share: their settings from the environment, the
 * `/__bench/*` HTTP routes the harness drives them with, and how they start and stop.
 *
 * Environment:
 * - `BENCH_DB`: `:memory:` (default), a SQLite file, or a `postgresql://` URL.
 * - `BENCH_SEED`: rows to seed at start (default 1000); `0` leaves the database as it is
 *   (a second server on a file another one seeded).
 * - `BENCH_LAYER`: `memory` (default) or `redis` (plugin server only), with
 *   `BENCH_REDIS_URL` and `BENCH_REDIS_PREFIX`.
 *
 * A server prints `PORT <n>` on stdout once it listens, and exits on SIGTERM/SIGINT and,
 * with `BENCH_WATCH_STDIN=1` (the harness sets it), when its stdin closes, so a harness
 * that dies for any reason never leaves one behind.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { FastifyInstance } from 'fastify'
import { seed } from './entity.js'
import { badPasswords, type HashKind } from './entity-hooked.js'

export interface ServerSettings {
  db: string
  seedRows: number
  layer: 'memory' | 'redis'
  redisUrl: string
  redisPrefix: string
}

export function settings (): ServerSettings {
  const env = process.env
  const layer = env.BENCH_LAYER ?? 'memory'
  if (layer !== 'memory' && layer !== 'redis') throw new Error(`BENCH_LAYER must be memory or redis, got ${layer}`)
  return {
    db: env.BENCH_DB ?? ':memory:',
    seedRows: Number(env.BENCH_SEED ?? 1000),
    layer,
    redisUrl: env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    redisPrefix: env.BENCH_REDIS_PREFIX ?? 'wsrest-bench:'
  }
}

/**
 * `GET /__bench/memory`: two full GCs, then `process.memoryUsage()`.
 * `POST /__bench/reset {rows, deletable}`: reseed the table (see `seed`), answers its SeedInfo.
 * `POST /__bench/verify {hash, sample}`: check the stored password hashes of the latest sign-ups.
 */
export function benchRoutes (app: FastifyInstance, orm: MikroORM): void {
  app.get('/__bench/memory', async () => {
    const gc = globalThis.gc
    if (gc === undefined) throw new Error('run the server with --expose-gc')
    gc()
    gc()
    return process.memoryUsage()
  })
  app.post<{ Body: { rows?: number, deletable?: number } }>('/__bench/reset', async (request) => {
    const { rows = 1000, deletable = 0 } = request.body ?? {}
    return await seed(orm, rows, deletable)
  })
  app.post<{ Body: { hash: HashKind, sample?: number } }>('/__bench/verify', async (request) => {
    return await badPasswords(orm, request.body.hash, request.body.sample ?? 1000)
  })
}

/**
 * The owner a `/ws/tasks/` connection is scoped to, from its upgrade URL's `?owner=N`; 0
 * (owns nothing) without a valid one. An app would take it from its authenticated user.
 */
export function scopeOf (query: unknown): number {
  const owner = Number((query as Record<string, unknown> | undefined)?.owner)
  return Number.isSafeInteger(owner) && owner > 0 ? owner : 0
}

/** Seed as configured, listen on a free port, say which, and exit cleanly when told or orphaned. */
export async function start (app: FastifyInstance, orm: MikroORM, config: ServerSettings): Promise<void> {
  if (config.seedRows > 0) await seed(orm, config.seedRows)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    // app.close() lets in-flight work finish; a server that cannot must still go.
    setTimeout(() => process.exit(0), 3_000).unref()
    app.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (process.env.BENCH_WATCH_STDIN === '1') {
    process.stdin.on('end', stop)
    process.stdin.on('error', stop)
    process.stdin.resume()
  }
  process.stdout.write(`PORT ${address.port}\n`)
}
