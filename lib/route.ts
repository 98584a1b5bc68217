/**
 * Declaring a route: check its options, compile everything that depends only on the
 * route (action table, validators, serializers, permission lists), and register it as
 * an ordinary Fastify GET route in the caller's encapsulation context, so the app's
 * hooks, decorators and plugins apply to its upgrade request like to any HTTP route.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { TSchema } from '@sinclair/typebox'
import type {
  FastifyContextConfig,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  onRequestHookHandler,
  preHandlerHookHandler,
  preValidationHookHandler
} from 'fastify'
import type { ActionDefinition, LifecycleHook } from './action.js'
import type { WebSocket } from 'ws'
import { Connection } from './consumer.js'
import { DuplicateAction, InvalidOption } from './errors.js'
import { GenericModel, type ModelOptions } from './generic.js'
import { resolvePreActionHooks, type PreActionHook } from './hooks.js'
import { canConnect, type Permission } from './permissions.js'
import { Session } from './session.js'
import { positiveInteger, type PluginState } from './state.js'
import { compileValidator, type InputValidator } from './validation.js'

type Hooks<H> = H | H[]

/** Options of `app.wsRest.route(path, options)`. */
export interface RouteOptions<
  E extends object = any,
  C extends TSchema = TSchema,
  U extends TSchema = TSchema,
  R extends TSchema = TSchema
> extends Partial<ModelOptions<E, C, U, R>> {
  /** The route's actions: mixins and custom actions, in any combination. */
  actions: ReadonlyArray<ActionDefinition<any, any> | readonly ActionDefinition<any, any>[]>
  /** Checked at connect (`canConnect`) and before every action (`hasPermission`); all must allow. Default: allow any. */
  permissions?: Permission[]
  /** Fastify hooks on the upgrade request; replying from one (e.g. 401/403) refuses the socket. */
  onRequest?: Hooks<onRequestHookHandler>
  preValidation?: Hooks<preValidationHookHandler>
  preHandler?: Hooks<preHandlerHookHandler>
  /** Fastify route config, visible to the app's hooks as `request.routeOptions.config`. */
  config?: FastifyContextConfig
  /** Largest frame this route accepts, in bytes (default: the plugin's `maxPayload`). */
  maxPayload?: number
  /**
   * Runs when a socket opens on the route (DCRF's `websocket_connect`), before any of its
   * frames is handled: subscribe it to groups, send a welcome or state frame (`ctx.send`),
   * refuse it (`ctx.close`). Its context has no request_id.
   */
  onConnect?: LifecycleHook
  /** Runs once a socket of the route has closed (DCRF's `websocket_disconnect`): clean up presence and the like. */
  onDisconnect?: LifecycleHook
}

/** Route options whose `actions` keep their names and wires (see {@link defineRoute}). */
export type RouteDefinition<
  E extends object = any,
  C extends TSchema = TSchema,
  U extends TSchema = TSchema,
  R extends TSchema = TSchema,
  A extends RouteOptions['actions'] = RouteOptions['actions'],
  F extends readonly string[] = readonly string[]
> = Omit<RouteOptions<E, C, U, R>, 'actions' | 'filterFields'> & { actions: A, filterFields?: F }

/**
 * Route options kept exactly as typed — each action's name and wire included — so one
 * definition serves both the server (`app.wsRest.route(path, definition)`) and the typed
 * client (`createClient<typeof definition>(url)`, an `import type` only).
 *
 * ```ts
 * export const users = defineRoute({ entity: User, schema: { create, update, response }, actions: [mixins.create(), …] })
 * app.wsRest.route('/ws/users/', users)
 * ```
 */
export function defineRoute<
  E extends object,
  C extends TSchema = TSchema,
  U extends TSchema = TSchema,
  R extends TSchema = TSchema,
  const A extends RouteOptions['actions'] = RouteOptions['actions'],
  // Kept literal, so the typed client knows which keys `filter` may name.
  const F extends readonly string[] = readonly string[]
