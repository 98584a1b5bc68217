/**
 * `npm run example`: the example server of docs/example.md.
 *
 * HOST (127.0.0.1), PORT (8000), DB (SQLite file, default example.sqlite3; ':memory:' for
 * a fresh one), DATABASE_URL (a postgresql://… URL: PostgreSQL instead of SQLite),
 * REDIS_URL (share subscriptions with every example process on that Redis; REDIS_PREFIX
 * keeps groups of processes apart, default `wsrest:`; PRESENCE_TTL_MS: how long a killed process's
 * sockets stay in the /ws/presence/ count, default 5000), JWT_SECRET (signs the tokens of
 * `POST /token` for `/ws/jwt/`; default: random per process, with a warning). Logs
 * `listening on ws://HOST:PORT` once ready; SIGINT/SIGTERM close it gracefully (in-flight
 * writes finish, sockets close with 1001).
 */
import { buildApp } from './app.js'

const host = process.env.HOST ?? '127.0.0.1'
const port = Number(process.env.PORT ?? 8000)

const { app } = await buildApp({
  db: process.env.DB ?? 'example.sqlite3',
  databaseUrl: process.env.DATABASE_URL,
  redisUrl: process.env.REDIS_URL,
  redisPrefix: process.env.REDIS_PREFIX,
  presenceTtlMs: process.env.PRESENCE_TTL_MS === undefined || process.env.PRESENCE_TTL_MS === '' ? undefined : Number(process.env.PRESENCE_TTL_MS),
  jwtSecret: process.env.JWT_SECRET,
  fastify: {
    // Tokens travel in query strings here (`/ws/jwt/?token=`, `/ws/secure/?token=`): buildApp's
    // safeLoggerOptions logs paths without their query and redacts tokens from every line.
    logger: { level: process.env.LOG_LEVEL ?? 'info' }
  }
})

await app.listen({ host, port })
app.log.info(`listening on ws://${host}:${port}`)

let closing = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  })
}
