/**
 * One route's consumer on one socket: requests in, dispatch, permission check, error →
 * reply; and the socket's subscriptions to that route's events.
 *
 * Actions of one consumer run one after another, in arrival order, as DCRF's consumer
 * does; detached actions (streamed lists, long custom actions) run beside them and are
 * cancelled when the socket closes. All per-connection state lives on this object —
 * never in module or class state, which once made DCRF reply to the wrong client.
 * A plain route has one consumer per socket; a multiplexed route one per stream.
 * Resumable subscriptions (claims, replay, parking) are handed to observer/resume-handoff.ts.
 */
import createError from '@fastify/error'
import type { EntityManager } from '@mikro-orm/core'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { ActionContext, EventHandler, ReplyOptions, SubscribeOptions, UnsubscribeOptions } from './context.js'
import { translateDatabaseError } from './database-errors.js'
import {
  ActionMissing,
  InternalError,
  InvalidOption,
  MethodNotAllowed,
  Throttled,
  TooManySubscriptions,
  isClientError,
  wireErrors
} from './errors.js'
import type { GenericModel } from './generic.js'
import { rowOf, type GroupMessage, type Rendered } from './observer/changes.js'
import { groupRenderer, Subscription, type ModelView, type SubscriptionHost } from './observer/subscription.js'
import { checkObjectPermissions, checkPermissions, type Permission } from './permissions.js'
import {
  encodeEnvelope,
  encodeEvent,
  encodeReply,
  FrameError,
  parseFrame,
  type ActionRequest,
  type Reply
} from './protocol.js'
import type { Hub } from './observer/hub.js'
import { resumePrincipal, type ResumeRegistry } from './observer/resume.js'
import { ResumeHandoff, type PendingResume } from './observer/resume-handoff.js'
import type { CompiledAction, CompiledRoute } from './route.js'
import type { ResolvedOptions } from './options.js'
import type { FrameReceiver, Session } from './session.js'
import { clientOf, type SubscriptionBudget } from './subscription-budget.js'
import { kConnection, kPermissions } from './symbols.js'

/**
 * 429: the subscriptions of a connection hold as much filter and search text as they may.
 * Each is tested against every change of its entity, and held for the socket's lifetime.
 */
const TooMuchFiltering = createError<[number]>(
  'FST_WSREST_TOO_MUCH_FILTERING',
  'Too much filtering: the subscriptions of a connection may hold filters and searches of %s characters in all.',
  429
)

/** Characters of a message's `filter` and `search` as JSON: what its subscription holds; 0 without either. */
function filterChars (args: Record<string, unknown> | undefined): number {
  if (args === undefined || (args.filter === undefined && args.search === undefined)) return 0
  try {
    return (JSON.stringify([args.filter ?? null, args.search ?? null]) ?? '').length
  } catch {
    return 0
  }
}

/** An event's data as a value, parsed once per message and shape however many handlers read it. */
const parsed = new WeakMap<object, Map<string, unknown>>()
function parsedData (message: GroupMessage, rendered: Rendered): unknown {
  let byJson = parsed.get(message)
  if (byJson === undefined) parsed.set(message, (byJson = new Map()))
  if (!byJson.has(rendered.dataJson)) byJson.set(rendered.dataJson, JSON.parse(rendered.dataJson))
  return byJson.get(rendered.dataJson)
}

/** Most events one consumer holds back while earlier ones wait on their permission checks. */
const MAX_QUEUED_EVENTS = 1024

/** What a consumer uses of its plugin registration: its limits, the subscription budgets, the hub, resuming. */
export interface ConsumerEnvironment {
  readonly options: Pick<ResolvedOptions, 'maxInFlight' | 'maxSubscriptions' | 'maxFilterChars'>
  readonly subscriptionBudget: SubscriptionBudget
  readonly hub: Hub
  readonly resume: ResumeRegistry | undefined
}

/** The context of one message. The EntityManager is forked on first use, so actions that never touch the database pay nothing. */
export class MessageContext implements ActionContext {
  private forked: EntityManager | undefined
  private scoped: AbortController[] | undefined
  readonly [kConnection]: Connection

  /** The message's arguments: as sent, then as validated. */
  args: Record<string, unknown> = {}

