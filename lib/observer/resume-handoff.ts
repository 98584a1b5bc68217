/**
 * Resumable subscriptions on one consumer (a subscribe frame carrying `"resume"`, an
 * extension of the protocol described in resume.ts): making a new subscription resumable
 * under the client's key, claiming the key from the connection (of any instance) that
 * held it, replaying what the client missed, numbering and keeping events, and parking
 * the subscriptions of a socket that went away until a reconnect claims them or their
 * window ends.
 *
 * The consumer (consumer.ts) hands over the messages that ask to resume and the events of
 * resumable subscriptions; what it offers in return is {@link ResumeHost}.
 */
import { createHash } from 'node:crypto'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { ValidationError } from '../errors.js'
import { encodeEvent, type ActionRequest, type Reply } from '../protocol.js'
import { rowOf, type GroupMessage, type Rendered } from './changes.js'
import { parseResume, ResumeState, type Handoff, type Holder, type LoggedEvent, type ResumeRegistry, type ResumeRequest } from './resume.js'
import type { Subscription } from './subscription.js'

/** A message's `resume` request, and what became of it once its action subscribed. */
export interface PendingResume {
  /** The message's request_id, encoded: which of its subscriptions becomes resumable. */
  readonly requestIdJson: string
  readonly request: ResumeRequest
  /** The message's `filter` and `search`: part of what the subscription is, so events kept under one filter never replay under another. */
  readonly filterJson: string
  subscription?: Subscription
  /** Settles once the subscription is resumable: resumed (200), new (201), or refetch (410) with nothing to replay. */
  outcome?: Promise<{ status: 200 | 201 | 410, replay: LoggedEvent[] }>
  /** What is replayed after the reply, fixed when the `resume` reply is sent. */
  replay?: LoggedEvent[]
}

/** The `resume` reply's text when the missed events are gone. */
const REFETCH = 'The events missed since the last one received are no longer available; fetch the data again.'

/**
 * The `resume` frame (409) a live subscription gets when another connection took its key
 * (resumed it, or subscribed afresh with it): without it, the client would wait for events
 * that never come.
 */
const TAKEN = 'This subscription was taken over by another connection with its resume key; no more events will come here. Subscribe again to go on here.'

/** What the handoff needs of the consumer whose subscriptions it makes resumable. */
export interface ResumeHost {
  readonly request: FastifyRequest
  /**
   * Who may resume the connection's subscriptions (resume.ts `resumePrincipal`): the key
   * is filed under it. `undefined`: nobody — a `resume` key is ignored.
   */
  readonly principal: string | undefined
  readonly log: FastifyBaseLogger
  /** The route (and, on a multiplexed route, the stream) a key is filed under: a claim from elsewhere finds nothing. */
  readonly route: { readonly path: string }
  readonly stream?: string
  /** Send a reply frame (the `resume` replies); false once the socket is gone. */
  send: (reply: Reply) => boolean
  /** Send an encoded frame (an event). */
  sendText: (text: string) => boolean
  /** Remove a subscription from the consumer, as an unsubscribe does. */
  drop: (subscription: Subscription) => void
  /** Stop a subscription's deliveries (it leaves its groups) without removing it yet. */
  stopListening: (subscription: Subscription) => void
  /** Settles once the events the consumer has already received are sent. */
  eventsSent: () => Promise<void>
}

/** The resumable subscriptions of one consumer. */
export class ResumeHandoff {
  /** `resume` requests of the messages running now, by request_id: the subscription each makes becomes resumable. */
  private pending: Map<string, PendingResume> | undefined

  constructor (private readonly registry: ResumeRegistry, private readonly host: ResumeHost) {}

  /** A subscription was added: the one a running message asked to resume becomes resumable. */
  attach (subscription: Subscription): void {
    const resume = this.pending?.get(subscription.requestIdJson)
    if (resume !== undefined && resume.subscription === undefined) {
      resume.subscription = subscription
      resume.outcome = this.makeResumable(subscription, resume.request, resume.filterJson)
    }
  }

  /** A subscription was removed: its window stops, its key is given up. */
  release (subscription: Subscription): void {
    const resume = subscription.resume
    if (resume !== undefined) {
      clearTimeout(resume.parked)
      if (resume.holder !== undefined) this.registry.release(resume.slot, resume.holder)
    }
  }

