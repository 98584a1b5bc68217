/**
 * JWT authentication for the example's `/ws/jwt/` route, with @fastify/jwt.
 *
 * - `POST /token` with `{username, password}` of a user created on `/ws/` answers `{token}`,
 *   a JWT valid for one hour.
 * - The upgrade to `/ws/jwt/` carries the token in the `Sec-WebSocket-Protocol` header, as
 *   the two subprotocols `access_token, <jwt>` (what a browser sends for
 *   `new WebSocket(url, ['access_token', token])`; the server answers `access_token`), or
 *   as `Authorization: Bearer <jwt>` (clients other than browsers), or as `?token=<jwt>`.
 *   A missing, malformed, wrongly signed or expired token refuses the upgrade with HTTP 401.
 * - `request.user` is then `{id, username}`, for permissions (`ctx.request.user`) and handlers.
 */
import fastifyJwt from '@fastify/jwt'
import type { MikroORM } from '@mikro-orm/core'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { randomBytes } from 'node:crypto'
import { action, type Permission } from '../index.js'
import { hashPassword, verifyPassword } from './password.js'
import { User } from './user.js'

/**
 * The subprotocol a client offers beside its token. Browsers cannot set `Authorization` on
 * a WebSocket, but they can offer subprotocols; the server must then select one of them
 * (this one, never the token), or the browser fails the handshake.
 */
export const TOKEN_PROTOCOL = 'access_token'

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

/**
 * The `/ws/jwt/` upgrade hook: verify the token (which sets `request.user`), or refuse the
 * upgrade with 401. Why it failed goes to the log only: the client learns nothing that
 * would help forge a token, and a browser cannot read an upgrade's body anyway.
 */
export async function jwtAuth (request: FastifyRequest, reply: FastifyReply): Promise<void> {
  try {
    await request.jwtVerify()
  } catch (err) {
    request.log.info({ code: (err as { code?: unknown }).code }, 'example: upgrade refused, no valid token')
    await reply.code(401).header('www-authenticate', 'Bearer').send({
      statusCode: 401, error: 'Unauthorized', message: 'A valid token is required.'
    })
  }
}

/** On `/ws/jwt/`, a user may patch only their own row: another pk gets 403, before any lookup. */
export const ownRowOnly: Permission = {
  hasPermission (ctx, action, args) {
    if (action !== 'patch') return true
    const user = ctx.request.user
    return user !== null && 'id' in user && String(args.pk) === String(user.id)
  }
}

/** `whoami`: the user the connection's token names, as `request.user` holds it. */
export const whoami = action('whoami', (ctx) => ({ data: ctx.request.user }))

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
    sign: { expiresIn: '1h' },
    verify: { extractToken: tokenOf },
    formatUser: (payload) => ({ id: Number(payload.sub), username: payload.username })
  })

  // Compared against when the username is unknown, so the time taken does not tell which usernames exist.
  let decoy: Promise<string> | undefined

  app.post<{ Body: Static<typeof TokenRequest> }>('/token', { schema: { body: TokenRequest } }, async (request, reply) => {
    const { username, password } = request.body
    const user = await orm.em.fork().findOne(User, { username })
    const stored = user?.password ?? await (decoy ??= hashPassword(randomBytes(16).toString('hex')))
    if (!(await verifyPassword(password, stored)) || user === null) {
      return await reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'Invalid username or password.' })
    }
    return { token: await reply.jwtSign({ sub: String(user.id), username: user.username }) }
  })
}
