/**
 * JWT authentication for the example's `/ws/jwt/` route, with @fastify/jwt.
 *
 * - `POST /token` with `{username, password}` of a user created on `/ws/` answers `{token}`,
 *   a JWT valid for one hour. At most {@link TOKEN_RATE_LIMIT} attempts a minute per client
 *   address (past it, HTTP 429 with `retry-after`): every attempt costs a scrypt hash.
 * - The upgrade to `/ws/jwt/` carries the token in the `Sec-WebSocket-Protocol` header, as
 *   the two subprotocols `access_token, <jwt>` (what a browser sends for
 *   `new WebSocket(url, ['access_token', token])`; the server answers `access_token`), or
 *   as `Authorization: Bearer <jwt>` (clients other than browsers), or as `?token=<jwt>`.
 *   A missing, malformed, wrongly signed or expired token refuses the upgrade with HTTP 401,
 *   and so does a token not signed with HS256, one without `exp`, or one whose user no
 *   longer exists.
 * - `request.user` is then `{id, username}`, for permissions (`ctx.request.user`) and handlers.
 * - A socket lives no longer than its token: at the token's `exp` the server closes it with
 *   {@link CLOSE_TOKEN_EXPIRED} (4001, "Token expired"); an action that arrives after `exp`
 *   (before the timer ran) gets 403, then the socket is closed the same way. The client
 *   gets a fresh token from `POST /token` and reconnects.
 * - Nor than its user: an action on the socket of a user deleted since the upgrade gets
 *   403, then the socket is closed with {@link CLOSE_USER_GONE} (4003, "User no longer exists").
 */
import fastifyJwt from '@fastify/jwt'
import fastifyRateLimit from '@fastify/rate-limit'
import type { MikroORM } from '@mikro-orm/core'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import { randomBytes } from 'node:crypto'
import { action, PermissionDenied, type ActionContext, type Permission } from '../index.js'
import { hashPassword, verifyPassword } from './password.js'
import { User } from './user.js'

/**
 * The subprotocol a client offers beside its token. Browsers cannot set `Authorization` on
 * a WebSocket, but they can offer subprotocols; the server must then select one of them
 * (this one, never the token), or the browser fails the handshake.
 */
export const TOKEN_PROTOCOL = 'access_token'

/** Close code (application range 4000–4999) of a socket whose token expired; the reason is {@link TOKEN_EXPIRED}. */
export const CLOSE_TOKEN_EXPIRED = 4001
export const TOKEN_EXPIRED = 'Token expired'
/** Close code of a socket whose token's user was deleted; the reason is {@link USER_GONE}. */
export const CLOSE_USER_GONE = 4003
export const USER_GONE = 'User no longer exists'

/** `POST /token` attempts per client address per minute. */
export const TOKEN_RATE_LIMIT = 10

/** The only algorithm accepted: the token's own header must not choose how it is checked. */
const ALGORITHM = 'HS256'

/** What the example's tokens carry: the user's id as `sub` (a string, as RFC 7519 has it) and the username. */
export interface TokenPayload { sub: string, username: string }

/** `request.user` after a token was verified (`formatUser` below turns the payload into it). */
export interface TokenUser { id: number, username: string }

/**
 * The token of a request: the subprotocol after `access_token` if that is offered, else
 * `Authorization: Bearer`, else `?token=`. (@fastify/jwt's `extractToken` replaces its own
 * lookup for every `request.jwtVerify()`, so the Authorization header is kept here.)
 */
export function tokenOf (request: FastifyRequest): string | undefined {
  const header = request.headers['sec-websocket-protocol']
  if (header !== undefined) {
    const offered = header.split(',').map((p) => p.trim())
    const at = offered.indexOf(TOKEN_PROTOCOL)
    // A client that offers `access_token` means the entry after it; no falling back to the others.
    if (at !== -1) return offered[at + 1] === '' ? undefined : offered[at + 1]
  }
  const bearer = /^Bearer +(\S+)$/i.exec(request.headers.authorization ?? '')
  if (bearer !== null) return bearer[1]
  const token = (request.query as Record<string, unknown>).token
  // `?token=a&token=b` parses to an array: refused rather than guessed.
  return typeof token === 'string' && token !== '' ? token : undefined
}