  constructor (connection: Connection, readonly action: string, readonly requestId: unknown) {
    this[kConnection] = connection
  }

  get request (): FastifyRequest { return this[kConnection].request }
  /** The permissions this message's action is checked by: its own, else the route's. */
  get [kPermissions] (): readonly Permission[] {
    const route = this[kConnection].route
    return route.actions.get(this.action)?.permissions ?? route.permissions
  }
  get log (): FastifyBaseLogger { return this[kConnection].log }
  get model (): GenericModel | undefined { return this[kConnection].route.model }
  get signal (): AbortSignal { return this[kConnection].signal }

  get em (): EntityManager {
    if (this.forked === undefined) {
      const orm = this[kConnection].route.orm
      if (orm === undefined) throw new InvalidOption('orm', 'is needed by an action that uses ctx.em')
      this.forked = orm.em.fork()
    }
    return this.forked
  }

  /** Run `fn` with `ctx.em` bound to a transaction: committed when it resolves, rolled back when it throws. */
  async transactional<T> (fn: () => Promise<T>): Promise<T> {
    const outer = this.em
    return await outer.transactional(async (em) => {
      this.forked = em
      try {
        return await fn()
      } finally {
        this.forked = outer
      }
    })
  }

  reply (data: unknown, status = 200, options: ReplyOptions = {}): boolean {
    const action = options.action ?? this.action
    const requestId = options.requestId === undefined ? this.requestId : options.requestId
    return this[kConnection].send({ action, status, data, errors: [], requestId })
  }

  send (frame: unknown): boolean {
    return this[kConnection].sendJson(frame)
  }

  close (code = 1000, reason = ''): void {
    // Only the codes an application may send; ws would throw later, on the socket, for others.
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new TypeError('ctx.close: the code must be 1000 or 3000–4999')
    }
    if (Buffer.byteLength(reason) > 123) throw new TypeError('ctx.close: the reason must fit in 123 bytes')
    this[kConnection].session.close(code, reason)
  }

  cancellable (scope: string): AbortSignal {
    const controller = this[kConnection].cancellable(scope)
    ;(this.scoped ??= []).push(controller)
    return controller.signal
  }

  cancel (scope: string): void {
    this[kConnection].cancel(scope)
  }

  async subscribe (groups: string | string[], options: SubscribeOptions = {}): Promise<boolean> {
    return await this[kConnection].subscribeGroups(this, groups, options)
  }

  unsubscribe (options: UnsubscribeOptions = {}): number {
    return this[kConnection].unsubscribeGroups(options)
  }

  /** Forget this message's cancellation scopes once it is done, so a long-lived socket does not accumulate them. */
  release (): void {
    if (this.scoped !== undefined) for (const c of this.scoped) this[kConnection].forget(c)
  }
}

/** One route's consumer on one socket. */
export class Connection implements FrameReceiver, SubscriptionHost {
  private tail: Promise<void> = Promise.resolve()
  /** Actions (and error replies) queued or running in turn. */
  private queued = 0
  // What follows is made when first needed: most sockets never need it, and an idle
  // socket's memory is what it holds.
  /** Detached actions still running (the others are all behind `tail`). */
  private detached: Set<Promise<void>> | undefined
  private scopes: Map<string, Set<AbortController>> | undefined
  private readonly subscriptions = new Map<string, Subscription>()
  /** Events wait here while an earlier one's permission check runs, so they arrive in publish order. */
  private eventTail: Promise<void> = Promise.resolve()
  private eventsQueued = 0
  /** Resumable subscriptions (claims, replay, parking): made by the first `resume` request; see {@link resumeHandoff}. */
  private resumable: ResumeHandoff | undefined
  /** `filter`/`search` size of the messages running now, by request_id: what the subscription each makes holds. */
  private filtering: Map<string, number> | undefined
  /** `filter`/`search` size each subscription holds, and their sum: bounded by `maxFilterChars`. */
  private filterCharsOf: Map<Subscription, number> | undefined
  private filterCharsHeld = 0

  constructor (
    readonly session: Session,
    readonly route: CompiledRoute,
    private readonly state: ConsumerEnvironment,
    /** The stream this consumer answers on, on a multiplexed route. */
    readonly stream?: string
  ) {
    this.log = stream === undefined ? session.log : session.log.child({ stream })
    this.debug = this.log.level === 'debug' || this.log.level === 'trace'
  }

