/**
 * Resumable subscriptions: no event lost across a reconnect.
 *
 * A subscribe frame may carry `"resume": {"key": K}` (K: the client's secret for this
 * subscription). Its events then carry `"seq": n`, numbered 1, 2, 3… per subscription, and
 * the subscription keeps its last `maxEvents` events of the last `window` ms. When the socket goes, the
 * subscription is *parked*: it goes on listening for `window` ms, numbering and keeping
 * what it would have sent. A client that reconnects re-sends the subscribe frame with
 * `"resume": {"key": K, "seq": <last seen>}`; the new subscription *claims* K from whoever
 * holds it — a parked subscription, or a live one on a half-open socket, in this process
 * or on another instance through the broadcast layer — and sends exactly the events after
 * `seq`, then its own live ones, with no duplicates. Before the subscribe reply it says
 * which happened: `"resume"` 200 (resumed), 201 (a new resumable subscription) or 410
 * (missed events are gone: refetch).
 *
 * Exactly once across instances: the claimer listens to the groups *before* it claims.
 * A layer delivers in publish order, so the holder has seen every event published before
 * the claim; every event after the subscribe reaches the claimer; events seen by both are
 * recognised by their id and sent once.
 *
 * This module holds what is shared by the process: the options, each subscription's
 * numbering and kept events (ResumeState), and the registry of holders and claims. What
 * one consumer does with them (claim, replay, park) is resume-handoff.ts.
 */
import type { FastifyRequest } from 'fastify'
import type { BroadcastLayer, BroadcastMessage } from '../layers/layer.js'
import type { GroupMessage, Rendered } from './changes.js'
import { randomId, type Hub, type Listening } from './hub.js'
import { InvalidOption } from '../errors.js'
import { positiveInteger } from '../option-checks.js'

/** Options of resumable subscriptions (`resume` plugin option). */
export interface ResumeOptions {
  /** How long a subscription whose socket went away keeps its events for a reconnect, in ms. Default 60 s. */
  window?: number
  /** Most events a subscription keeps for a reconnect; a client further behind is told to refetch. Default 500. */
  maxEvents?: number
  /** How long a claim waits for another instance to hand a subscription over, in ms. Default 1 s. */
  claimTimeout?: number
  /**
   * Parked subscriptions one client (its principal, see `principal`) may have in this
   * process; past it the oldest parked are dropped (a resume of one of them gets 410). Default 100.
   */
  maxParkedPerClient?: number
  /** Parked subscriptions of all clients in this process; past it the oldest parked are dropped. Default 10,000. */
  maxParked?: number
  /**
   * Who a socket's client is: only the same principal may resume its subscriptions, and
   * parked subscriptions are counted against `maxParkedPerClient` per principal. Return
   * `undefined` to fall back to the default: `request.user`'s `id` or `sub` (else the whole
   * user as JSON) when the app sets `request.user`. A connection with neither has no
   * principal, and its subscriptions are not resumable (a `resume` key is ignored): an
   * address is not an identity — everyone behind a NAT or a proxy shares one.
   */
  principal?: (request: FastifyRequest) => string | undefined
}

export interface ResolvedResume extends Required<Omit<ResumeOptions, 'principal'>> {
  principal: ((request: FastifyRequest) => string | undefined) | undefined
}

/** `false` turns resuming off (a `resume` key in a frame is then ignored, and no event carries `seq`). */
export function resolveResume (value: unknown): ResolvedResume | false {
  if (value === false) return false
  if (value !== undefined && (value === null || typeof value !== 'object')) throw new InvalidOption('resume', 'must be an object or false')
  const opts = (value ?? {}) as ResumeOptions
  return {
    window: positiveInteger('resume.window', opts.window, 60_000),
    maxEvents: positiveInteger('resume.maxEvents', opts.maxEvents, 500),
    claimTimeout: positiveInteger('resume.claimTimeout', opts.claimTimeout, 1000),
    maxParkedPerClient: positiveInteger('resume.maxParkedPerClient', opts.maxParkedPerClient, 100),
    maxParked: positiveInteger('resume.maxParked', opts.maxParked, 10_000),
    principal: checkPrincipal(opts.principal)
  }
}

function checkPrincipal (value: unknown): ResolvedResume['principal'] {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new InvalidOption('resume.principal', 'must be a function (request) => string | undefined')
  return value as ResolvedResume['principal']
}

/**
 * Who may resume a connection's subscriptions: the app's `principal`, else the
 * authenticated user (by a stable id when it has one) — or `undefined`, and then nobody:
 * the connection's subscriptions are not resumable. A key alone is a bearer token; filed
 * under its maker's principal, a leaked or guessed key is worth nothing to anyone else.
 * The client IP is no principal: every connection behind the same NAT or proxy (or on
 * 127.0.0.1) shares it, so a key filed under it could be claimed by any of them.
 */
