/**
 * One WebSocket connection: frames in, dispatch, permission check, error → reply.
 *
 * Actions of one socket run one after another, in arrival order, as DCRF's consumer
 * does; detached actions (streamed lists, long custom actions) run beside them and are
 * cancelled when the socket closes. All per-connection state lives on this object —
 * never in module or class state, which once made DCRF reply to the wrong client.
 */
import type { EntityManager } from '@mikro-orm/core'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { ActionContext } from './action.js'
import { translateDatabaseError } from './database-errors.js'
import {
  ActionMissing,
  BadFrame,
  InternalError,
  InvalidOption,
  MethodNotAllowed,
  isClientError,
  wireErrors
} from './errors.js'
import type { GenericModel } from './generic.js'
import { checkPermissions } from './permissions.js'
import { encodeReply, FrameError, parseFrame, type ActionRequest, type Reply } from './protocol.js'
import type { CompiledAction, CompiledRoute } from './route.js'
import type { PluginState } from './state.js'

/** Close code sent to every socket when the server shuts down. */
export const CLOSE_GOING_AWAY = 1001
/** Close code for a frame over the size limit. */
export const CLOSE_TOO_BIG = 1009

function byteLength (data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0)
  return data instanceof ArrayBuffer ? data.byteLength : data.length
}

function toText (data: RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  return Buffer.from(data as ArrayBuffer).toString('utf8')
}

/** The context of one message. The EntityManager is forked on first use, so actions that never touch the database pay nothing. */
class MessageContext implements ActionContext {
  private forked: EntityManager | undefined
  private scoped: AbortController[] | undefined

  constructor (
    private readonly connection: Connection,
    readonly action: string,
    readonly requestId: unknown
  ) {}

  get request (): FastifyRequest { return this.connection.request }
  get log (): FastifyBaseLogger { return this.connection.request.log }
  get model (): GenericModel | undefined { return this.connection.route.model }
  get signal (): AbortSignal { return this.connection.signal }