  /** The resumable subscriptions' handoff, made on the first `resume` request; `undefined` when resuming is off. */
  private resumeHandoff (): ResumeHandoff | undefined {
    const registry = this.state.resume
    if (registry === undefined || this.resumable !== undefined) return this.resumable
    const connection = this
    return (this.resumable = new ResumeHandoff(registry, {
      get request () { return connection.request },
      get principal () { return connection.principal },
      log: this.log,
      route: this.route,
      stream: this.stream,
      send: (reply) => this.send(reply),
      sendText: (text) => this.sendText(text),
      drop: (subscription) => this.dropSubscription(subscription),
      stopListening: (subscription) => this.state.hub.remove(subscription),
      eventsSent: async () => await this.eventTail
    }))
  }

  /**
   * Who may resume the socket's subscriptions: the app's principal, else the user;
   * `undefined` (none) makes them not resumable. Asked once: the upgrade request does not change.
   */
  private get principal (): string | undefined {
    if (this.principalName === null) this.principalName = resumePrincipal(this.request, this.state.resume?.options ?? { principal: undefined })
    return this.principalName
  }

  private principalName: string | undefined | null = null

  /** Whose subscription budget the socket's subscriptions count against: see {@link clientOf}. */
  private get client (): string {
    return (this.clientName ??= clientOf(this.request, this.principal))
  }

  private clientName: string | undefined

  /** The socket's logger (connection id, route), with the stream on a multiplexed route. */
  readonly log: FastifyBaseLogger
  /** Whether each action gets its debug line: checked once, so the hot path pays nothing when it does not. */
  private readonly debug: boolean

  get request (): FastifyRequest { return this.session.request }

  /** Aborted when the socket closes or the server shuts down. */
  get signal (): AbortSignal { return this.session.signal }

  /** A text frame of a plain route. */
  receive (text: string, allowed: boolean): void {
    this.dispatch(parseFrame(text, this.route.maxDepth), allowed)
  }

  refuse (error: FrameError): void {
    this.inOrder(error)
  }

  /**
   * Run a parsed request, or answer the frame error in its place. A request over the
   * socket's action rate (`allowed` false), or past `maxInFlight` waiting or running, is
   * answered 429 at once and never run.
   */
  dispatch (request: ActionRequest | FrameError, allowed = true): void {
    if (request instanceof FrameError) {
      this.inOrder(request)
      return
    }
    const { action, requestId } = request
    if (!allowed || this.queued + (this.detached?.size ?? 0) >= this.state.options.maxInFlight) {
      this.sendError(new Throttled(), typeof action === 'string' ? action : null, requestId)
      return
    }
    if (action === undefined || action === null) {
      this.inOrder(new FrameError(new ActionMissing(), null, requestId))
      return
    }
    const compiled = typeof action === 'string' ? this.route.actions.get(action) : undefined
    if (compiled === undefined) {
      const name = typeof action === 'string' ? action : JSON.stringify(action)
      const notAllowed = new FrameError(new MethodNotAllowed(name), action, requestId)
      if (this.route.permissions.length === 0) this.inOrder(notAllowed)
      else this.refuseUnknown(notAllowed, request.args)
      return
    }
    if (compiled.def.detached) this.track(this.execute(compiled, request, false))
    else this.inTurn(async () => await this.execute(compiled, request, true))
  }

  /**
   * Run `task` after every action queued before it; the task ends its turn (`queued--`).
   * With nothing queued it starts at once rather than a turn of the promise queue later.
   * The tail is what shutdown waits for; tasks never reject, so neither does it.
   */
  private inTurn (task: () => Promise<void>): void {
    this.tail = this.queued++ === 0 ? task() : this.tail.then(task)
  }

  /**
   * Answer a frame that is not a runnable action after the replies already queued, so a
   * client sees replies in the order it sent its frames (as DCRF's consumer does).
   */
  private inOrder (frameError: FrameError): void {
    const { error, action, requestId } = frameError
    this.inTurn(async () => {
      this.queued--
      this.sendError(error, action, requestId)
    })
  }