  /** The socket is gone: the subscription keeps its events for a reconnect until its window ends. */
  park (subscription: Subscription): void {
    const resume = subscription.resume as ResumeState
    resume.parked = setTimeout(() => this.host.drop(subscription), this.registry.options.window).unref()
    if (resume.holder !== undefined) this.registry.park(resume.holder)
  }

  /**
   * What a claim of a subscription's key must match: the route, the stream on a
   * multiplexed one, and the subscription itself (its row or list, its request_id, its
   * filter and search) — events kept under one filter are never replayed under another.
   */
  private resumeIdentity (subscription: Subscription, filterJson: string): string {
    return `${this.host.route.path}#${this.host.stream ?? ''}#${subscription.key}#${filterJson}`
  }

  /**
   * A message's `resume` key: checked, and remembered until its action has subscribed.
   * On a connection without a principal it is checked all the same (a malformed key is a
   * 400 wherever resuming is on: bad input always gets a clear error), then ignored, as
   * with `resume: false`: the subscription is plain, with nothing to claim or park.
   */
  expect (request: ActionRequest): PendingResume | undefined {
    const parsed = parseResume(request.resume)
    if (typeof parsed === 'string') throw ValidationError.field('resume', parsed)
    if (this.host.principal === undefined) return undefined
    const filterJson = JSON.stringify([request.args.filter ?? null, request.args.search ?? null]) ?? ''
    const pending: PendingResume = { requestIdJson: JSON.stringify(request.requestId) ?? 'null', request: parsed, filterJson }
    ;(this.pending ??= new Map()).set(pending.requestIdJson, pending)
    return pending
  }

  /**
   * Make a subscription resumable under the client's key. Its live events wait until its
   * reply is out. Resuming, it claims the key, then keeps the claimed numbering when the
   * client's last seen event is still there, and starts afresh (410) when it is not.
   */
  private async makeResumable (subscription: Subscription, request: ResumeRequest, filterJson: string): Promise<{ status: 200 | 201 | 410, replay: LoggedEvent[] }> {
    const registry = this.registry
    // Set: expect() passes on no request from a connection without a principal.
    const client = this.host.principal as string
    // The key is filed under its maker's principal, route and stream: a claim from anyone
    // else (another principal, another route) finds nothing — 410, as for an unknown
    // key — and never takes the subscription over.
    // Hashed: a claim crosses the broadcast layer (Redis), which need not see who the user is.
    const slot = createHash('sha256').update(JSON.stringify([client, this.host.route.path, this.host.stream ?? '', request.key])).digest('base64url')
    const resume = new ResumeState(request.key, this.resumeIdentity(subscription, filterJson), registry.options, slot)
    subscription.resume = resume
    resume.held = []
    const ticket = registry.begin(slot)
    if (request.seq === undefined) {
      this.hold(subscription, ticket, client)
      return { status: 201, replay: [] }
    }
    let handoff: Handoff | undefined
    try {
      handoff = await registry.claim(slot, resume.identity)
    } catch (err) {
      this.host.log.error({ err }, 'fastify-ws-rest: claiming a subscription to resume failed')
    }
    let replay = resume.continueFrom(handoff, request.seq)
    if (replay !== undefined && !(await this.admits(subscription, replay))) {
      // The claimer would not have been sent these events as they were (its scope, its
      // permissions or its shape differ from the maker's now): it refetches instead.
      resume.restart()
      replay = undefined
    }
    if (subscription.active) this.hold(subscription, ticket, client)
    else registry.abandon(slot, ticket)
    return replay === undefined ? { status: 410, replay: [] } : { status: 200, replay }
  }

  /**
   * Whether the claiming subscription would have been sent each of `events` exactly as
   * its maker was: rendered again from its message with the claimer's scope, filter and
   * shape, and its permissions (object permissions on the event's row) checked again, as
   * for a live event. The claimer is the maker's principal on the same route, but its
   * scope or permissions may have changed meanwhile (a role taken away, a new token): a
   * replay never shows it what it could not see live. One that differs is a 410: the
   * client refetches under what it may see now.
   */
  private async admits (subscription: Subscription, events: LoggedEvent[]): Promise<boolean> {
    try {
      for (const event of events) {
        const message = event.message
        if (message === undefined) return false
        const again = subscription.render(message)
        if (again === undefined || again.action !== event.action || again.status !== event.status || again.dataJson !== event.dataJson) return false
        if (subscription.permit !== undefined && !(await subscription.permit(rowOf(message)))) return false
      }
      return true
    } catch (err) {
      this.host.log.error({ err }, 'fastify-ws-rest: checking the events to replay failed; the client is told to refetch')
      return false
    }
  }

