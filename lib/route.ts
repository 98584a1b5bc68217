/**
 * What a route is: its options, and the route compiled from them — everything that
 * depends only on the route (action table, validators, serializers, permission lists),
 * checked and built once at declaration. Registering it on Fastify is declare-route.ts.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { TSchema } from '@sinclair/typebox'
import type {
  FastifyContextConfig,
  FastifyInstance,
  onRequestHookHandler,
  preHandlerHookHandler,
  preValidationHookHandler
} from 'fastify'
import type { ActionDefinition } from './action.js'
import type { LifecycleHook } from './context.js'
import { DuplicateAction, InvalidOption } from './errors.js'
import { GenericModel, type ModelOptions } from './generic.js'
import { resolvePreActionHooks, type PreActionHook } from './hooks.js'
import { positiveInteger } from './option-checks.js'
import type { ResolvedOptions } from './options.js'
import type { Permission } from './permissions.js'
import { compileValidator, type InputValidator } from './validation.js'

/** One Fastify hook or several. */
export type Hooks<H> = H | H[]

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
    state: { readonly options: Pick<ResolvedOptions, 'maxPayload' | 'maxDepth'> }
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

/** A route as declared (`app.wsRest.route` / `multiplex`): what the document is built from. */
export type DeclaredRoute =
  | { kind: 'route', path: string, route: CompiledRoute, options: RouteOptions }
  | { kind: 'multiplex', path: string, streams: Array<{ name: string, route: CompiledRoute, options: RouteOptions }> }


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