  get em (): EntityManager {
    if (this.forked === undefined) {
      const orm = this.connection.route.orm
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

  reply (data: unknown, status = 200): boolean {
    return this.connection.send({ action: this.action, status, data, errors: [], requestId: this.requestId })
  }

  cancellable (scope: string): AbortSignal {
    const controller = this.connection.cancellable(scope)
    ;(this.scoped ??= []).push(controller)
    return controller.signal
  }

  cancel (scope: string): void {
    this.connection.cancel(scope)
  }

  /** Forget this message's cancellation scopes once it is done, so a long-lived socket does not accumulate them. */
  release (): void {
    if (this.scoped !== undefined) for (const c of this.scoped) this.connection.forget(c)
  }
}

/** One open socket on a wsRest route. */
export class Connection {
  private tail: Promise<void> = Promise.resolve()
  private readonly pending = new Set<Promise<void>>()
  private readonly closed = new AbortController()
  private readonly scopes = new Map<string, Set<AbortController>>()
  private draining = false

  constructor (
    readonly socket: WebSocket,
    readonly request: FastifyRequest,
    readonly route: CompiledRoute,
    private readonly state: PluginState
  ) {
    // Attached synchronously, before anything awaits, or the client's first frames are lost.
    socket.on('message', (data, isBinary) => this.onFrame(data, isBinary))
    socket.on('close', () => this.onClose())
    state.connections.add(this)
  }

  /** Aborted when the socket closes or the server shuts down. */
  get signal (): AbortSignal { return this.closed.signal }

  private onFrame (data: RawData, isBinary: boolean): void {
    // During shutdown the socket is about to close with 1001; new work would only delay it.
    if (this.draining) return
    if (byteLength(data) > this.route.maxPayload) {
      this.socket.close(CLOSE_TOO_BIG, 'Message too big')
      return
    }
    if (isBinary) {
      this.inOrder(new FrameError(new BadFrame('Binary frames are not supported; send JSON text frames.')))
      return
    }
    const request = parseFrame(toText(data), this.route.maxDepth)
    if (request instanceof FrameError) {
      this.inOrder(request)
      return
    }
    const { action, requestId } = request
    if (action === undefined || action === null) {
      this.inOrder(new FrameError(new ActionMissing(), null, requestId))
      return
    }
    const compiled = typeof action === 'string' ? this.route.actions.get(action) : undefined
    if (compiled === undefined) {
      const name = typeof action === 'string' ? action : JSON.stringify(action)
      this.inOrder(new FrameError(new MethodNotAllowed(name), action, requestId))
      return
    }
    this.track(compiled.def.detached
      ? this.execute(compiled, request)
      : (this.tail = this.tail.then(async () => await this.execute(compiled, request))))
  }

  /**
   * Answer a frame that is not a runnable action after the replies already queued, so a
   * client sees replies in the order it sent its frames (as DCRF's consumer does).
   */
  private inOrder (frameError: FrameError): void {
    const { error, action, requestId } = frameError
    this.track(this.tail = this.tail.then(() => this.sendError(error, action, requestId)))
  }

  private track (task: Promise<void>): void {
    this.pending.add(task)
    void task.finally(() => this.pending.delete(task))
  }

  /** Run one action to its reply. Never rejects: every failure becomes an error reply. */
  private async execute (compiled: CompiledAction, request: ActionRequest): Promise<void> {
    const { def } = compiled
    const ctx = new MessageContext(this, def.name, request.requestId)
    try {
      // Permissions come first, before validation or any lookup (DCRF's order).
      await checkPermissions(compiled.permissions, ctx, request.args)
      for (const hook of this.route.preActionHooks) await hook(ctx, request.args)
      const args = compiled.validate === undefined ? request.args : await compiled.validate(request.args)
      const result = def.transaction
        ? await ctx.transactional(async () => await def.handler(ctx, args))
        : await def.handler(ctx, args)
      if (!def.stream) {
        this.send({ action: def.name, status: result?.status ?? 200, data: result?.data ?? null, errors: [], requestId: request.requestId })
      }
    } catch (err) {
      this.sendError(this.toProtocolError(err, def.name), def.name, request.requestId)
    } finally {
      ctx.release()
    }
  }

  /** A client error as it is; a database error the client caused, translated; anything else logged and hidden behind a 500. */
  private toProtocolError (err: unknown, action: string): Error & { statusCode?: number } {
    if (isClientError(err)) return err
    const translated = translateDatabaseError(err, this.route.model?.meta)
    if (translated !== undefined) return translated
    this.request.log.error({ err, action, route: this.route.path }, 'fastify-ws-rest: action failed')
    return new InternalError()
  }

  private sendError (err: Error & { statusCode?: number }, action: unknown, requestId: unknown): void {
    this.send({ action, status: err.statusCode ?? 500, data: null, errors: wireErrors(err), requestId })
  }

  /** Encode and send one reply; false when the socket is no longer open (the reply is dropped). */
  send (reply: Reply): boolean {
    if (this.socket.readyState !== this.socket.OPEN) return false
    let text: string
    try {
      text = encodeReply(reply)
    } catch (err) {
      // data that JSON cannot encode (a BigInt, a cycle) is a server bug, not the client's.
      this.request.log.error({ err, action: reply.action }, 'fastify-ws-rest: reply could not be encoded')
      text = encodeReply({ ...reply, status: 500, data: null, errors: wireErrors(new InternalError()) })
    }
    this.socket.send(text)
    return true
  }

  /** A controller aborted by `cancel(scope)` or by the socket closing. */
  cancellable (scope: string): AbortController {
    const controller = new AbortController()
    if (this.closed.signal.aborted) controller.abort()
    let set = this.scopes.get(scope)
    if (set === undefined) this.scopes.set(scope, (set = new Set()))
    set.add(controller)
    return controller
  }

  cancel (scope: string): void {
    const set = this.scopes.get(scope)
    if (set === undefined) return
    for (const c of set) c.abort()
    this.scopes.delete(scope)
  }

  forget (controller: AbortController): void {
    for (const [scope, set] of this.scopes) {
      if (set.delete(controller) && set.size === 0) this.scopes.delete(scope)
    }
  }

  private abortAll (): void {
    this.closed.abort()
    for (const set of this.scopes.values()) for (const c of set) c.abort()
    this.scopes.clear()
  }

  private onClose (): void {
    this.abortAll()
    this.state.connections.delete(this)
  }

  /**
   * Graceful close: take no new frames, cancel detached work, let in-flight actions finish
   * (and commit) up to `timeoutMs`, then close with 1001.
   */
  async shutdown (timeoutMs: number): Promise<void> {
    this.draining = true
    this.abortAll()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([Promise.allSettled([...this.pending]), timeout])
    clearTimeout(timer)
    if (this.socket.readyState === this.socket.OPEN || this.socket.readyState === this.socket.CONNECTING) {
      this.socket.close(CLOSE_GOING_AWAY, 'Server shutting down')
    }
  }
}