  /**
   * An unknown action on a route with permissions: as DCRF, the route's permissions are
   * checked first, so a refused client learns 403, not which actions exist (405).
   */
  private refuseUnknown (notAllowed: FrameError, args: Record<string, unknown>): void {
    this.inTurn(async () => {
      const ctx = new MessageContext(this, String(notAllowed.action), notAllowed.requestId)
      try {
        await checkPermissions(this.route.permissions, ctx, args)
        this.sendError(notAllowed.error, notAllowed.action, notAllowed.requestId)
      } catch (err) {
        if (isClientError(err)) this.sendError(err, notAllowed.action, notAllowed.requestId)
        else {
          this.log.error({ err }, 'fastify-ws-rest: a permission check failed')
          this.sendError(new InternalError(), notAllowed.action, notAllowed.requestId)
        }
      } finally {
        ctx.release()
        this.queued--
      }
    })
  }

  /** A detached action: shutdown waits for it beside the tail. */
  private track (task: Promise<void>): void {
    const detached = (this.detached ??= new Set())
    detached.add(task)
    void task.finally(() => detached.delete(task))
  }

  /** Run one action to its reply. Never rejects: every failure becomes an error reply. */
  private async execute (compiled: CompiledAction, request: ActionRequest, inTurn: boolean): Promise<void> {
    const { def } = compiled
    const ctx = new MessageContext(this, def.name, request.requestId)
    ctx.args = request.args
    const started = this.debug ? performance.now() : 0
    let status = 200
    let resume: PendingResume | undefined
    let chars = 0
    let requestIdJson: string | undefined
    try {
      // Permissions come first, before validation or any lookup (DCRF's order).
      if (compiled.permissions.length > 0) await checkPermissions(compiled.permissions, ctx, request.args)
      if (request.resume !== undefined) resume = this.resumeHandoff()?.expect(request)
      // Only subscribing actions hold a filter past their reply: a list's is not counted.
      chars = def.observes === true ? filterChars(request.args) : 0
      if (chars > 0) (this.filtering ??= new Map()).set(requestIdJson = JSON.stringify(request.requestId) ?? 'null', chars)
      for (const hook of this.route.preActionHooks) await hook(ctx, request.args)
      const args = compiled.validate === undefined ? request.args : await compiled.validate(request.args)
      ctx.args = args
      const result = def.transaction
        ? await ctx.transactional(async () => await def.handler(ctx, args))
        : def.handler(ctx, args)
      // A synchronous handler's result is used as it is: no promise-queue turn per message.
      const settled = result instanceof Promise ? await result : result
      if (resume !== undefined) await this.resumable?.announce(resume)
      status = settled?.status ?? 200
      if (!def.stream && settled?.reply !== false) {
        this.send({ action: def.name, status, data: settled?.data ?? null, errors: [], requestId: request.requestId })
      }
    } catch (err) {
      if (resume !== undefined) await this.resumable?.announce(resume)
      const error = this.toProtocolError(err, def.name)
      status = error.statusCode ?? 500
      this.sendError(error, def.name, request.requestId)
    } finally {
      if (resume !== undefined) this.resumable?.finish(resume)
      if (requestIdJson !== undefined && this.filtering?.get(requestIdJson) === chars) this.filtering.delete(requestIdJson)
      ctx.release()
      if (inTurn) this.queued--
      if (this.debug) {
        const ms = Math.round((performance.now() - started) * 1000) / 1000
        this.log.debug({ action: def.name, requestId: request.requestId, status, ms }, 'fastify-ws-rest: action')
      }
    }
  }

  /** A client error as it is; a database error the client caused, translated; anything else logged and hidden behind a 500. */
  private toProtocolError (err: unknown, action: string): Error & { statusCode?: number } {
    if (isClientError(err)) return err
    const translated = translateDatabaseError(err, this.route.model?.meta)
    if (translated !== undefined) return translated
    this.log.error({ err, action }, 'fastify-ws-rest: action failed')
    return new InternalError()
  }

  private sendError (err: Error & { statusCode?: number }, action: unknown, requestId: unknown): void {
    this.send({ action, status: err.statusCode ?? 500, data: null, errors: wireErrors(err), requestId })
  }

