/**
 * The client: one WebSocket at a time (replaced on every reconnect), the requests waiting
 * for their replies, the live subscriptions, and the state machine
 * connecting → open → reconnecting → open → … → closed.
 *
 * What survives a dropped connection:
 * - requests made while down are queued and sent once the socket is open again;
 * - requests in flight when it dropped are re-sent only if they are idempotent reads,
 *   since a write's outcome is unknown: those reject with WsRestConnectionLostError;
 * - every subscription's subscribe request is sent again (same action, args, request_id).
 * Every request keeps its own timeout, counted from the call, through all of that.
 */
import { backoffDelay, reconnectSettings, type ReconnectOptions, type ReconnectSettings } from './backoff.js'
import { Emitter } from './emitter.js'
import { WsRestClosedError, WsRestConnectionLostError, WsRestError, WsRestTimeoutError, WsRestUpgradeRefusedError } from './errors.js'
import { looksIdempotent } from './idempotent.js'
import { randomHex, requestIds } from './random.js'
import { WsRestStream } from './stream.js'
import {
  LiveSubscription,
  type SubscribeOptions,
  type Subscription,
  type SubscriptionHost,
  type SubscriptionListener
} from './subscription.js'
import { encodeFrame, readFrame, type Reply } from './wire.js'
import { CLOSED, OPEN, resolveWebSocket, type WebSocketConstructor, type WebSocketLike } from './websocket.js'
import { actionHelpers, type ClientFor } from './typed.js'

/** Options of `createClient(url, options)`. */
export interface ClientOptions {
  /** The WebSocket constructor. Default `globalThis.WebSocket`; in Node 20 pass `WebSocket` from `ws`. */
  WebSocket?: WebSocketConstructor
  /**
   * Subprotocols for the WebSocket constructor (e.g. to carry a token). A function is asked
   * again before every connection, so a reconnect carries a fresh token.
   */
  protocols?: string | string[] | (() => string | string[])
  /** Per-request timeout in ms, counted from the call (queueing included). Default 10,000. */
  timeout?: number
  /** Reconnection backoff, or `false` to close the client when the socket drops. */
  reconnect?: ReconnectOptions | false
  /** The route is multiplexed: frames go in `{"stream", "payload"}` envelopes and every call names its stream. Default false. */
  multiplex?: boolean
  /** Ask the server for resumable subscriptions (ignored by servers without the extension). Default true. */
  resume?: boolean
}

/** Options of `client.request(action, args, options)`. */
export interface RequestOptions {
  /** This request's timeout in ms (default: the client's). With `onReply`, the time allowed between two replies. */
  timeout?: number
  /** The stream (multiplexed clients; required there). */
  stream?: string
  /**
   * May the request be re-sent if the connection drops before its reply? Default: guessed
   * from the action's name (`looksIdempotent`: `list`, `retrieve`, `get_…` yes; anything
   * else no).
   */
  idempotent?: boolean
  /**
   * For actions that answer several times with one request_id (a streamed `list`): called
   * for each reply with status < 400; return `true` when it was the last one — the
   * promise then resolves with that reply's data. A streamed list has no end marker:
   * `(page) => page.offset + page.limit >= page.count`.
   */
  onReply?: (data: unknown, reply: Reply) => unknown
}

/** `client.state`. */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** What a socket closed with. */
export interface CloseInfo {
  code: number
  reason: string
}

/** The next reconnection attempt. */
export interface ReconnectInfo {
  /** 1 for the first attempt after a drop. */
  attempt: number
  /** ms until it starts. */
  delay: number
}

/** The client's events and their listeners. */
export interface ClientEvents {
  /** The socket opened (first time or after a reconnect); queued requests and subscriptions have been sent. */
  open: () => void
  /** A socket closed (also a connection attempt that failed). */
  close: (info: CloseInfo) => void
  /** A reconnection attempt is scheduled. */
  reconnecting: (info: ReconnectInfo) => void
  /** Something went wrong that no promise reports: a socket error, a bad frame from the server, a callback that threw. */
  error: (error: Error) => void
}

