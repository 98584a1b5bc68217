/**
 * The context one message (or lifecycle hook, or event handler) runs in: who sent it,
 * its arguments, its EntityManager, and what it may do to its socket.
 *
 * `ctx.model` is declared by the model layer (generic.ts), as Fastify plugins declare
 * their decorators: the context knows nothing of models, so the model layer may use
 * the context without an import cycle.
 */
import type { EntityManager } from '@mikro-orm/core'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'

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