export function resumePrincipal (request: FastifyRequest, options: Pick<ResolvedResume, 'principal'>): string | undefined {
  const named = options.principal?.(request)
  if (typeof named === 'string') return `app:${named}`
  const user = (request as { user?: unknown }).user
  if (user === undefined || user === null) return undefined
  if (typeof user === 'string' || typeof user === 'number' || typeof user === 'bigint') return `user:${String(user)}`
  if (typeof user !== 'object') return undefined
  const { id, sub } = user as { id?: unknown, sub?: unknown }
  const stable = id ?? sub
  if (typeof stable === 'string' || typeof stable === 'number' || typeof stable === 'bigint') return `user:${String(stable)}`
  try {
    return `user:${JSON.stringify(user)}`
  } catch {
    // A user object JSON cannot encode names nobody: not resumable, rather than fail the subscribe.
    return undefined
  }
}

/** What a subscribe frame's `resume` asks for. */
export interface ResumeRequest {
  key: string
  /** The last seq the client saw; absent on a first subscribe. */
  seq: number | undefined
}

/**
 * At least 128 bits when random: 22 base64url characters, or 32 when the key is all hex
 * digits (4 bits each). A shorter key could be guessed; the client sends 32 hex digits.
 */
const KEY = /^[A-Za-z0-9_-]{22,128}$/
const HEX = /^[0-9A-Fa-f]+$/

/** The frame's `resume` value checked, or a message saying what it must be. */
export function parseResume (value: unknown): ResumeRequest | string {
  const problem = 'Expected {"key": <22 to 128 letters, digits, "-" or "_" (at least 32 when only hex digits): 128 random bits or more>, "seq": <an integer of 0 or more, when resuming>}.'
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return problem
  const { key, seq } = value as Record<string, unknown>
  if (typeof key !== 'string' || !KEY.test(key) || (key.length < 32 && HEX.test(key))) return problem
  if (seq !== undefined && (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0)) return problem
  return { key, seq }
}

/** One event of a resumable subscription, numbered, as kept for a reconnect. */
export interface LoggedEvent extends Rendered {
  /** The published message's id: the same event reaching two subscriptions is recognised. */
  id: string
  seq: number
  /** When it was numbered (ms since the epoch): kept no longer than the window. */
  at: number
  /**
   * The message it was rendered from (the object every subscriber of the change shares):
   * a claimer renders and checks it again with its own scope, filter and permissions
   * before it is replayed (resume-handoff.ts).
   */
  message?: GroupMessage
}

/** What a holder hands to the subscription that claims its key. */
export interface Handoff {
  /** The last seq it numbered. */
  seq: number
  /** The events it still has, oldest first. */
  events: LoggedEvent[]
}

/** A resumable subscription's numbering and memory of recent events. */
export class ResumeState {
  seq = 0
  readonly log: LoggedEvent[] = []
  /**
   * Until the subscribing action's reply is out (and its claim answered): events that
   * arrived meanwhile, not yet numbered — none may come before the reply.
   */
  held: Array<Rendered & { id: string, message?: GroupMessage }> | undefined
  /** More than `maxEvents` arrived while held: the oldest were dropped, so the client must refetch. */
  overflowed = false
  /** Ids of the events handed over by the previous holder, until the held ones are sent: each is sent once. */
  claimed: Set<string> | undefined
  /** Set once the socket has gone: the subscription keeps its events until claimed or expired. */
  parked: NodeJS.Timeout | undefined
  /** An event was lost (too many waiting on permission checks): not to be resumed. */
  broken = false
  /** How the registry reaches this subscription while it holds the key. */
  holder: Holder | undefined

  constructor (
    readonly key: string,
    /** What a claim must match: the route (and stream), and the subscription on it (its lookup or list, its request_id). */
    readonly identity: string,
    private readonly limits: Pick<ResolvedResume, 'maxEvents' | 'window'>,
    /**
     * Where the registry files it: the key within its maker's principal, route and stream,
     * so a claim by anyone else never finds it (and never displaces it).
     */
    readonly slot: string = key
  ) {}

  /** Hold an event back until the reply is out; past `maxEvents` the oldest goes, and the client will be told to refetch. */
  hold (id: string, rendered: Rendered, message?: GroupMessage): void {
    const held = this.held as Array<Rendered & { id: string, message?: GroupMessage }>
    held.push({ id, ...rendered, message })
    if (held.length > this.limits.maxEvents) {
      held.shift()
      this.overflowed = true
    }
  }