/** A request waiting for its reply (queued, or sent). */
interface Pending {
  readonly requestId: string
  readonly action: string
  readonly stream: string | undefined
  /** The frame's text, encoded once: a re-send is byte-identical. */
  readonly text: string
  readonly idempotent: boolean
  readonly onReply: ((data: unknown, reply: Reply) => unknown) | undefined
  readonly timeout: number
  readonly resolve: (data: unknown) => void
  readonly reject: (error: Error) => void
  timer: ReturnType<typeof setTimeout> | undefined
  /** Sent on the current socket. */
  sent: boolean
  /** Replies received so far (only counted with `onReply`). */
  replies: number
}

const DEFAULT_TIMEOUT = 10_000

/** A REST-over-WebSocket client for fastify-ws-rest (and DCRF) servers. */
export class WsRestClient {
  /** The URL it connected (or reconnected) to last. */
  url: string
  /** Where to connect: asked before every connection (a URL carrying a token can be renewed). */
  private readonly urlOf: () => string
  private readonly WebSocket: WebSocketConstructor
  private readonly protocols: string | string[] | (() => string | string[]) | undefined
  private readonly timeout: number
  private readonly reconnect: ReconnectSettings | false
  private readonly multiplex: boolean
  private readonly resume: boolean
  private readonly nextId: () => string = requestIds()
  private readonly emitter = new Emitter<ClientEvents>((error, event) => {
    // A throwing 'error' listener has nowhere left to report to.
    if (event !== 'error') this.emitter.emit('error', toError(error))
  })

  private readonly pending = new Map<string, Pending>()
  private readonly subscriptions = new Map<string, LiveSubscription>()
  private socket: WebSocketLike | undefined
  private current: ClientState = 'connecting'
  private attempts = 0
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined
  private closing: Promise<void> | undefined
  private helpers: Record<string, (args?: Record<string, unknown>, options?: RequestOptions) => Promise<unknown>> | undefined

  /** What subscriptions use of the client (closures, so none of it is public API). */
  private readonly host: SubscriptionHost = {
    transmit: (stream, frame) => this.sendText(encodeFrame(frame, stream, this.multiplex)),
    isOpen: () => this.current === 'open',
    forget: (requestId) => { this.subscriptions.delete(requestId) },
    report: (error) => this.emitter.emit('error', toError(error))
  }

  /** Connects at once. Prefer `createClient(url, options)`. */
  constructor (url: string | (() => string), options: ClientOptions = {}) {
    this.urlOf = typeof url === 'function' ? url : () => url
    this.url = typeof url === 'function' ? '' : url
    this.WebSocket = resolveWebSocket(options.WebSocket)
    this.protocols = options.protocols
    this.timeout = positive('timeout', options.timeout, DEFAULT_TIMEOUT)
    this.reconnect = reconnectSettings(options.reconnect)
    this.multiplex = options.multiplex === true
    this.resume = options.resume !== false
    this.connect(true)
  }

  /** `connecting` (first connection), `open`, `reconnecting` (dropped, retrying), `closed` (after `close()`, or a drop with `reconnect: false`). */
  get state (): ClientState {
    return this.current
  }

  /** Listen to an event; returns the function that removes the listener. */
  on<K extends keyof ClientEvents> (event: K, listener: ClientEvents[K]): () => void {
    return this.emitter.on(event, listener)
  }

  /** Remove a listener. */
  off<K extends keyof ClientEvents> (event: K, listener: ClientEvents[K]): void {
    this.emitter.off(event, listener)
  }

  /**
   * Send `{action, request_id, ...args}` and resolve with the reply's `data` (status <
   * 400). Rejects with WsRestError (status ≥ 400), WsRestTimeoutError,
   * WsRestConnectionLostError (a write in flight when the socket dropped) or
   * WsRestClosedError. While disconnected the request waits in a queue.
   */
  async request (action: string, args: Record<string, unknown> = {}, options: RequestOptions = {}): Promise<unknown> {
    if (this.current === 'closed') throw new WsRestClosedError(action)
    const stream = this.streamOf(options.stream)
    const timeout = positive('timeout', options.timeout, this.timeout)
    const requestId = this.nextId()
    // Encoded now: arguments that cannot be JSON reject this call, not a later reconnect.
    const text = encodeFrame({ ...args, action, request_id: requestId }, stream, this.multiplex)
    return await new Promise<unknown>((resolve, reject) => {
      const pending: Pending = {
        requestId,
        action,
        stream,
        text,
        idempotent: options.idempotent ?? looksIdempotent(action),
        onReply: options.onReply,
        timeout,
        resolve,
        reject,
        timer: undefined,
        sent: false,
        replies: 0
      }
      this.pending.set(requestId, pending)
      this.arm(pending)
      if (this.current === 'open') pending.sent = this.sendText(text)
    })
  }