/**
 * ws's `handleProtocols`: answer `access_token` when it is offered. Every other client gets
 * what ws picks without this hook, the first subprotocol offered, so the example's other
 * routes behave as before.
 */
export function selectProtocol (offered: Set<string>): string | false {
  if (offered.has(TOKEN_PROTOCOL)) return TOKEN_PROTOCOL
  return offered.values().next().value ?? false
}

/** When each authenticated upgrade's token expires (ms since the epoch), by its request. */
const expiries = new WeakMap<FastifyRequest, number>()
/** The timer closing each open socket at its token's expiry, by its upgrade request. */
const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>()

/** Longest delay setTimeout honours; a longer one would fire at once. */
const MAX_DELAY = 2 ** 31 - 1

/** Close the socket of `ctx` with 4001 at its token's expiry, re-arming for a token that outlives one timer. */
function closeAtExpiry (ctx: ActionContext): void {
  const expiresAt = expiries.get(ctx.request)
  if (expiresAt === undefined) return
  const delay = expiresAt - Date.now()
  if (delay <= 0) {
    ctx.close(CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED)
    return
  }
  // Unref'd: a timer must not keep the process alive; onDisconnect clears it earlier.
  timers.set(ctx.request, setTimeout(() => closeAtExpiry(ctx), Math.min(delay, MAX_DELAY)).unref())
}

/**
 * The `/ws/jwt/` route's lifecycle: the socket is given its token's deadline when it opens
 * (closed with 4001 at `exp`), and the timer goes when the socket does.
 */
export const tokenDeadline = {
  onConnect: closeAtExpiry,
  onDisconnect (ctx: ActionContext): void {
    clearTimeout(timers.get(ctx.request))
  }
}

/**
 * The `/ws/jwt/` upgrade hook: verify the token (which sets `request.user`) and that its
 * user still exists, or refuse the upgrade with 401. Why it failed goes to the log only:
 * the client learns nothing that would help forge a token, and a browser cannot read an
 * upgrade's body anyway.
 */
export function jwtAuth (orm: MikroORM): onRequestHookHandler {
  return async function jwtAuth (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    let why: unknown
    try {
      const user = await request.jwtVerify<TokenUser>()
      // A token outlives a deleted user; it must not outlive it here.
      if (await orm.em.fork().count(User, { id: user.id }) === 1) {
        // Verified, so the decoded `exp` (required by the verifier) is the token's own.
        const { exp } = request.server.jwt.decode<{ exp: number }>(tokenOf(request)!)!
        expiries.set(request, exp * 1000)
        return
      }
      why = 'USER_GONE'
    } catch (err) {
      why = (err as { code?: unknown }).code
    }
    request.user = null
    request.log.info({ code: why }, 'example: upgrade refused, no valid token')
    await reply.code(401).header('www-authenticate', 'Bearer').send({
      statusCode: 401, error: 'Unauthorized', message: 'A valid token is required.'
    })
  }
}

/**
 * How long a subscription's events may rely on the last check that the token's user still
 * exists (ms). Every event of a subscription runs its action's permissions again; a count
 * query per event per subscriber would make the database the bottleneck of every fan-out
 * (the soak's subscribers were closed as too slow: 1,024 events waiting for their checks).
 * Actions other than subscribing always ask the database.
 */
export const USER_CHECK_REUSE_MS = 1_000

/** Per socket: the last check that its user exists, when it was started, and its answer (shared while it runs). */
const userChecks = new WeakMap<FastifyRequest, { at: number, exists: Promise<boolean> }>()

/** Subscribing actions: their permissions run again before each event of the subscription. */
const SUBSCRIBING = new Set(['subscribe_instance', 'subscribe_list'])

/** Whether the user of `ctx`'s token still exists: one count, or for a subscription's events, a recent one. */
async function userExists (ctx: ActionContext): Promise<boolean> {
  const user = ctx.request.user
  if (user === null || !('id' in user)) return false
  const now = Date.now()
  const last = userChecks.get(ctx.request)
  if (last !== undefined && SUBSCRIBING.has(ctx.action) && now - last.at < USER_CHECK_REUSE_MS) return await last.exists
  const exists = ctx.em.count(User, { id: user.id }).then((n) => n === 1)
  userChecks.set(ctx.request, { at: now, exists })
  return await exists
}

