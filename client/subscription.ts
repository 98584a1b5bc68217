/**
 * One live subscription: its subscribe request (sent again on every reconnect), the
 * events that carry its request_id, its unsubscribe, and — when the server supports it —
 * resuming after a reconnect without losing events.
 *
 * Resumable subscriptions (a server extension; a DCRF server ignores the extra key):
 * - the subscribe frame carries `"resume": {"key": K}`, K a random secret of this
 *   subscription; the server answers `{"action": "resume", 201, data {key, seq: 0}}`
 *   before the subscribe reply, and numbers the subscription's events `seq` 1, 2, 3…;
 * - after a reconnect the frame carries `"resume": {"key": K, "seq": <last seq handed to
 *   onEvent>}`; before the subscribe reply the server answers 200 (the missed events
 *   follow the reply) or 410 (they are gone: numbering restarts at 1);
 * - whenever the client cannot know what it missed — a 410, or a re-subscribe answered
 *   with no `resume` message at all (a DCRF server, or `resume: false`), or a gap in the
 *   numbering — it calls `onRefetch()` so the app reloads what it shows;
 * - when another connection takes the key (the server sends `{"action": "resume", 409}`
 *   with the subscription's request_id), the subscription has moved there: this one ends
 *   with a WsRestTakenOverError (see there) and is not restored.
 */
import { WsRestClosedError, WsRestError, WsRestTakenOverError, WsRestTimeoutError } from './errors.js'
import { isObject, type Reply } from './wire.js'
import { randomHex } from './random.js'

/** An event of a subscription, as `onEvent` gets it. */
export interface SubscriptionEvent {
  /** What happened: `update`, `delete`, `create` (list subscriptions), or a custom action's name. */
  action: string
  /** The event's data: the object, or `{"pk": …}` for a delete. */
  data: unknown
  /** The event's `response_status` (200 update, 201 create, 204 delete). */
  status: number
}

/** Called for each event of a subscription. */
export type SubscriptionListener = (event: SubscriptionEvent) => void

/** Options of `client.subscribe(action, args, onEvent, options)`. */
export interface SubscribeOptions {
  /** The stream (multiplexed clients; required there). */
  stream?: string
  /**
   * Called when events may have been missed and cannot be replayed: after a re-subscribe
   * the server did not resume, or on a gap in the numbering. Reload what the app shows.
   */
  onRefetch?: () => void
  /**
   * Called when the subscription ends for good other than by `unsubscribe()`: a
   * re-subscribe after a reconnect got an error status (a WsRestError), or another
   * connection took its resume key (a WsRestTakenOverError). The same error goes to the
   * client's 'error' event.
   */
  onError?: (error: WsRestError) => void
  /** Timeout of the subscribe and unsubscribe requests, in ms (default: the client's `timeout`). */
  timeout?: number
  /**
   * The action `unsubscribe()` sends (with the same request_id and args), or `null` to
   * send nothing: `unsubscribe()` then only stops the callbacks and the restoring on
   * reconnect, and the server keeps the subscription until the socket closes.
   *
   * Default: `unsubscribe_instance` / `unsubscribe_list` for the mixins
   * `subscribe_instance` / `subscribe_list`. Required for any other (custom) subscribing
   * action — `subscribe()` rejects with a TypeError without it: the client cannot know
   * which action, if any, undoes a custom one, and guessing (`"un" + action`) would send
   * an action the server may not have.
   */
  unsubscribeAction?: string | null
}

/** What a live subscription needs from its client. */
export interface SubscriptionHost {
  /** Send a frame now; false when the socket is not open. */
  transmit: (stream: string | undefined, frame: Record<string, unknown>) => boolean
  isOpen: () => boolean
  /** The subscription is over: stop routing its request_id to it. */
  forget: (requestId: string) => void
  /** Report an error on the client's 'error' event (a throwing callback, a failed re-subscribe). */
  report: (error: unknown) => void
}

