/**
 * Declaring a route on Fastify: compile it, register it as an ordinary GET route in the
 * caller's encapsulation context (so the app's hooks, decorators and plugins apply to
 * its upgrade request like to any HTTP route), and give every socket that opens on it a
 * session and a consumer.
 */
import type {
  FastifyContextConfig,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preHandlerHookHandler,
  preValidationHookHandler
} from 'fastify'
import type { WebSocket } from 'ws'
import { Connection } from './consumer.js'
import { InvalidOption } from './errors.js'
import { canConnect } from './permissions.js'
import { CompiledRoute, type Hooks, type RouteOptions } from './route.js'
import { Session } from './session.js'
import type { PluginState } from './state.js'

function asArray<H> (hooks: Hooks<H> | undefined): H[] {
  return hooks === undefined ? [] : Array.isArray(hooks) ? hooks : [hooks]
}

/** The Fastify-hook part of a route's options: what applies to its upgrade request. */
export interface UpgradeOptions {
  onRequest?: Hooks<onRequestHookHandler>
  preValidation?: Hooks<preValidationHookHandler>
  preHandler?: Hooks<preHandlerHookHandler>
  config?: FastifyContextConfig
}

/**
 * Register `path` as a GET route in `instance`'s context whose upgrade runs the app's
 * hooks, then `checkConnect`; a plain HTTP GET gets 426.
 */
export function registerUpgrade (
  instance: FastifyInstance,
  state: PluginState,
  path: string,
  options: UpgradeOptions,
  checkConnect: (request: FastifyRequest, reply: FastifyReply) => Promise<void>,
  onSocket: (socket: WebSocket, request: FastifyRequest) => void
): void {
  instance.route({
    method: 'GET',
    url: path,
    // The origin and the connection limits come before the app's own hooks: a refused
    // upgrade should cost no authentication.
    onRequest: [guardUpgrade(state), ...asArray(options.onRequest)],
    preValidation: asArray(options.preValidation),
    // Connect-time permissions run after the app's own hooks (authentication sets request.user first).
    preHandler: [...asArray(options.preHandler), checkConnect],
    config: options.config,
    wsHandler: onSocket,
    handler: async (_request, reply) => {
      await reply.code(426).header('upgrade', 'websocket').send({
        statusCode: 426, error: 'Upgrade Required', message: 'This route speaks WebSocket only.'
      })
    }
  })
}

/**
 * The plugin's own upgrade checks: a browser origin not allowed → 403 (cross-site
 * WebSocket hijacking), too many sockets from this IP → 429 (only with
 * `maxConnectionsPerIp` set), too many in all → 503.
 *
 * A refusal by a connection limit is logged at warn level, naming the option and how to
 * change it — at most once a minute per limit (with the count refused since), so a burst
 * of refused upgrades cannot flood the log; an operator still learns why clients fail.
 */
function guardUpgrade (state: PluginState): onRequestHookHandler {
  const { allowedOrigins, maxConnections, maxConnectionsPerIp } = state.options
  const WARN_EVERY_MS = 60_000
  const limits = {
    maxConnectionsPerIp: {
      limit: maxConnectionsPerIp,
      lastWarned: -Infinity,
      refused: 0,
      hint: 'raise the plugin option maxConnectionsPerIp, or leave it unset for no per-address cap ' +
        '(behind a proxy, set Fastify\'s trustProxy so request.ip is the client\'s address)'
    },
    maxConnections: { limit: maxConnections, lastWarned: -Infinity, refused: 0, hint: 'raise the plugin option maxConnections (default 10000)' }
  }
  function warnRefused (request: FastifyRequest, option: keyof typeof limits): void {
    const entry = limits[option]
    entry.refused++
    const now = Date.now()
    if (now - entry.lastWarned < WARN_EVERY_MS) return
    request.log.warn(
      { option, limit: entry.limit, refused: entry.refused },
      `fastify-ws-rest: upgrade refused by ${option} (${entry.limit}); ${entry.hint}. Logged at most once a minute; "refused" counts refusals since the last such line`
    )
    entry.lastWarned = now
    entry.refused = 0
  }
  return async function guard (request, reply) {
    const origin = request.headers.origin
    if (allowedOrigins !== undefined && origin !== undefined && !allowedOrigins(origin)) {
      request.log.info({ origin }, 'fastify-ws-rest: upgrade from an origin not allowed')
      await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: 'This origin may not connect.' })
      return
    }
    if ((state.perIp.get(request.ip) ?? 0) >= maxConnectionsPerIp) {
      warnRefused(request, 'maxConnectionsPerIp')
      await reply.code(429).send({ statusCode: 429, error: 'Too Many Requests', message: 'Too many connections from this address.' })
      return
    }
    if (state.sessions.size >= maxConnections) {
      warnRefused(request, 'maxConnections')
      await reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: 'Too many connections.' })
    }
  }
}

/** Refuse the upgrade with 403 (the socket never opens). */
export async function refuseConnect (reply: FastifyReply): Promise<void> {
  await reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: 'You do not have permission to connect.' })
}

/** Compile a route's options (checks, action table) and note the entities it observes. */
export function compileRoute (instance: FastifyInstance, state: PluginState, path: string, options: RouteOptions): CompiledRoute {
  const route = new CompiledRoute(instance, path, options, state.options.orm, state)
  state.routes.push(route)
  const model = route.model
  if (model !== undefined) {
    const observing = [...route.actions.values()].filter((a) => a.def.observes === true)
    // Every shape events of the entity may take, on every instance alike: a change is rendered
    // where it is committed, for subscribers wherever they are (ctx.subscribe uses the route's own).
    const serializers = [...model.responseSerializers, ...observing.map((a) => model.serializerFor(a.def.response))]
    state.describeEvents(model.entityName, serializers, model.query.relationPaths)
    if (observing.length > 0) state.observe(model.entityName)
  }
  return route
}

/** Compile `options` and register the route on `instance` (the caller's encapsulation context). */
export function declareRoute (instance: FastifyInstance, state: PluginState, path: string, options: RouteOptions): CompiledRoute {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new InvalidOption('path', 'must be a string starting with "/"')
  const route = compileRoute(instance, state, path, options)
  const limits = { maxPayload: route.maxPayload, maxOutbound: state.options.maxOutbound, maxActionsPerSecond: state.options.maxActionsPerSecond }
  registerUpgrade(instance, state, path, options, async (request, reply) => {
    if (!(await canConnect(route.permissions, request))) await refuseConnect(reply)
  }, (socket, request) => {
    // Synchronous: the session attaches its message listener before anything awaits.
    const session = new Session(socket, request, limits, state)
    const connection = new Connection(session, route, state)
    session.attach(connection)
    connection.open()
  })
  // The address clients reach: the route is registered under the context's prefix.
  state.declared.push({ kind: 'route', path: instance.prefix + path, route, options })
  return route
}
