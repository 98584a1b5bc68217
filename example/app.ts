/**
 * The example application: a Fastify app with fastify-ws-rest serving the `User` entity
 * on the routes of docs/example.md. `server.ts` runs it; the tests build it in-process.
 *
 * Read it top to bottom as the walkthrough of the README.
 */
import type { MikroORM } from '@mikro-orm/core'
import { MikroORM as SqliteORM } from '@mikro-orm/sqlite'
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import wsRest, { defineRoute, mixins, permissions, RedisLayer, type BroadcastLayer, type ModelOptions, type Permission } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { jwtAuth, ownRowOnly, registerAuth, selectProtocol, tokenDeadline, tokenStillValid, whoami, type TokenPayload, type TokenUser } from './auth.js'
import { registerPage } from './page.js'
import { hashPassword } from './password.js'
import { Post, PostInput, PostPublic, Tag, TagCreate, TagPublic } from './post.js'
import { registerPresence } from './presence.js'
import { User, UserCreate, UserPublic, UserUpdate } from './user.js'

/** The roles the `/ws/secure/` route knows, by the `?token=` they come with. */
type Role = 'reader' | 'admin'

// @fastify/jwt declares `request.user`; its type is set here, through @fastify/jwt's own interface.
declare module '@fastify/jwt' {
  interface FastifyJWT {
    /** What the example's tokens carry (auth.ts). */
    payload: TokenPayload
    /** A role on /ws/secure/ (from `?token=`), the token's user on /ws/jwt/, else null. */
    user: { role: Role } | TokenUser | null
  }
}

export interface ExampleOptions {
  /** SQLite file path, or ':memory:'. Default `example.sqlite3`. Ignored when `databaseUrl` is set. */
  db?: string
  /** A `postgresql://…` URL: use PostgreSQL (the database is created if missing) instead of SQLite. */
  databaseUrl?: string
  /** Fastify server options (logger, …). */
  fastify?: FastifyServerOptions
  /** A `redis://…` URL: share subscriptions with every example process using the same Redis (default: in-process). */
  redisUrl?: string
  /** The Redis channel prefix (default `wsrest:`); processes share subscriptions only with the same prefix. */
  redisPrefix?: string
  /**
   * With `redisUrl`: how long (ms) the sockets of a process that stopped without closing (killed,
   * crashed) stay in the `/ws/presence/` count (default 5,000; presence.ts).
   */
  presenceTtlMs?: number
  /** Secret that signs and checks the JWTs of `/ws/jwt/` (default: random per process, with a warning). */
  jwtSecret?: string
}

/** The model part shared by every route: entity, schemas, and how a user is created. */
const userModel: ModelOptions<User, typeof UserCreate, typeof UserUpdate, typeof UserPublic> = {
  entity: User,
  schema: { create: UserCreate, update: UserUpdate, response: UserPublic },
  validate: {
    create: (data) => data.password1 !== undefined && data.password2 !== undefined && data.password1 !== data.password2
      ? { password2: ['Passwords do not match.'] }
      : undefined
  },
  // The client sends password1/password2; the row stores a hash of it. Hashed before the
  // write (prepareCreate), so no transaction waits on scrypt and sign-ups of many sockets
  // are still written together in one flush.
  async prepareCreate (ctx, data) {
    return { username: data.username, email: data.email ?? '', password: await hashPassword(data.password1) }
  }
}

/** Connect-time check of the secure route: a known token, or HTTP 403 and no socket. */
async function tokenAuth (request: FastifyRequest<{ Querystring: { token?: string } }>, reply: import('fastify').FastifyReply): Promise<void> {
  const token = request.query.token
  if (token !== 'reader' && token !== 'admin') {
    await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: 'A valid token is required.' })
    return
  }
  request.user = { role: token }
}

/** On the secure route, only an admin may delete. */
const adminMayDelete: Permission = {
  hasPermission (ctx, action) {
    const user = ctx.request.user
    return action !== 'delete' || (user !== null && 'role' in user && user.role === 'admin')
  }
}

/**
 * The full user API: CRUD, filtered lists, and live subscriptions to a row or to a
 * filtered list. Exported for the typed client: `createClient<typeof users>(url)` (an
 * `import type`, as example/public/app.js and test/client-types.test.ts do).
 */