/**
 * Before every action on `/ws/jwt/`: the token must not have expired, and its user must
 * still exist (one primary-key count per action). Otherwise the action gets 403 and, once
 * that reply is out, the socket closes: 4001 at `exp` ({@link tokenDeadline} closes it at
 * that time anyway; this covers an action arriving in between, as timers run late under
 * load), 4003 for a deleted user. The client learns why from the close code. Events of a
 * subscription are checked the same way, but reuse a count up to {@link USER_CHECK_REUSE_MS}
 * old: a deleted user's subscriptions end within that time.
 */
export const tokenStillValid: Permission = {
  async hasPermission (ctx) {
    const expiresAt = expiries.get(ctx.request)
    if (expiresAt === undefined || Date.now() >= expiresAt) return closeAfterReply(ctx, CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED)
    if (!await userExists(ctx)) return closeAfterReply(ctx, CLOSE_USER_GONE, USER_GONE)
    return true
  }
}

/** Refuse the action (403) and close the socket with `code` after that reply has been written. */
function closeAfterReply (ctx: ActionContext, code: number, reason: string): false {
  setImmediate(() => ctx.close(code, reason))
  return false
}

/** On `/ws/jwt/`, a user may patch only their own row: another pk gets 403, before any lookup. */
export const ownRowOnly: Permission = {
  hasPermission (ctx, action, args) {
    if (action !== 'patch') return true
    const user = ctx.request.user
    return user !== null && 'id' in user && String(args.pk) === String(user.id)
  }
}

/**
 * `whoami`: the user the connection's token names, as `request.user` holds it — if that
 * user still exists (a deleted user's open socket gets 403, not the name of someone gone).
 */
export const whoami = action('whoami', async (ctx) => {
  if (!await userExists(ctx)) throw new PermissionDenied()
  return { data: ctx.request.user }
})

const TokenRequest = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 150 }),
  password: Type.String({ minLength: 1, maxLength: 1024 })
}, { additionalProperties: false })

/**
 * Register @fastify/jwt (it decorates `request.user`, null until a token is verified) and
 * `POST /token`. Without a `secret` a random one is made for this process and a warning
 * logged: a fixed default secret would let anyone who read this file forge tokens for
 * every server that forgot to set one.
 */
export async function registerAuth (app: FastifyInstance, orm: MikroORM, secret: string | undefined): Promise<void> {
  if (secret === undefined || secret === '') {
    app.log.warn('JWT_SECRET is not set: using a random development secret; tokens are valid for this process only')
    secret = randomBytes(32).toString('base64url')
  }
  await app.register(fastifyJwt, {
    secret,
    sign: { expiresIn: '1h', algorithm: ALGORITHM },
    // Pinned: without it the verifier takes any HMAC algorithm the token's header names.
    // `exp` required: a token without one would be valid forever.
    verify: { extractToken: tokenOf, algorithms: [ALGORITHM], requiredClaims: ['exp'] },
    formatUser: (payload) => ({ id: Number(payload.sub), username: payload.username })
  })

  // Compared against when the username is unknown, so the time taken does not tell which usernames exist.
  let decoy: Promise<string> | undefined

  // Only routes that ask for it are limited (`config.rateLimit`): the WebSocket routes have limits of their own.
  await app.register(fastifyRateLimit, { global: false })

  app.post<{ Body: Static<typeof TokenRequest> }>('/token', {
    schema: { body: TokenRequest },
    // Each attempt hashes a password (scrypt): unlimited, a client guessing passwords takes the CPU.
    config: { rateLimit: { max: TOKEN_RATE_LIMIT, timeWindow: '1 minute' } }
  }, async (request, reply) => {
    const { username, password } = request.body
    const user = await orm.em.fork().findOne(User, { username })
    const stored = user?.password ?? await (decoy ??= hashPassword(randomBytes(16).toString('hex')))
    if (!(await verifyPassword(password, stored)) || user === null) {
      return await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Invalid username or password.' })
    }
    return { token: await reply.jwtSign({ sub: String(user.id), username: user.username }) }
  })
}