  /** Encode and send one reply; false when the socket is no longer open (the reply is dropped). */
  send (reply: Reply): boolean {
    if (!this.session.open) return false
    let text: string
    try {
      text = encodeReply(reply)
    } catch (err) {
      // data that JSON cannot encode (a BigInt, a cycle) is a server bug, not the client's.
      this.log.error({ err, action: reply.action }, 'fastify-ws-rest: reply could not be encoded')
      text = encodeReply({ ...reply, status: 500, data: null, errors: wireErrors(new InternalError()) })
    }
    return this.sendText(text)
  }

  /** Any JSON value as one frame (`ctx.send`); a value JSON cannot encode is the app's bug, logged, never sent. */
  sendJson (frame: unknown): boolean {
    let text: string | undefined
    try {
      text = JSON.stringify(frame)
    } catch (err) {
      this.log.error({ err }, 'fastify-ws-rest: ctx.send was given a value JSON cannot encode; nothing sent')
      return false
    }
    return text !== undefined && this.sendText(text)
  }

  /**
   * The socket is open and attached: run the route's `onConnect` first in the socket's
   * turn, so whatever it sends (a welcome, a state frame) precedes every reply, and no
   * action of the socket runs before it is done. A hook that throws closes the socket (1011).
   */
  open (): void {
    const hook = this.route.onConnect
    if (hook === undefined) return
    this.inTurn(async () => {
      const ctx = new MessageContext(this, 'connect', null)
      try {
        await hook(ctx)
      } catch (err) {
        this.log.error({ err }, 'fastify-ws-rest: onConnect failed; socket closed')
        this.session.close(1011, 'Internal server error')
      } finally {
        ctx.release()
        this.queued--
      }
    })
  }

  /** The route's `onDisconnect`, once the socket is gone (its sends go nowhere); a failure is logged. */
  private disconnected (): void {
    const hook = this.route.onDisconnect
    if (hook === undefined) return
    const ctx = new MessageContext(this, 'disconnect', null)
    void (async () => {
      try {
        await hook(ctx)
      } catch (err) {
        this.log.error({ err }, 'fastify-ws-rest: onDisconnect failed')
      } finally {
        ctx.release()
      }
    })()
  }

  private sendText (text: string): boolean {
    return this.session.send(this.stream === undefined ? text : encodeEnvelope(this.stream, text))
  }

  // ------------------------------------------------------------------ subscriptions

  /**
   * Add a subscription. One with the same key already there is kept and this one is not
   * added (`false`): subscribing twice never doubles events. `replace` swaps it instead.
   */
  addSubscription (subscription: Subscription, replace = false): boolean {
    if (!this.session.open) return false
    const existing = this.subscriptions.get(subscription.key)
    if (existing !== undefined && !replace) return false
    const chars = this.filtering?.get(subscription.requestIdJson) ?? 0
    if (chars > 0) {
      // The one it replaces gives its share back first: renewing a filter is not counted twice.
      const freed = existing === undefined ? 0 : this.filterCharsOf?.get(existing) ?? 0
      const limit = this.state.options.maxFilterChars
      if (this.filterCharsHeld - freed + chars > limit) throw new TooMuchFiltering(limit)
    }
    if (existing !== undefined) {
      this.dropSubscription(existing)
    } else if (this.subscriptions.size >= this.state.options.maxSubscriptions) {
      throw new TooManySubscriptions(this.state.options.maxSubscriptions)
    }
    this.state.subscriptionBudget.take(this.client)
    this.subscriptions.set(subscription.key, subscription)
    if (chars > 0) {
      (this.filterCharsOf ??= new Map()).set(subscription, chars)
      this.filterCharsHeld += chars
    }
    this.state.hub.add(subscription)
    this.resumable?.attach(subscription)
    return true
  }

  /** Remove the subscriptions `match` selects; how many were removed. */
  removeSubscriptions (match: (subscription: Subscription) => boolean): number {
    let removed = 0
    for (const subscription of [...this.subscriptions.values()]) {
      if (!match(subscription)) continue
      this.dropSubscription(subscription)
      removed++
    }
    return removed
  }