  /**
   * Subscribe: send `{action, request_id, ...args}` (plus the resume key when `resume` is
   * on) and resolve with the Subscription once the reply arrives (reject on an error
   * status). Each event carrying the subscription's request_id goes to `onEvent`. The
   * subscription is sent again after every reconnect until `unsubscribe()` (or until it
   * ends by itself: see `onError`). A custom subscribing action needs
   * `options.unsubscribeAction` (a TypeError without it; see SubscribeOptions).
   */
  async subscribe (
    action: string,
    args: Record<string, unknown>,
    onEvent: SubscriptionListener,
    options: SubscribeOptions = {}
  ): Promise<Subscription> {
    if (this.current === 'closed') throw new WsRestClosedError(action)
    const stream = this.streamOf(options.stream)
    const timeout = positive('timeout', options.timeout, this.timeout)
    JSON.stringify(args) // arguments that cannot be JSON reject this call, not a later reconnect
    const unsubscribeAction = unsubscribeActionFor(action, options.unsubscribeAction)
    const requestId = this.nextId()
    return await new Promise<Subscription>((resolve, reject) => {
      const live = new LiveSubscription({
        requestId,
        action,
        args: { ...args },
        stream,
        key: this.resume ? randomHex(16) : undefined,
        timeout,
        unsubscribeAction,
        onEvent,
        onRefetch: options.onRefetch,
        onError: options.onError,
        host: this.host,
        resolve,
        reject
      })
      this.subscriptions.set(requestId, live)
      if (this.current === 'open') live.send()
    })
  }

  /** One function per action: `client.actions.create(args)` is `client.request('create', args)` (typed with `createClient<typeof route>`). */
  get actions (): Record<string, (args?: Record<string, unknown>, options?: RequestOptions) => Promise<unknown>> {
    return (this.helpers ??= actionHelpers(async (action, args, options) => await this.request(action, args, options)))
  }

  /** A multiplexed stream: `request` and `subscribe` scoped to it. Only on a client made with `multiplex: true`. */
  stream (name: string): WsRestStream {
    if (!this.multiplex) throw new TypeError('client.stream() needs a multiplexed client: createClient(url, { multiplex: true })')
    if (typeof name !== 'string' || name === '') throw new TypeError('client.stream(name): name must be a non-empty string')
    return new WsRestStream(this, name)
  }

  /**
   * Close for good: no reconnect after this. Pending requests and subscribe calls reject
   * with WsRestClosedError, subscriptions end. Resolves once the socket has closed.
   */
  async close (): Promise<void> {
    this.closing ??= this.shutDown()
    await this.closing
  }

  /** Open a socket (the first one, or the next one after a drop). */
  private connect (first: boolean): void {
    let socket: WebSocketLike
    try {
      this.url = this.urlOf()
      const protocols = typeof this.protocols === 'function' ? this.protocols() : this.protocols
      socket = protocols === undefined ? new this.WebSocket(this.url) : new this.WebSocket(this.url, protocols)
    } catch (error) {
      // A bad URL is the caller's mistake: say so from createClient. Later, retry like any failed attempt.
      if (first) throw error
      this.emitter.emit('error', toError(error))
      this.dropped({ code: 1006, reason: 'the socket could not be created' })
      return
    }
    this.socket = socket
    // Events of a socket the client has moved on from (closed, replaced) are ignored.
    socket.onopen = () => { if (this.socket === socket) this.opened() }
    socket.onmessage = (event: { data?: unknown }) => { if (this.socket === socket) this.received(event?.data) }
    // A 401/403 at the upgrade is definitive: the same credentials will be refused again,
    // so reconnecting forever (and timing requests out) would only hide why.
    let refused: WsRestUpgradeRefusedError | undefined
    socket.onerror = (event: unknown) => {
      if (this.socket !== socket) return
      const error = socketError(event)
      const status = refusedStatus(error)
      if (status !== undefined) refused = new WsRestUpgradeRefusedError(status)
      this.emitter.emit('error', refused ?? error)
    }
    socket.onclose = (event: unknown) => { if (this.socket === socket) this.dropped(closeInfo(event), refused) }
  }