  /** Number an event and keep it. */
  record (id: string, rendered: Rendered, message?: GroupMessage): LoggedEvent {
    const event: LoggedEvent = { id, seq: ++this.seq, action: rendered.action, status: rendered.status, dataJson: rendered.dataJson, at: Date.now(), message }
    this.log.push(event)
    this.prune(event.at)
    return event
  }

  /**
   * Forget the oldest events past `maxEvents`, and those older than the window (a client
   * that last saw one of those could not resume anyway). Run as events arrive and at a
   * handoff; a subscription that goes quiet keeps what it has, at most `maxEvents`.
   */
  prune (now = Date.now()): void {
    const oldest = now - this.limits.window
    while (this.log.length > 0 && (this.log.length > this.limits.maxEvents || this.log[0].at < oldest)) this.log.shift()
  }

  /**
   * Take over from `handoff` for a client that saw up to `seen`: the events to send again,
   * or `undefined` when some it missed are gone (too old, or nobody held the key).
   */
  continueFrom (handoff: Handoff | undefined, seen: number): LoggedEvent[] | undefined {
    if (handoff === undefined || seen > handoff.seq) return undefined
    const missed = handoff.events.filter((e) => e.seq > seen)
    const first = missed[0]?.seq ?? handoff.seq + 1
    if (first !== seen + 1) return undefined
    this.seq = handoff.seq
    this.log.push(...handoff.events)
    this.claimed = new Set(handoff.events.map((e) => e.id))
    this.prune()
    return missed
  }

  /** Numbering starts again (410): nothing kept, nothing claimed. */
  restart (): void {
    this.seq = 0
    this.log.length = 0
    this.claimed = undefined
  }
}

/** A subscription that can hand its key over. */
export interface Holder {
  readonly identity: string
  /** Its maker's principal: whose parking budget it counts against. */
  readonly client: string
  /** Stop listening and hand over what it has (after the events it is still delivering). */
  surrender: () => Promise<Handoff>
  /** Stop listening and forget everything (the app is closing, or it was parked past a budget). */
  drop: () => void
  /** Settles once the events it had already received are through (their permission checks may query the database). */
  settled: () => Promise<void>
  /** Stop listening: a newer subscribe took the key. A client still connected is told so. */
  displace: () => void
}

/**
 * Per layer (apps sharing one in-process layer resume each other's subscriptions): the
 * holders by key, and for a key being taken over, the ticket of its latest taker — only
 * that one may hold it once its claim is answered, so a slow claim overtaken by a newer
 * one never displaces it.
 */
interface Keys { holders: Map<string, Holder>, takers: Map<string, number>, tickets: number }
const keysByLayer = new WeakMap<BroadcastLayer, Keys>()

/** The control group claims travel on; a claim reaches every instance sharing the layer. */
const CLAIMS = 'wsrest:resume:claims'

interface ClaimMessage extends BroadcastMessage { kind: 'resume-claim', key: string, identity: string, nonce: string, reply: string }
interface HandoffMessage extends BroadcastMessage { kind: 'resume-handoff', nonce: string, handoff: Handoff }

/** One app's side of resuming: its holders, and claims to and from other instances. */
export class ResumeRegistry implements Listening {
  readonly groups: readonly string[]
  /** Every app's holders on this layer, by key, and their latest takers. */
  private readonly keys: Keys
  /** This app's own, dropped when it closes. */
  private readonly own = new Set<Holder>()
  /** This app's parked holders, oldest first, with their client: what the parking budgets count. */
  private readonly parked = new Map<Holder, string>()
  private readonly parkedBy = new Map<string, Set<Holder>>()
  private readonly id = randomId()
  private claims = 0
  private readonly pending = new Map<string, (handoff: Handoff | undefined) => void>()

  constructor (private readonly hub: Hub, readonly options: ResolvedResume) {
    let keys = keysByLayer.get(hub.layer)
    if (keys === undefined) keysByLayer.set(hub.layer, (keys = { holders: new Map(), takers: new Map(), tickets: 0 }))
    this.keys = keys
    this.groups = [CLAIMS, `wsrest:resume:reply:${this.id}`]
    // Listening from the start: the reply group is subscribed long before a handoff is sent to it.
    if (hub.layer.remote === true) hub.add(this)
  }

  /** A subscription starts taking `key` (fresh, or by a claim): its ticket, which {@link hold} checks. */
  begin (key: string): number {
    const ticket = ++this.keys.tickets
    this.keys.takers.set(key, ticket)
    return ticket
  }

  /**
   * Become the holder of `key`, if `ticket` is still its latest taker; a subscription that
   * held it before (in this process) is dropped — a subscribe that was sent again, the
   * first one never confirmed. False when a newer taker came meanwhile.
   */
  hold (key: string, ticket: number, holder: Holder): boolean {
    if (this.keys.takers.get(key) !== ticket) return false
    this.keys.takers.delete(key)
    const previous = this.keys.holders.get(key)
    if (previous !== undefined && previous !== holder) previous.displace()
    this.keys.holders.set(key, holder)
    this.own.add(holder)
    return true
  }

