/**
 * Actions: what a route can be asked to do. The context a handler runs in is context.ts.
 *
 * A mixin is a factory returning one or more {@link ActionDefinition}s; a custom action
 * is the same thing written with {@link action}. The handler's `args` type is inferred
 * from the TypeBox schema given to `action()`.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import type { ActionDescriber, ActionDoc } from './asyncapi/describe.js'
import type { ActionContext } from './context.js'
import type { Permission } from './permissions.js'
import type { InputKind } from './validation.js'
import type { CustomWire, WiredAction } from './wire.js'

// The context's types, where they were declared before context.ts existed.
export type { ActionContext, EventHandler, LifecycleHook, ReplyOptions, SubscribeOptions, SubscriberEvent, UnsubscribeOptions } from './context.js'

/** What a handler returns: the reply's data and status (default 200, data `null`). */
export interface ActionResult {
  data?: unknown
  status?: number
  /**
   * `false`: send no reply at all, as DCRF does for an action that returns nothing — for an
   * action whose answer is the frames it sent (`ctx.send`, `ctx.reply`) or none. Default `true`.
   */
  reply?: boolean
}

/** The handler of an action. */
export type ActionHandler<Args> = (ctx: ActionContext, args: Args) => ActionResult | Promise<ActionResult>

/** Options of a custom action. */
export interface ActionOptions<S extends TSchema | undefined = undefined> {
  /** TypeBox schema of the message's arguments (every key but `action` and `request_id`). */
  schema?: S
  /** Run concurrently with the socket's other actions; cancelled (signal aborted) when the socket closes. */
  detached?: boolean
  /** Run in a database transaction: a throw rolls back everything the handler wrote. */
  transaction?: boolean
  /** Overrides the route's permissions for this action. */
  permissions?: Permission[]
  /** For the AsyncAPI document only: summary, reply status and data, events (the arguments come from `schema`). */
  doc?: ActionDoc
}

/**
 * A compiled-ready action: what routes are made of. `Name` and `Wire` are for the typed
 * client: the action's name as a literal, and what it takes and answers (lib/wire.ts).
 */
export interface ActionDefinition<Name extends string = string, Wire = unknown> extends WiredAction<Name, Wire> {
  readonly name: Name
  readonly schema?: TSchema
  readonly detached: boolean
  readonly transaction: boolean
  /** The handler sends its own replies through `ctx.reply`; no final reply is sent for it. */
  readonly stream: boolean
  /** The action uses `ctx.model`; a route without an entity refuses it at registration. */
  readonly needsModel: boolean
  /** The input schema the action validates `data` with; a route without it refuses the action at registration. */
  readonly input?: InputKind
  readonly permissions?: Permission[]
  /** The action subscribes to the route entity's changes: the plugin observes that entity. */
  readonly observes?: boolean
  /** The action's own response schema, when it has one: events it subscribes to are rendered by it too. */
  readonly response?: TSchema
  readonly handler: ActionHandler<any>
  /** Compile time only, never set: what the typed client infers this action's arguments and reply data from. */
  readonly '~wire'?: Wire
  /** What the action takes and answers on a route, for the AsyncAPI document; never called at message time. */
  readonly describe?: ActionDescriber
}

type ArgsOf<S> = S extends TSchema ? Static<S> : Record<string, unknown>

/** The `data` a handler's result sends: what it returns as `data`, or `null` when it returns none. */
type ReplyData<R> = R extends { data: infer D } ? D : R extends { data?: infer D } ? D | null : null

/** A handler returning `R`, for inferring the reply's data type from it. */
type TypedHandler<Args, R> = (ctx: ActionContext, args: Args) => R | Promise<R>

/**
 * Declare a custom action. Its `args` are validated by `schema` (400 with DRF-shaped
 * errors otherwise) and typed from it.
 *
 * ```ts
 * action('rename', { schema: Type.Object({ pk: Type.Integer(), name: Type.String() }) },
 *   async (ctx, { pk, name }) => ({ data: { pk, name } }))
 * ```
 */
export function action<const N extends string, const S extends TSchema | undefined = undefined, R extends ActionResult = ActionResult> (
  name: N,
  options: ActionOptions<S>,
  handler: TypedHandler<ArgsOf<S>, R>
): ActionDefinition<N, CustomWire<ArgsOf<S>, ReplyData<R>>>
export function action<const N extends string, R extends ActionResult = ActionResult> (
  name: N,
  handler: TypedHandler<Record<string, unknown>, R>
): ActionDefinition<N, CustomWire<Record<string, unknown>, ReplyData<R>>>
export function action (
  name: string,
  optionsOrHandler: ActionOptions<TSchema | undefined> | ActionHandler<any>,
  maybeHandler?: ActionHandler<any>
): ActionDefinition {
  const options = typeof optionsOrHandler === 'function' ? {} : optionsOrHandler
  const handler = typeof optionsOrHandler === 'function' ? optionsOrHandler : maybeHandler
  if (typeof handler !== 'function') throw new TypeError(`action("${name}") needs a handler function`)
  return {
    name,
    schema: options.schema,
    detached: options.detached === true,
    transaction: options.transaction === true,
    stream: false,
    needsModel: false,
    permissions: options.permissions,
    describe: () => ({ args: options.schema, ...options.doc }),
    handler
  }
}

/**
 * For mixins: an action that runs against the route's model (`ctx.model`; a route without
 * an entity refuses it at registration). `input` names the route schema it validates
 * `data` by (refused on a route without it), `observes` makes the plugin publish the
 * entity's changes (a subscribing mixin), `response` is a schema replacing the route's,
 * and `describe` is its AsyncAPI description. The returned definition's wire is `never`:
 * a mixin declares its own by its return type, `ActionDefinition<'name', MyWire>`.
 */
export function modelAction<const N extends string> (
  name: N,
  handler: ActionHandler<Record<string, unknown>>,
  options: { transaction?: boolean, detached?: boolean, stream?: boolean, permissions?: Permission[], input?: InputKind, observes?: boolean, response?: TSchema, describe?: ActionDescriber } = {}
): ActionDefinition<N, never> {
  return {
    name,
    input: options.input,
    observes: options.observes === true,
    response: options.response,
    detached: options.detached === true,
    transaction: options.transaction === true,
    stream: options.stream === true,
    needsModel: true,
    permissions: options.permissions,
    describe: options.describe,
    handler
  }
}