> (options: Omit<RouteOptions<E, C, U, R>, 'filterFields'> & { actions: A, filterFields?: F }): RouteDefinition<E, C, U, R, A, F> {
  return options
}

/** An action with everything it needs at message time, resolved at registration. */
export interface CompiledAction {
  readonly def: ActionDefinition
  readonly validate: InputValidator<any> | undefined
  readonly permissions: readonly Permission[]
}

/** A declared route, compiled. */
export class CompiledRoute {
  readonly actions = new Map<string, CompiledAction>()
  readonly model: GenericModel | undefined
  readonly permissions: readonly Permission[]
  readonly maxPayload: number
  readonly maxDepth: number
  readonly onConnect: LifecycleHook | undefined
  readonly onDisconnect: LifecycleHook | undefined
  private hooks: PreActionHook[] | undefined

  constructor (
    private readonly instance: FastifyInstance,
    readonly path: string,
    options: RouteOptions,
    readonly orm: MikroORM | undefined,
    state: PluginState
  ) {
    if (options === null || typeof options !== 'object') throw new InvalidOption('route options', 'must be an object')
    if (!Array.isArray(options.actions)) throw new InvalidOption('actions', 'must be an array of actions (mixins or action())')
    this.permissions = checkPermissionList('permissions', options.permissions) ?? []
    this.maxPayload = positiveInteger('maxPayload', options.maxPayload, state.options.maxPayload)
    this.maxDepth = state.options.maxDepth
    this.onConnect = checkHook('onConnect', options.onConnect)
    this.onDisconnect = checkHook('onDisconnect', options.onDisconnect)
    if (options.entity !== undefined) {
      if (orm === undefined) throw new InvalidOption('orm', `is required by route ${path}, which has an entity`)
      this.model = new GenericModel(orm, options as ModelOptions)
    }
    for (const def of options.actions.flat()) this.add(def)
  }

  private add (def: ActionDefinition): void {
    if (def === null || typeof def !== 'object' || typeof def.name !== 'string' || typeof def.handler !== 'function') {
      throw new InvalidOption('actions', `route ${this.path} has an entry that is not an action`)
    }
    if (this.actions.has(def.name)) throw new DuplicateAction(def.name, this.path)
    if (def.needsModel && this.model === undefined) {
      throw new InvalidOption('entity', `the "${def.name}" action of route ${this.path} needs an entity`)
    }
    if (def.input !== undefined && this.model?.hasInput(def.input) !== true) {
      throw new InvalidOption(`schema.${def.input === 'create' ? 'create' : 'update'}`, `is required by the "${def.name}" action of route ${this.path}`)
    }
    this.actions.set(def.name, {
      def,
      validate: def.schema === undefined ? undefined : compileValidator(def.schema),
      permissions: checkPermissionList(`permissions of action "${def.name}"`, def.permissions) ?? this.permissions
    })
  }

  /**
   * The preAction hooks of the route's context. Resolved when the app is ready (every
   * plugin loaded, so hooks a parent adds after declaring a child still apply), and
   * fixed from then on, as Fastify's own hooks are.
   */
  get preActionHooks (): PreActionHook[] {
    return (this.hooks ??= resolvePreActionHooks(this.instance))
  }

  /** Fix the hook chain now (called from the plugin's onReady). */
  resolveHooks (): void {
    this.hooks = resolvePreActionHooks(this.instance)
  }
}

function checkHook (name: string, hook: unknown): LifecycleHook | undefined {
  if (hook !== undefined && typeof hook !== 'function') throw new InvalidOption(name, 'must be a function (ctx) => void | Promise<void>')
  return hook as LifecycleHook | undefined
}

function checkPermissionList (name: string, perms: unknown): Permission[] | undefined {
  if (perms === undefined) return undefined
  if (!Array.isArray(perms) || perms.some((p) => p === null || typeof p !== 'object')) {
    throw new InvalidOption(name, 'must be an array of permission objects')
  }
  return perms as Permission[]
}

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