  /** A taker gave up before holding (its socket went): the key is free for the next. */
  abandon (key: string, ticket: number): void {
    if (this.keys.takers.get(key) === ticket) this.keys.takers.delete(key)
  }

  release (key: string, holder: Holder): void {
    if (this.keys.holders.get(key) === holder) this.keys.holders.delete(key)
    this.own.delete(holder)
    this.unpark(holder)
  }

  /**
   * A holder's socket went: it is parked, counted against its client's budget and the
   * global one. Past either, the oldest parked go (their memory freed; a resume of them
   * gets 410), so reconnecting in a loop cannot pile up subscriptions that each listen
   * and keep events for the whole window.
   */
  park (holder: Holder): void {
    const client = holder.client
    if (this.parked.has(holder)) return
    this.parked.set(holder, client)
    let mine = this.parkedBy.get(client)
    if (mine === undefined) this.parkedBy.set(client, (mine = new Set()))
    mine.add(holder)
    while (mine.size > this.options.maxParkedPerClient) this.evict(mine.values().next().value as Holder)
    while (this.parked.size > this.options.maxParked) this.evict(this.parked.keys().next().value as Holder)
  }

  /** How many subscriptions are parked (in this app), for tests and metrics. */
  get parkedCount (): number { return this.parked.size }

  private evict (holder: Holder): void {
    this.unpark(holder)
    holder.drop()
  }

  private unpark (holder: Holder): void {
    const client = this.parked.get(holder)
    if (client === undefined) return
    this.parked.delete(holder)
    const mine = this.parkedBy.get(client)
    mine?.delete(holder)
    if (mine?.size === 0) this.parkedBy.delete(client)
  }

  /**
   * Take key's subscription over from whoever holds it for the same `identity`: in this
   * process at once, on another instance through the layer (answered within
   * `claimTimeout`). Undefined when nobody does. The claimer already listens to its
   * groups; through a remote layer, the claim goes out only once that is in effect there.
   */
  async claim (key: string, identity: string): Promise<Handoff | undefined> {
    const local = this.keys.holders.get(key)
    if (local !== undefined) {
      if (local.identity !== identity) return undefined
      this.keys.holders.delete(key)
      return await local.surrender()
    }
    const layer = this.hub.layer
    if (layer.remote !== true) return undefined
    const deadline = Date.now() + this.options.claimTimeout
    if (layer.settled !== undefined && !(await within(layer.settled(), this.options.claimTimeout))) return undefined
    const nonce = `${this.id}:${++this.claims}`
    return await new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), Math.max(0, deadline - Date.now()))
      const finish = (handoff: Handoff | undefined): void => {
        clearTimeout(timer)
        this.pending.delete(nonce)
        resolve(handoff)
      }
      this.pending.set(nonce, finish)
      const claim: ClaimMessage = { kind: 'resume-claim', key, identity, nonce, reply: this.groups[1] }
      this.hub.publish(CLAIMS, claim as never)
    })
  }

  /** A claim from another instance, or the answer to one of ours. */
  deliver (message: GroupMessage | BroadcastMessage): void {
    if (message.kind === 'resume-handoff') {
      const { nonce, handoff } = message as HandoffMessage
      this.pending.get(nonce)?.(handoff)
      return
    }
    if (message.kind !== 'resume-claim') return
    const { key, identity, nonce, reply } = message as ClaimMessage
    const holder = this.keys.holders.get(key)
    if (holder === undefined || holder.identity !== identity) return
    this.keys.holders.delete(key)
    void holder.surrender().then((handoff) => {
      const answer: HandoffMessage = { kind: 'resume-handoff', nonce, handoff }
      this.hub.publish(reply, answer as never)
    })
  }

  /**
   * The app is closing: pending claims answer "nobody", and this app's subscriptions kept for
   * a reconnect go. Settles once the events they were still checking are through (at most
   * `timeout` ms): a parked subscription's permission check may query the database, which
   * the app closes next.
   */
  async close (timeout: number): Promise<void> {
    for (const finish of [...this.pending.values()]) finish(undefined)
    const holders = [...this.own]
    for (const holder of holders) holder.drop()
    this.own.clear()
    this.parked.clear()
    this.parkedBy.clear()
    this.hub.remove(this)
    await within(Promise.all(holders.map(async (holder) => await holder.settled())), timeout)
  }
}

/** Whether `promise` settles within `ms` (a Redis that is away never acknowledges). */
async function within (promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  try {
    return await Promise.race([promise.then(() => true, () => false), late])
  } finally {
    clearTimeout(timer)
  }
}