  private dropSubscription (subscription: Subscription): void {
    // Inactive first: a delivery already waiting on a permission check is dropped, not sent after the unsubscribe reply.
    subscription.active = false
    if (this.subscriptions.get(subscription.key) === subscription) {
      this.subscriptions.delete(subscription.key)
      this.state.subscriptionBudget.give(this.client)
    }
    this.state.hub.remove(subscription)
    const chars = this.filterCharsOf?.get(subscription)
    if (chars !== undefined) {
      this.filterCharsOf?.delete(subscription)
      this.filterCharsHeld -= chars
    }
    this.resumable?.release(subscription)
  }

  /**
   * A subscription's event, sent in publish order after its permission check. An event of
   * a resumable subscription is numbered and kept when it is sent — or, once the socket has
   * gone, only kept, until the subscription is claimed or its window ends.
   */
  deliverEvent (subscription: Subscription, message: GroupMessage): void {
    const resume = subscription.resume
    // A resumable subscription keeps (numbers) its events from the moment the peer closed,
    // not only from the 'close' event that parks it: the socket stops being open (CLOSING)
    // first, and an event published in between would otherwise be lost to the resume. With
    // a driver that never yields to the event loop (better-sqlite3, MikroORM 7) several
    // writes commit in that gap.
    if (!this.session.open && resume === undefined) return
    const rendered = subscription.render(message)
    if (rendered === undefined) return
    if (resume === undefined) {
      const handler = subscription.handler
      if (handler !== undefined) {
        // In turn like any event, so a handler's frames keep publish order.
        this.afterEarlierEvents(subscription, async () => await handler(rendered, message), rowOf(message))
        return
      }
      const frame = encodeEvent(rendered.action, rendered.status, rendered.dataJson, subscription.requestIdJson)
      if (subscription.permit === undefined && this.eventsQueued === 0) this.sendText(frame)
      else this.afterEarlierEvents(subscription, () => { this.sendText(frame) }, rowOf(message))
    } else {
      // Always in turn, even without a permission check: numbers follow publish order.
      const id = typeof message.id === 'string' ? message.id : ''
      this.afterEarlierEvents(subscription, () => this.resumable?.emit(subscription, id, rendered, message), rowOf(message))
    }
  }

  /** Run `emit` once the events before it are out and the subscriber's permissions still allow it. */
  private afterEarlierEvents (subscription: Subscription, emit: () => void | Promise<void>, object?: Record<string, unknown>): void {
    if (this.eventsQueued >= MAX_QUEUED_EVENTS) {
      // Events waiting on slow permission checks are memory too: bounded like the socket's buffer.
      const resume = subscription.resume
      // The event dropped here would be a silent gap in the numbering: the subscription cannot be resumed past it.
      if (resume !== undefined) resume.broken = true
      if (resume?.parked !== undefined) this.dropSubscription(subscription)
      else this.session.dropSlow(`${MAX_QUEUED_EVENTS} events waiting for their permission checks`)
      return
    }
    this.eventsQueued++
    this.eventTail = this.eventTail.then(async () => {
      try {
        if (subscription.permit !== undefined && !(await subscription.permit(object))) return
        if (subscription.active) await emit()
      } catch (err) {
        this.log.error({ err }, 'fastify-ws-rest: permission check of an event failed; event not sent')
      } finally {
        this.eventsQueued--
      }
    })
  }

  /** `ctx.subscribe`: this socket joins `groups` under a request_id. */
  async subscribeGroups (ctx: MessageContext, groups: string | string[], options: SubscribeOptions): Promise<boolean> {
    const list = typeof groups === 'string' ? [groups] : [...groups]
    if (list.length === 0 || list.some((g) => typeof g !== 'string')) throw new TypeError('ctx.subscribe needs one or more group names')
    const requestId = options.requestId === undefined ? ctx.requestId : options.requestId
    const model = this.route.model
    const view: ModelView | undefined = model === undefined ? undefined : await model.view(ctx)
    const key = `group:${JSON.stringify(list)}:${JSON.stringify(requestId)}`
    const permit = this.permitFor(ctx, options.args ?? {})
    const handler = options.handler === undefined ? undefined : this.eventHandler(options.handler, ctx.action, requestId)
    return this.addSubscription(new Subscription(this, key, list, requestId, groupRenderer(view), permit, handler))
  }