  /** Register a resumable subscription as the holder of its key — unless a newer subscription has taken the key meanwhile. */
  private hold (subscription: Subscription, ticket: number, client: string): void {
    const resume = subscription.resume as ResumeState
    const holder: Holder = {
      identity: resume.identity,
      client,
      surrender: async () => await this.surrender(subscription),
      drop: () => this.host.drop(subscription),
      settled: async () => await this.host.eventsSent(),
      displace: () => {
        this.tellTaken(subscription)
        this.host.drop(subscription)
      }
    }
    const registry = this.registry
    if (!registry.hold(resume.slot, ticket, holder)) return
    resume.holder = holder
    // The socket went while the claim ran: parked already, so counted from now.
    if (resume.parked !== undefined) registry.park(holder)
  }

  /** A live subscription lost its key to another connection: say so, with its request_id. */
  private tellTaken (subscription: Subscription): void {
    if (subscription.resume?.parked !== undefined || !subscription.active) return
    this.host.send({ action: 'resume', status: 409, data: null, errors: [TAKEN], requestId: subscription.requestId })
  }

  /** Hand a subscription over to its claimer: stop listening, finish the events already received, give up the rest. */
  private async surrender (subscription: Subscription): Promise<Handoff> {
    const resume = subscription.resume as ResumeState
    this.host.stopListening(subscription)
    await this.host.eventsSent()
    // After the events already under way: the 409 is the last this socket hears of it.
    this.tellTaken(subscription)
    this.host.drop(subscription)
    return { seq: resume.seq, events: [...resume.log] }
  }

  /** The `resume` reply, sent before the subscribing action's own reply. */
  async announce (pending: PendingResume): Promise<void> {
    if (pending.outcome === undefined) return
    let { status, replay } = await pending.outcome
    const resume = pending.subscription!.resume as ResumeState
    const requestId = pending.subscription!.requestId
    if (resume.overflowed && status !== 410) {
      // More events came while the action ran than are kept: the client cannot be told all of them.
      status = 410
      replay = []
      resume.restart()
    }
    pending.replay = replay
    if (status === 410) {
      this.host.send({ action: 'resume', status, data: null, errors: [REFETCH], requestId })
      return
    }
    const seq = pending.request.seq ?? 0
    this.host.send({ action: 'resume', status, data: { key: resume.key, seq, replayed: resume.seq - seq }, errors: [], requestId })
  }

  /** After the subscribing action's reply: the missed events, then those that arrived meanwhile and were not among them. */
  finish (pending: PendingResume): void {
    if (this.pending?.get(pending.requestIdJson) === pending) this.pending.delete(pending.requestIdJson)
    const subscription = pending.subscription
    const replay = pending.replay
    if (subscription === undefined || replay === undefined) return
    const resume = subscription.resume as ResumeState
    for (const event of replay) this.sendEvent(subscription, event)
    const held = resume.held ?? []
    const claimed = resume.claimed
    resume.held = undefined
    resume.claimed = undefined
    for (const { id, message, ...rendered } of held) {
      // Seen by the previous holder too (published before the claim, received here after the subscribe): sent once.
      if (id === '' || claimed === undefined || !claimed.has(id)) this.emit(subscription, id, rendered, message)
    }
  }

  /**
   * A resumable subscription's event, in its turn: numbered and kept, and sent unless the
   * socket has gone (parked) — or held back while its subscribing action still runs.
   */
  emit (subscription: Subscription, id: string, rendered: Rendered, message?: GroupMessage): void {
    const resume = subscription.resume as ResumeState
    if (resume.held !== undefined) {
      resume.hold(id, rendered, message)
      return
    }
    const event = resume.record(id, rendered, message)
    if (resume.parked === undefined) this.sendEvent(subscription, event)
  }

  private sendEvent (subscription: Subscription, event: LoggedEvent): void {
    this.host.sendText(encodeEvent(event.action, event.status, event.dataJson, subscription.requestIdJson, event.seq))
  }
}