  private opened (): void {
    this.current = 'open'
    this.attempts = 0
    // Subscriptions first, so events flow again as early as possible and a queued read
    // of what they watch is answered after the server has them registered again.
    for (const subscription of [...this.subscriptions.values()]) subscription.send()
    for (const pending of [...this.pending.values()]) {
      if (!pending.sent) pending.sent = this.sendText(pending.text)
    }
    this.emitter.emit('open')
  }

  /** A frame from the server. Never throws: a bad frame is reported and ignored. */
  private received (data: unknown): void {
    try {
      const frame = readFrame(data, this.multiplex)
      if (frame instanceof Error) {
        this.emitter.emit('error', frame)
        return
      }
      const { stream, message } = frame
      const requestId = message.request_id
      // Not one of ours: ids we send are strings. (Replies the server could not attribute carry null.)
      if (typeof requestId !== 'string') return
      // A stream of null: the server could not read the envelope and answers on no stream.
      const subscription = this.subscriptions.get(requestId)
      if (subscription !== undefined) {
        if (stream === null || stream === subscription.init.stream) subscription.receive(message)
        return
      }
      const pending = this.pending.get(requestId)
      if (pending !== undefined && (stream === null || stream === pending.stream)) this.replied(pending, message)
    } catch (error) {
      this.emitter.emit('error', toError(error))
    }
  }

  private replied (pending: Pending, message: Reply): void {
    if (message.response_status >= 400) {
      this.finish(pending)
      pending.reject(new WsRestError(message, pending.stream))
      return
    }
    if (pending.onReply === undefined) {
      this.finish(pending)
      pending.resolve(message.data)
      return
    }
    pending.replies++
    let last: boolean
    try {
      last = pending.onReply(message.data, message) === true
    } catch (error) {
      this.finish(pending)
      pending.reject(toError(error))
      return
    }
    if (last) {
      this.finish(pending)
      pending.resolve(message.data)
    } else {
      this.arm(pending)
    }
  }

  /**
   * The socket closed (or could not open): sort out what was in flight, then reconnect or
   * close. After a definitive refusal (401/403 at the upgrade) the client closes for good
   * and everything pending rejects with that refusal.
   */
  private dropped (info: CloseInfo, refused?: WsRestUpgradeRefusedError): void {
    this.socket = undefined
    if (refused !== undefined && this.current !== 'closed') {
      this.emitter.emit('close', info)
      this.closing ??= this.shutDown(refused)
      return
    }
    for (const pending of [...this.pending.values()]) {
      if (!pending.sent) continue
      // A read that has not begun to answer is safe to ask again; anything else has an unknown outcome.
      if (pending.idempotent && pending.replies === 0) {
        pending.sent = false
        continue
      }
      this.finish(pending)
      pending.reject(new WsRestConnectionLostError(pending.action, pending.requestId))
    }
    for (const subscription of [...this.subscriptions.values()]) subscription.disconnected()
    if (this.current === 'closed') return
    this.emitter.emit('close', info)
    // Re-read: TypeScript keeps the narrowing from above, but a 'close' listener may have called close().
    if (this.isClosed()) return
    if (this.reconnect === false) {
      this.closing ??= this.shutDown()
      return
    }
    this.current = 'reconnecting'
    const delay = backoffDelay(this.attempts, this.reconnect)
    this.attempts++
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined
      this.connect(false)
    }, delay)
    this.emitter.emit('reconnecting', { attempt: this.attempts, delay })
  }

  /** Close for good; what is pending rejects with `refused` when the server refused the upgrade, else WsRestClosedError. */
  private async shutDown (refused?: WsRestUpgradeRefusedError): Promise<void> {
    this.current = 'closed'
    clearTimeout(this.reconnectTimer)
    this.reconnectTimer = undefined
    for (const pending of [...this.pending.values()]) {
      this.finish(pending)
      pending.reject(refused ?? new WsRestClosedError(pending.action, pending.requestId))
    }
    for (const subscription of [...this.subscriptions.values()]) subscription.abort(refused)
    const socket = this.socket
    this.socket = undefined
    if (socket === undefined || socket.readyState === CLOSED) return
    await new Promise<void>((resolve) => {
      socket.onopen = null
      socket.onmessage = null
      // Not null: `ws` throws an 'error' nobody listens to (closing a socket still connecting emits one).
      socket.onerror = () => {}
      socket.onclose = (event: unknown) => {
        this.emitter.emit('close', closeInfo(event))
        resolve()
      }
      try {
        socket.close(1000)
      } catch {
        resolve()
      }
    })
  }

  private isClosed (): boolean {
    return this.current === 'closed'
  }

  /** (Re)start the request's timer. */
  private arm (pending: Pending): void {
    clearTimeout(pending.timer)
    pending.timer = setTimeout(() => {
      if (this.pending.get(pending.requestId) !== pending) return
      this.pending.delete(pending.requestId)
      pending.reject(new WsRestTimeoutError(pending.action, pending.requestId, pending.timeout))
    }, pending.timeout)
  }

  private finish (pending: Pending): void {
    clearTimeout(pending.timer)
    this.pending.delete(pending.requestId)
  }

  /** Send a frame on the open socket; false when there is none. */
  private sendText (text: string): boolean {
    const socket = this.socket
    if (socket === undefined || this.current !== 'open' || socket.readyState !== OPEN) return false
    try {
      socket.send(text)
      return true
    } catch (error) {
      this.emitter.emit('error', toError(error))
      return false
    }
  }

  /** The stream a call names, checked against the client's mode. */
  private streamOf (stream: string | undefined): string | undefined {
    if (this.multiplex && (typeof stream !== 'string' || stream === '')) {
      throw new TypeError('A multiplexed client needs { stream } on every call (or use client.stream(name))')
    }
    if (!this.multiplex && stream !== undefined) {
      throw new TypeError('{ stream } needs a multiplexed client: createClient(url, { multiplex: true })')
    }
    return stream
  }
}