  /**
   * A subscription's `handler`, run per event with a context of the subscriber (its
   * request_id). The event's data is parsed from what was rendered once for everyone; a
   * handler that throws is logged, and the subscription goes on.
   */
  private eventHandler (handler: EventHandler, action: string, requestId: unknown): (rendered: Rendered, message: GroupMessage) => Promise<void> {
    return async (rendered, message) => {
      const ctx = new MessageContext(this, action, requestId)
      const change = message.kind === 'model'
        ? { entity: message.entity, change: message.change, pk: message.pk, before: message.before, after: message.after }
        : undefined
      try {
        await handler({ action: rendered.action, status: rendered.status, data: parsedData(message, rendered), change }, ctx)
      } catch (err) {
        this.log.error({ err }, 'fastify-ws-rest: an event handler failed; the subscription goes on')
      } finally {
        ctx.release()
      }
    }
  }

  /**
   * The check run before each event of a subscription made by `ctx`'s action: that
   * action's permissions, with the subscription's arguments (so a permission reading
   * `ctx.request.user` sees the user as it is at delivery time).
   * Undefined when there is nothing to check.
   */
  permitFor (ctx: MessageContext, args: Record<string, unknown>): ((object?: Record<string, unknown>) => Promise<boolean>) | undefined {
    const permissions = ctx[kPermissions]
    if (permissions.length === 0) return undefined
    const onObjects = permissions.some((p) => p.hasObjectPermission !== undefined)
    const { action, requestId } = ctx
    return async (object) => {
      try {
        // A fresh context per event: a permission that queries through ctx.em must not read a stale identity map.
        const eventCtx = new MessageContext(this, action, requestId)
        await checkPermissions(permissions, eventCtx, args)
        // DRF's object permissions, on the row the event is about.
        if (onObjects && object !== undefined) await checkObjectPermissions(permissions, eventCtx, object)
        return true
      } catch (err) {
        if (isClientError(err)) return false
        throw err
      }
    }
  }

  /** `ctx.unsubscribe`: remove group subscriptions by groups and/or request_id. */
  unsubscribeGroups (options: UnsubscribeOptions): number {
    const groups = options.groups === undefined ? undefined : new Set(typeof options.groups === 'string' ? [options.groups] : options.groups)
    const requestIdJson = options.requestId === undefined ? undefined : JSON.stringify(options.requestId)
    return this.removeSubscriptions((s) => s.key.startsWith('group:') &&
      (requestIdJson === undefined || s.requestIdJson === requestIdJson) &&
      (groups === undefined || s.groups.some((g) => groups.has(g))))
  }

  // ------------------------------------------------------------------ cancellation and lifetime

  /** A controller aborted by `cancel(scope)` or by the socket closing. */
  cancellable (scope: string): AbortController {
    const controller = new AbortController()
    if (this.signal.aborted) controller.abort()
    const scopes = (this.scopes ??= new Map())
    let set = scopes.get(scope)
    if (set === undefined) scopes.set(scope, (set = new Set()))
    set.add(controller)
    return controller
  }

  cancel (scope: string): void {
    const set = this.scopes?.get(scope)
    if (set === undefined) return
    for (const c of set) c.abort()
    this.scopes?.delete(scope)
  }

  forget (controller: AbortController): void {
    const scopes = this.scopes
    if (scopes === undefined) return
    for (const [scope, set] of scopes) {
      if (set.delete(controller) && set.size === 0) scopes.delete(scope)
    }
  }

  private abortAll (): void {
    if (this.scopes === undefined) return
    for (const set of this.scopes.values()) for (const c of set) c.abort()
    this.scopes.clear()
  }

  /**
   * The socket is gone: cancel detached work, release every subscription — but park the
   * resumable ones, which keep their events for a reconnect until their window ends.
   */
  release (): void {
    this.abortAll()
    this.disconnected()
    const resumable = this.resumable
    this.removeSubscriptions((s) => resumable === undefined || s.resume === undefined || s.resume.broken)
    for (const subscription of this.subscriptions.values()) resumable?.park(subscription)
  }

  /** Shutdown: cancel detached work, let in-flight actions finish (and commit) up to `timeoutMs`. */
  async drain (timeoutMs: number): Promise<void> {
    this.abortAll()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([Promise.allSettled([this.tail, ...(this.detached ?? [])]), timeout])
    clearTimeout(timer)
  }
}