export const users = defineRoute({
  ...userModel,
  // list and subscribe_list take {"filter": {...}} and {"search": "..."} on these fields only.
  filterFields: ['id', 'username', 'email'],
  orderingFields: ['id', 'username'],
  searchFields: ['username', 'email'],
  actions: [
    mixins.create(), mixins.list(), mixins.retrieve(),
    mixins.update(), mixins.patch(), mixins.delete(),
    mixins.subscribeInstance(), mixins.subscribeList()
  ]
})

/** Tags: create (a duplicate name → 400 keyed `name`), list, retrieve, delete (taken off every post that had it). */
export const tags = defineRoute({
  entity: Tag,
  schema: { create: TagCreate, response: TagPublic },
  actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.delete()]
})

/**
 * Posts, with relations both ways: in, related rows by key (`"author": 3`, `"tags": [1, 2]`;
 * a missing one → 400 `Invalid pk "999" - object does not exist.`); out, author and tags
 * nested in every reply and event. Lists filter, order and search across the relations.
 */
export const posts = defineRoute({
  entity: Post,
  schema: { create: PostInput, update: PostInput, response: PostPublic },
  filterFields: ['id', 'title', 'author', 'tags', 'author.username'],
  orderingFields: ['id', 'title', 'author.username'],
  searchFields: ['title', 'body', 'author.username'],
  actions: [
    mixins.create(), mixins.list(), mixins.retrieve(),
    mixins.update(), mixins.patch(), mixins.delete(),
    mixins.subscribeInstance(), mixins.subscribeList()
  ]
})

/** The ORM on PostgreSQL when a `databaseUrl` is given, else on the SQLite file `db`. */
async function initOrm (options: ExampleOptions): Promise<MikroORM> {
  const common = { entities: [User, Post, Tag], debug: false, allowGlobalContext: false }
  const url = options.databaseUrl
  if (url === undefined || url === '') {
    return await SqliteORM.init({ ...common, dbName: options.db ?? 'example.sqlite3' })
  }
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new Error('databaseUrl must be a postgresql:// URL')
  }
  // Loaded only here, so a SQLite-only setup does not need the PostgreSQL driver.
  const { MikroORM: PostgreSqlORM } = await import('@mikro-orm/postgresql')
  return await PostgreSqlORM.init({ ...common, clientUrl: url })
}

/** The Redis layer when a URL is given (several example processes then share subscriptions), else in-process. */
function broadcastLayer (options: ExampleOptions): BroadcastLayer | undefined {
  if (options.redisUrl === undefined || options.redisUrl === '') return undefined
  return new RedisLayer({ url: options.redisUrl, prefix: options.redisPrefix === '' ? undefined : options.redisPrefix })
}

/**
 * A URL's query string, wherever a log line quotes one (`Route GET:/ws/jwt?token=… not
 * found`): a `?` followed by parameters, up to the next space or quote. Redacted whole:
 * names and values may be percent-encoded (`?%74oken=admin` is `?token=admin` to the
 * query parser), so no list of secret names could be trusted to recognise them.
 */
const QUERY = /\?[^\s"'<>]*=[^\s"'<>]*/g
/** A JWT wherever it appears (`eyJ` is the base64url of `{"`, how every JWT header starts). */
const JWT_SHAPED = /\beyJ[\w-]*\.[\w-]*\.[\w-]*/g

/** `text` with every query string and every JWT replaced by `[redacted]`. */
export function redactSecrets (text: string): string {
  return text.replace(QUERY, '?[redacted]').replace(JWT_SHAPED, '[redacted]')
}

/**
 * The logger options of `options.fastify.logger`, made safe for credentials in URLs:
 * tokens travel in query strings here, and Fastify puts the raw URL in its request line
 * (`req.url`) and in the message of every 404 (`Route GET:/ws/jwt?token=… not found`).
 * The `req` serializer logs the path without its query string; a `logMethod` hook
 * redacts query strings and JWTs from every message and top-level string field, for the
 * log lines no serializer sees. A `loggerInstance` is the app's own and left alone.
 */
export function safeLoggerOptions (logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === undefined || logger === false) return logger
  const base = (logger === true ? {} : logger) as Exclude<FastifyServerOptions['logger'], boolean | undefined> & Record<string, any>
  return {
    ...base,
    serializers: {
      req: (req: { method: string, url: string, ip?: string }) => ({ method: req.method, url: req.url.split('?')[0], remoteAddress: req.ip }),
      ...base.serializers
    },
    hooks: {
      ...base.hooks,
      logMethod (args: unknown[], method: (...args: unknown[]) => void) {
        const safe = args.map((arg) => {
          if (typeof arg === 'string') return redactSecrets(arg)
          if (arg === null || typeof arg !== 'object' || arg instanceof Error) return arg
          const fields = arg as Record<string, unknown>
          if (!Object.values(fields).some((v) => typeof v === 'string')) return arg
          return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, typeof v === 'string' ? redactSecrets(v) : v]))
        })
        const next = base.hooks?.logMethod as ((this: unknown, a: unknown[], m: unknown, l: number) => void) | undefined
        if (next !== undefined) { next.call(this, safe, method, arguments[2] as number); return }
        method.apply(this, safe)
      }
    }
  } as FastifyServerOptions['logger']
}