/** Everything a live subscription is made from. */
export interface SubscriptionInit {
  requestId: string
  action: string
  args: Record<string, unknown>
  stream: string | undefined
  /** The resume key (hex), or undefined when resume is off. */
  key: string | undefined
  timeout: number
  /** The action unsubscribe() sends; null: none (see SubscribeOptions.unsubscribeAction). */
  unsubscribeAction: string | null
  onEvent: SubscriptionListener
  onRefetch: (() => void) | undefined
  onError: ((error: WsRestError) => void) | undefined
  host: SubscriptionHost
  /** Settle `client.subscribe()`: with the handle once the first reply arrives, or with its error. */
  resolve: (subscription: Subscription) => void
  reject: (error: Error) => void
}

type Phase = 'subscribing' | 'active' | 'unsubscribing' | 'ended'

/** What the server said about resuming, for the subscribe request in flight. */
type ResumeAnswer = 'none' | 'fresh' | 'resumed' | 'restarted'

/** The handle `client.subscribe()` resolves with. */
export class Subscription {
  readonly #live: LiveSubscription

  /** Made by the client; apps get one from `client.subscribe()`. */
  constructor (live: LiveSubscription) {
    this.#live = live
  }

  /** The subscription's request_id: every event for it carries this id. */
  get requestId (): string { return this.#live.init.requestId }
  /** The subscribing action (`subscribe_instance`, `subscribe_list`, …). */
  get action (): string { return this.#live.init.action }
  /** The arguments it was subscribed with (sent again on reconnect, and with the unsubscribe). */
  get args (): Record<string, unknown> { return this.#live.init.args }
  /** Its stream on a multiplexed client, else undefined. */
  get stream (): string | undefined { return this.#live.init.stream }
  /** True until `unsubscribe()`, `client.close()`, or a failed re-subscribe. */
  get active (): boolean { return this.#live.active }
  /** True when the server acknowledged the resume key on the latest (re)subscribe: events missed during a drop are replayed. */
  get resumable (): boolean { return this.#live.resumable }

  /**
   * Stop: callbacks stop at once, the unsubscribe action (option `unsubscribeAction`:
   * `unsubscribe_instance` / `unsubscribe_list` for the mixins; same request_id and
   * args) is sent, and the promise resolves on its reply. When the socket is down, or
   * `unsubscribeAction` is null, nothing is sent (a dropped socket took the server's
   * subscription with it, and it will not be restored): it resolves at once.
   */
  async unsubscribe (): Promise<void> {
    await this.#live.unsubscribe()
  }
}

/** The client's side of one subscription (internal). */
export class LiveSubscription {
  readonly handle: Subscription
  resumable = false
  private phase: Phase = 'subscribing'
  /** A subscribe reply (status < 400) has arrived at least once: later ones are re-subscribes. */
  private confirmed = false
  /** The subscribe frame was sent on the current socket and its reply has not come yet. */
  private awaitingReply = false
  private answer: ResumeAnswer = 'none'
  /** The last `seq` handed to onEvent (0: none yet, or numbering restarted). */
  private lastSeq = 0
  /** The resume key. A new one for each subscribe the server never confirmed: the old may still be held there. */
  private key: string | undefined
  private sentBefore = false
  private firstTimer: ReturnType<typeof setTimeout> | undefined
  private firstSettled = false
  private unsubscribing: Promise<void> | undefined
  private settleUnsubscribe: { resolve: () => void, reject: (error: Error) => void, timer: ReturnType<typeof setTimeout> } | undefined

  constructor (readonly init: SubscriptionInit) {
    this.key = init.key
    this.handle = new Subscription(this)
    this.firstTimer = setTimeout(() => this.firstTimedOut(), init.timeout)
  }

  get active (): boolean {
    return this.phase === 'subscribing' || this.phase === 'active'
  }

  /** Send the subscribe frame on the socket that just opened (first time, or after a reconnect). */
  send (): void {
    if (!this.active) return
    const { action, requestId, args, stream } = this.init
    const frame: Record<string, unknown> = { ...args, action, request_id: requestId }
    if (this.key !== undefined && !this.confirmed && this.sentBefore) this.key = randomHex(16)
    this.sentBefore = true
    const key = this.key
    if (key !== undefined) {
      // Before the first reply there is nothing to resume: ask for a fresh numbering.
      frame.resume = this.confirmed ? { key, seq: this.lastSeq } : { key }
    }
    if (!this.confirmed) this.lastSeq = 0
    this.answer = 'none'
    this.awaitingReply = this.init.host.transmit(stream, frame)
  }

  /** A message carrying this subscription's request_id. */
  receive (message: Reply): void {
    if (this.phase === 'ended') return
    const action = message.action
    if (this.phase === 'unsubscribing') {
      // Taken over: the server dropped it here, so no unsubscribe reply will come; it is over anyway.
      if (isTakeover(message)) return this.end()
      // The subscribe reply or events still in flight are dropped; only the unsubscribe's reply matters.
      if (action !== null && action === this.init.unsubscribeAction) this.unsubscribed(message)
      return
    }
    // Checked before the resume answers below: a 409 is never a 201/200/410 answer to our own key.
    if (isTakeover(message)) return this.takenOver(message)
    if (this.awaitingReply) {
      if (action === 'resume' && this.key !== undefined) return this.resumeAnswered(message)
      if (action === this.init.action || (action === null && message.response_status >= 400)) return this.subscribeAnswered(message)
    }
    this.event(message)
  }

  /** The socket closed. */
  disconnected (): void {
    this.awaitingReply = false
    // The server dropped the subscription with the socket: the unsubscribe has nothing left to do.
    if (this.phase === 'unsubscribing') this.end()
  }

  /** The client is closing: end, failing a subscribe() still waiting for its first reply (with `reason`, e.g. a refused upgrade). */
  abort (reason?: Error): void {
    if (this.phase === 'ended') return
    this.end()
    this.settleFirst(reason ?? new WsRestClosedError(this.init.action, this.init.requestId))
  }

  async unsubscribe (): Promise<void> {
    if (this.unsubscribing !== undefined) return await this.unsubscribing
    if (this.phase === 'ended') return
    this.phase = 'unsubscribing'
    const { requestId, args, stream, host, timeout, unsubscribeAction } = this.init
    this.unsubscribing = new Promise<void>((resolve, reject) => {
      if (unsubscribeAction === null || !host.isOpen() || !host.transmit(stream, { ...args, action: unsubscribeAction, request_id: requestId })) {
        resolve()
        return
      }
      const timer = setTimeout(() => reject(new WsRestTimeoutError(unsubscribeAction, requestId, timeout)), timeout)
      this.settleUnsubscribe = { resolve, reject, timer }
    }).finally(() => this.end())
    return await this.unsubscribing
  }

  private resumeAnswered (message: Reply): void {
    const data = message.data
    // A resume message for another key is not about this subscription.
    if (isObject(data) && data.key !== undefined && data.key !== this.key) return
    this.resumable = true
    if (message.response_status === 201) {
      this.answer = 'fresh'
      // Never lowered: an event already handed over stays handed over.
      if (isObject(data) && typeof data.seq === 'number' && data.seq > this.lastSeq) this.lastSeq = data.seq
    } else if (message.response_status === 200) {
      this.answer = 'resumed'
    } else {
      // 410 (or any refusal): the missed events are gone and numbering restarts at 1.
      this.answer = 'restarted'
      this.lastSeq = 0
    }
  }

  private subscribeAnswered (message: Reply): void {
    this.awaitingReply = false
    if (message.response_status >= 400) {
      const error = new WsRestError(message, this.init.stream)
      const wasConfirmed = this.confirmed
      this.end()
      if (!wasConfirmed) {
        this.settleFirst(error)
        return
      }
      // A re-subscribe refused (the row is gone, a permission changed…): nothing will come any more.
      this.call(() => this.init.onError?.(error))
      this.init.host.report(error)
      return
    }
    const resubscribed = this.confirmed
    this.confirmed = true
    this.phase = 'active'
    if (this.answer === 'none') {
      // No resume message: a server without the extension, or resume off. Its numbering, if any, is unknown.
      this.resumable = false
      if (resubscribed) this.lastSeq = 0
    }
    this.settleFirst()
    if (resubscribed && this.answer !== 'resumed') this.refetch()
  }

  /**
   * Another connection took the resume key: the server moved the subscription there and
   * dropped it here. End without sending anything (an unsubscribe with this request_id
   * has nothing left to undo here) and never re-subscribe: that would take the key back
   * from the other connection, which would then take it back, and so on.
   */
  private takenOver (message: Reply): void {
    const error = new WsRestTakenOverError(message, this.init.stream)
    const wasConfirmed = this.confirmed
    this.awaitingReply = false
    this.end()
    if (!wasConfirmed) {
      this.settleFirst(error)
      return
    }
    this.call(() => this.init.onError?.(error))
    this.init.host.report(error)
  }

  private event (message: Reply): void {
    if (!this.active) return
    const seq = message.seq
    let gap = false
    if (typeof seq === 'number' && Number.isFinite(seq)) {
      if (seq <= this.lastSeq) return // already handed to onEvent (a replay overlapping what arrived live)
      gap = seq > this.lastSeq + 1
      this.lastSeq = seq
    }
    // A gap should not happen; if it does, the app's data is no longer trustworthy.
    if (gap) this.refetch()
    const event: SubscriptionEvent = { action: message.action ?? '', data: message.data, status: message.response_status }
    this.call(() => this.init.onEvent(event))
  }

  private unsubscribed (message: Reply): void {
    const settle = this.settleUnsubscribe
    if (settle === undefined) return
    clearTimeout(settle.timer)
    if (message.response_status >= 400) settle.reject(new WsRestError(message, this.init.stream))
    else settle.resolve()
  }

  private firstTimedOut (): void {
    this.firstTimer = undefined
    if (this.confirmed || this.phase === 'ended') return
    const { action, requestId, args, stream, host, timeout, unsubscribeAction } = this.init
    const sent = this.awaitingReply
    this.end()
    // The server may still subscribe after the reply we gave up on: undo it, best effort
    // (its reply comes for a request_id nobody waits for, and is ignored).
    if (sent && unsubscribeAction !== null && host.isOpen()) host.transmit(stream, { ...args, action: unsubscribeAction, request_id: requestId })
    this.settleFirst(new WsRestTimeoutError(action, requestId, timeout))
  }

  /** Settle `client.subscribe()` once: with the handle, or with `error`. */
  private settleFirst (error?: Error): void {
    if (this.firstSettled) return
    this.firstSettled = true
    clearTimeout(this.firstTimer)
    if (error === undefined) this.init.resolve(this.handle)
    else this.init.reject(error)
  }

  private refetch (): void {
    this.call(() => this.init.onRefetch?.())
  }

  /** Run an app callback; a throw goes to the client's 'error' event, never into the socket's handler. */
  private call (fn: () => void): void {
    try {
      fn()
    } catch (error) {
      this.init.host.report(error)
    }
  }

  private end (): void {
    if (this.phase === 'ended') return
    this.phase = 'ended'
    clearTimeout(this.firstTimer)
    if (this.settleUnsubscribe !== undefined) {
      clearTimeout(this.settleUnsubscribe.timer)
      // Ended some other way (socket gone, client closed): the subscription is gone server-side too.
      this.settleUnsubscribe.resolve()
    }
    this.init.host.forget(this.init.requestId)
  }
}

/** The server's "another connection took this subscription's resume key" frame. */
function isTakeover (message: Reply): boolean {
  return message.action === 'resume' && message.response_status === 409
}
