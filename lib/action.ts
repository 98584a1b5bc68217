/**
 * Actions: what a route can be asked to do, and the context a handler runs in.
 *
 * A mixin is a factory returning one or more {@link ActionDefinition}s; a custom action
 * is the same thing written with {@link action}. The handler's `args` type is inferred
 * from the TypeBox schema given to `action()`.
 */
import type { EntityManager } from '@mikro-orm/core'
import type { Static, TSchema } from '@sinclair/typebox'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { ActionDescriber, ActionDoc } from './asyncapi.js'
import type { GenericModel, InputKind } from './generic.js'
import type { Permission } from './permissions.js'
import type { CustomWire } from './wire.js'

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

/** Everything a handler (or a permission, or a preAction hook) may use about the current message. */
export interface ActionContext {
  /** The HTTP upgrade request of the connection: headers, query, and whatever the app decorated (`request.user`). */
  readonly request: FastifyRequest
  /** The request's logger. Log internals here; never put them in a reply. */
  readonly log: FastifyBaseLogger
  /** A forked EntityManager of this message alone (inside the transaction when the action is transactional). */
  readonly em: EntityManager
  /** The name of the action being run. */
  readonly action: string
  /** The message's `request_id`, echoed on every reply to it. */
  readonly requestId: unknown
  /** The message's arguments (every key but `action` and `request_id`; validated once the action's schema ran); `{}` in lifecycle hooks. */
  readonly args: Record<string, unknown>
  /** Aborted when the socket closes (and, for a {@link ActionContext.cancellable} scope, when that scope is cancelled). */
  readonly signal: AbortSignal
  /** The route's model layer (queryset, lookup, serialization, perform*); `undefined` on routes without an entity. */
  readonly model: GenericModel | undefined
  /**
   * Send one more reply (streamed actions): by default with this message's action and
   * request_id; `options` names others, as DCRF's `reply(action=…, request_id=…)`. False
   * once the socket is gone.
   */
  reply: (data: unknown, status?: number, options?: ReplyOptions) => boolean
  /**
   * Send any JSON value as one frame, as DCRF's `send_json` (in the stream's envelope on a
   * multiplexed route). False once the socket is gone or the value cannot be encoded.
   */
  send: (frame: unknown) => boolean
  /** Close the socket: `code` 1000 (default) or 3000–4999, as the WebSocket protocol allows an application. */
  close: (code?: number, reason?: string) => void
  /**
   * A signal aborted when this socket closes or when any action calls `cancel(scope)`
   * — how `list_cancel` stops the streamed lists in flight.
   */
  cancellable: (scope: string) => AbortSignal
  /** Abort every signal handed out by `cancellable(scope)` on this socket. */
  cancel: (scope: string) => void
  /**
   * Run `fn` with `ctx.em` bound to a database transaction: committed when `fn` resolves,
   * rolled back when it throws (a savepoint when the action already runs in a transaction).
   */
  transactional: <T>(fn: () => Promise<T>) => Promise<T>
  /**
   * Subscribe this socket to `groups`: every message published to one of them
   * (`app.wsRest.publish`, or a model change routed there by `app.wsRest.observe`)
   * reaches it as an event carrying `requestId` (default: this message's request_id),
   * after this action's permissions are checked again. Subscribing again to the same
   * groups with the same request_id adds nothing (resolves `false`).
   */
  subscribe: (groups: string | string[], options?: SubscribeOptions) => Promise<boolean>
  /** Remove this socket's group subscriptions: those with `requestId`, or listening to one of `groups`, or all. How many were removed. */
  unsubscribe: (options?: UnsubscribeOptions) => number
}

/** Options of `ctx.reply`: another action name or request_id than the message's. */
export interface ReplyOptions {
  action?: string
  requestId?: unknown
}

/** A socket opening or closing on a route (DCRF's `websocket_connect` / `websocket_disconnect`). */
export type LifecycleHook = (ctx: ActionContext) => void | Promise<void>

/** Options of `ctx.subscribe`. */
export interface SubscribeOptions {
  /** The request_id events carry. Default: the subscribing message's. */
  requestId?: unknown
  /** The arguments the subscriber's permissions are re-checked with before each event. Default `{}`. */
  args?: Record<string, unknown>
  /**
   * Decide per subscriber what an event sends (DCRF's observer handler, run once per
   * subscribed consumer): called with the event as rendered once for everyone and a context
   * of this subscriber (`ctx.reply` answers with the subscription's request_id, `ctx.send`
   * sends any frame); it sends zero or more frames. Without it, the event is sent as it is.
   */
  handler?: EventHandler
}

/** An event as a subscription's `handler` receives it. */
export interface SubscriberEvent {
  /** The event's action (`create` / `update` / `delete`, or an app event's own), status and data, as they would be sent. */
  action: string
  status: number
  data: unknown
  /** For a model change: the entity, the change, its key, and the rows before and after (plain JSON). */
  change?: { entity: string, change: 'create' | 'update' | 'delete', pk: unknown, before: Record<string, unknown> | null, after: Record<string, unknown> | null }
}

/** A subscription's per-subscriber event handler (see {@link SubscribeOptions.handler}). */
export type EventHandler = (event: SubscriberEvent, ctx: ActionContext) => void | Promise<void>

/** Options of `ctx.unsubscribe`; all given must match. */
export interface UnsubscribeOptions {
  groups?: string | string[]
  requestId?: unknown
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
export interface ActionDefinition<Name extends string = string, Wire = unknown> {
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

/** For mixins: an action that runs against the route's model. */
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