/**
 * Create a client and start connecting. Requests and subscriptions may be made at once:
 * they are queued until the socket opens.
 *
 * ```ts
 * import WebSocket from 'ws'   // Node 20; browsers need nothing
 * const client = createClient('ws://localhost:8000/ws/', { WebSocket })
 * const alice = await client.request('retrieve', { pk: 1 })
 * ```
 */
export function createClient<T = undefined> (url: string | (() => string), options: ClientOptions = {}): ClientFor<T> {
  return new WsRestClient(url, options) as unknown as ClientFor<T>
}

function positive (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new TypeError(`${name} must be a positive number of milliseconds, got ${String(value)}`)
  }
  return value
}

function toError (error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

/** A socket 'error' event as an Error (`ws` gives one with a message; browsers give a bare Event). */
function socketError (event: unknown): Error {
  const inner = (event as { error?: unknown } | null)?.error
  if (inner instanceof Error) return inner
  const message = (event as { message?: unknown } | null)?.message
  return new Error(typeof message === 'string' && message !== '' ? message : 'WebSocket error')
}

/** The HTTP status of an upgrade refused with 401 or 403, from `ws`'s "Unexpected server response: 401". */
function refusedStatus (error: Error): number | undefined {
  const match = /Unexpected server response: (40[13])\b/.exec(error.message)
  return match === null ? undefined : Number(match[1])
}

function closeInfo (event: unknown): CloseInfo {
  const { code, reason } = (event ?? {}) as { code?: unknown, reason?: unknown }
  return { code: typeof code === 'number' ? code : 1006, reason: typeof reason === 'string' ? reason : '' }
}

/** The mixins' subscribing actions and the action that undoes each (see SubscribeOptions.unsubscribeAction). */
const MIXIN_UNSUBSCRIBE: Readonly<Record<string, string>> = {
  subscribe_instance: 'unsubscribe_instance',
  subscribe_list: 'unsubscribe_list'
}

/** The action `unsubscribe()` of `action` sends, or null for none; a TypeError when a custom action leaves it out. */
function unsubscribeActionFor (action: string, option: string | null | undefined): string | null {
  if (option === null) return null
  if (option !== undefined) {
    if (typeof option !== 'string' || option === '') throw new TypeError('unsubscribeAction must be a non-empty string, or null to send nothing')
    return option
  }
  const known = Object.hasOwn(MIXIN_UNSUBSCRIBE, action) ? MIXIN_UNSUBSCRIBE[action] : undefined
  if (known !== undefined) return known
  throw new TypeError(`subscribe("${action}"): a custom subscribing action needs the option unsubscribeAction — ` +
    'the action that ends it on the server, or null to send nothing on unsubscribe()')
}