/** Build the example app (not listening). Closing the app closes the ORM. */
export async function buildApp (options: ExampleOptions = {}): Promise<{ app: FastifyInstance, orm: MikroORM }> {
  const orm = await initOrm(options)
  await updateSchema(orm)

  const fastifyOptions = options.fastify ?? { logger: false }
  const app = Fastify({ ...fastifyOptions, logger: safeLoggerOptions(fastifyOptions.logger) })
  app.addHook('onClose', async () => { await orm.close() })

  // @fastify/jwt, `POST /token`, and `request.user` (null until a hook sets it).
  await registerAuth(app, orm, options.jwtSecret)
  await registerPage(app)

  await app.register(wsRest, {
    orm,
    broadcast: broadcastLayer(options),
    // The AsyncAPI 3.0 document of every route below, at GET /asyncapi.json.
    asyncapi: { path: '/asyncapi.json', info: { title: 'fastify-ws-rest example' } },
    // A browser sending its token as subprotocols needs one of them answered: `access_token`.
    websocket: { options: { handleProtocols: selectProtocol } }
  })

  app.wsRest.route('/ws/', users)
  // Who is online, with a frame to every socket of the route when one opens or closes (presence.ts).
  await registerPresence(app, { redisUrl: options.redisUrl, redisPrefix: options.redisPrefix, ttlMs: options.presenceTtlMs })
  app.wsRest.route('/ws/tags/', tags)
  app.wsRest.route('/ws/posts/', posts)

  // The same API as stream "users" of a multiplexed socket, as DCRF front ends (dcrf-client) use it.
  app.wsRest.multiplex('/ws/multiplex/', { streams: { users } })

  app.wsRest.route('/ws/paginated/', {
    ...userModel,
    actions: [mixins.paginatedList({ defaultLimit: 2 })]
  })

  app.wsRest.route('/ws/cursor/', {
    ...userModel,
    actions: [mixins.cursorList({ defaultLimit: 2 })]
  })

  app.wsRest.route('/ws/stream/', {
    ...userModel,
    actions: [mixins.streamedList({ defaultLimit: 2 })]
  })

  app.wsRest.route('/ws/secure/', {
    ...userModel,
    onRequest: tokenAuth as import('fastify').onRequestHookHandler,
    permissions: [permissions.isAuthenticated, adminMayDelete],
    actions: [mixins.list(), mixins.retrieve(), mixins.delete()]
  })

  // JWT from `POST /token`, sent as subprotocols `access_token, <jwt>`, `Authorization: Bearer` or `?token=`
  // (auth.ts); no valid token, or its user deleted → HTTP 401. Everyone may read, each user patch only
  // their own row. At the token's `exp` the socket closes with 4001 "Token expired"; an action of a
  // user deleted since gets 403 and the socket closes with 4003 "User no longer exists" (auth.ts).
  // Its subscriptions are resumable (docs/live-data.md): `request.user` names who may resume them.
  // On the routes without users they are not: an address is no principal.
  app.wsRest.route('/ws/jwt/', {
    ...userModel,
    onRequest: jwtAuth(orm),
    // The socket's deadline, from the token's `exp`: armed on connect, cleared on disconnect.
    ...tokenDeadline,
    permissions: [permissions.isAuthenticated, tokenStillValid, ownRowOnly],
    actions: [mixins.list(), mixins.retrieve(), mixins.patch(), mixins.subscribeInstance(), mixins.subscribeList(), whoami]
  })

  return { app, orm }
}
