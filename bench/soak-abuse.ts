/**
 * The abusive clients of `npm run soak -- --abuse`: sockets that attack the server's
 * limits while the soak's normal clients run beside them, against the same process.
 *
 * - needles: `list` and `subscribe_list` with a 500,000-character `search` or `$contains`.
 *   Each must get a 400 keyed `search` or `filter`; never a 500, never a close.
 * - hoarders: `subscribe_list` with ~10,000-character filters (an `$in` of strings that
 *   match no row) on one socket until past `maxFilterChars`: 201s, then 429s "Too much
 *   filtering". Then one `unsubscribe_list`, after which one more subscribe must fit again
 *   (the share is given back), and the socket closes; repeated.
 * - churners: open a socket on `/ws/jwt/`, several `subscribe_list` with fresh random
 *   32-hex resume keys and no filter (so each parked one keeps events), close; repeated as
 *   fast as the server answers, from `churnIps` loopback addresses, each with the token of
 *   a user of its own (resuming needs a principal: an address is none), so the per-client
 *   parked budget is what bounds them. The server's RSS shows whether the budgets hold; at
 *   the end, per user, its oldest parked subscription must be gone (resume 410) and its
 *   newest still there (resume 200).
 * - thieves: claim the resume keys of the normal resumable subscribers (on `/ws/jwt/`,
 *   their key and request_id) from another route without a principal (`/ws/multiplex/`
 *   stream `users`: the key is ignored, no `resume` frame, a plain subscription), and from
 *   the same route and address as another principal (the thief user's token: `resume` 410
 *   for a claim with `seq`, an unknown key; 201 for a first subscribe without, a fresh
 *   subscription of the thief's own). Never 200 (resumed); the victim must get no 409 and
 *   keep every event (the normal accounting checks it).
 *
 * Every reply is counted by scenario, action and status. A 500, a timeout, a close the
 * client did not ask for, or a reply other than the expected one is an error of the run.
 */
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'

export interface Victim { requestId: string, key: string }

export const SCENARIOS = ['needles', 'hoard', 'churn', 'theft'] as const
export type Scenario = typeof SCENARIOS[number]

export interface AbuseOptions {
  /** `ws://127.0.0.1:PORT` of the example server. */
  url: string
  /** The normal clients' resumable subscriptions, whose keys the thieves try to claim. */
  victims: Victim[]
  /** Loopback addresses the churners connect from (each with a user, a principal, of its own). */
  churnIps: number
  /** Tokens (`POST /token`) of the users the thieves and the churners (one per address) are on `/ws/jwt/`. */
  tokens: { thief: string, churn: string[] }
  /** Which scenarios run (all by default), to tell which one costs the normal clients what. */
  scenarios: ReadonlySet<Scenario>
  timeoutMs: number
  fail: (kind: string, text: string) => void
}

export interface AbuseReport {
  /** Replies by "scenario action status". */
  statuses: Record<string, number>
  /** Reply times (ms) by "scenario action", for the abusers' own requests. */
  latencyMs: Record<string, number[]>
  requests: number
  status500: number
  unexpectedCloses: number
  /** Frames that were no reply to a request of theirs (events of their own subscriptions). */
  events: number
  socketsOpened: number
  /** Resumable subscriptions the churners left parked (before the server's budgets evict). */
  parkedMade: number
  theftAttempts: number
  /** Attempts answered as a stranger's: anonymous, no `resume` frame; another user, a claim 410 and a first subscribe a fresh 201 (never 200, never a 409 to the victim). */
  theftRefused: number
  /** How many 201s a hoarding socket got before its first 429, per round (min–max). */
  hoardAccepted: { min: number, max: number }
  hoardFilterChars: number
  /** Resumes of the churners' oldest and newest parked subscriptions, after the churn. */
  budgetChecks: string[]
}

interface Reply { errors: unknown, data: unknown, action: unknown, response_status: unknown, request_id: unknown, seq?: unknown }

/** The cap the example runs with (the plugin's default `maxFilterChars`). */
const MAX_FILTER_CHARS = 65_536
const NEEDLE = 'x'.repeat(500_000)
/** Subscriptions each churning socket makes before it closes. */
const CHURN_SUBS = 5
/** The example's `resume.maxParkedPerClient` (the plugin's default). */
const PARKED_PER_CLIENT = 100
/** Subscribes a hoarder sends past its first 429, to show the cap holds for all of them. */
const HOARD_PAST_CAP = 3

const hex = (bytes: number): string => randomBytes(bytes).toString('hex')

/** An `$in` filter of ~10,000 characters (as JSON) that matches no row: 80 usernames of 120 characters. */
function hoardFilter (): Record<string, unknown> {
  return { username: { $in: Array.from({ length: 80 }, () => `hoard-${hex(57)}`) } }
}

export function startAbuse (options: AbuseOptions): { stop: () => Promise<AbuseReport> } {
  const { fail } = options
  let running = true
  const report: AbuseReport = {
    statuses: {},
    latencyMs: {},
    requests: 0,
    status500: 0,
    unexpectedCloses: 0,
    events: 0,
    socketsOpened: 0,
    parkedMade: 0,
    theftAttempts: 0,
    theftRefused: 0,
    hoardAccepted: { min: Infinity, max: 0 },
    hoardFilterChars: JSON.stringify(hoardFilter()).length,
    budgetChecks: []
  }
  let nextId = 1

  interface Waiter { action: string, resume?: Reply, resolve: (r: { reply: Reply, resume?: Reply } | undefined) => void, timer: NodeJS.Timeout }

  /** One abusive socket: requests one at a time, replies matched by request_id and action. */
  class Abuser {
    ws: WebSocket
    closing = false
    closed = false
    waiters = new Map<string, Waiter>()
    constructor (readonly scenario: string, path: string, readonly stream?: string, localAddress?: string, token?: string) {
      report.socketsOpened++
      const headers = token === undefined ? undefined : { authorization: `Bearer ${token}` }
      this.ws = new WebSocket(`${options.url}${path}`, { perMessageDeflate: false, localAddress, headers })
      this.ws.on('message', (data) => { this.onMessage((data as Buffer).toString()) })
      this.ws.on('error', (err) => { if (!this.closing) fail('abuse-close', `${scenario}: ${err.message}`) })
      this.ws.on('close', (code, reason) => {
        this.closed = true
        if (!this.closing) {
          report.unexpectedCloses++
          fail('abuse-close', `${scenario}: closed by the server: ${code} ${reason.toString()}`)
        }
        for (const waiter of this.waiters.values()) { clearTimeout(waiter.timer); waiter.resolve(undefined) }
        this.waiters.clear()
      })
    }

    async opened (): Promise<boolean> {
      if (this.ws.readyState === WebSocket.OPEN) return true
      return await new Promise<boolean>((resolve) => {
        this.ws.once('open', () => resolve(true))
        this.ws.once('close', () => resolve(false))
      })
    }

    onMessage (text: string): void {
      let reply: Reply
      try {
        const parsed = JSON.parse(text) as Record<string, unknown>
        reply = (this.stream !== undefined ? parsed.payload : parsed) as Reply
      } catch {
        fail('abuse-reply', `${this.scenario}: a frame that is not JSON: ${text.slice(0, 200)}`)
        return
      }
      const waiter = this.waiters.get(String(reply.request_id))
      if (waiter !== undefined && reply.action === waiter.action) {
        this.waiters.delete(String(reply.request_id))
        clearTimeout(waiter.timer)
        waiter.resolve({ reply, resume: waiter.resume })
        return
      }
      // The `resume` frame comes before the subscribe reply it belongs to.
      if (waiter !== undefined && reply.action === 'resume') { waiter.resume = reply; return }
      if (reply.action === 'resume' && reply.response_status === 409) {
        // Only the thieves' claims could take one of ours, and they claim the victims' keys only.
        fail('abuse-reply', `${this.scenario}: an abuser's own subscription was taken over: ${text.slice(0, 200)}`)
      }
      report.events++
    }

    /** Send `message` and wait for the reply of its action (and the `resume` frame before it, if any). */
    async request (message: Record<string, unknown>): Promise<{ reply: Reply, resume?: Reply } | undefined> {
      if (this.closed || this.ws.readyState !== WebSocket.OPEN) return undefined
      const requestId = String(message.request_id)
      const action = String(message.action)
      const frame = JSON.stringify(this.stream !== undefined ? { stream: this.stream, payload: message } : message)
      const sentAt = performance.now()
      const result = await new Promise<{ reply: Reply, resume?: Reply } | undefined>((resolve) => {
        const timer = setTimeout(() => {
          this.waiters.delete(requestId)
          fail('abuse-timeout', `${this.scenario}: no reply within ${options.timeoutMs / 1000} s to ${frame.slice(0, 200)}`)
          resolve(undefined)
        }, options.timeoutMs)
        this.waiters.set(requestId, { action, resolve, timer })
        this.ws.send(frame)
      })
      if (result !== undefined) {
        report.requests++
        const status = Number(result.reply.response_status)
        const key = `${this.scenario} ${action} ${status}`
        report.statuses[key] = (report.statuses[key] ?? 0) + 1
        const timed = `${this.scenario} ${action}`
        const times = report.latencyMs[timed] ??= []
        times.push(performance.now() - sentAt)
        if (status >= 500) {
          report.status500++
          fail('abuse-500', `${this.scenario}: ${frame.slice(0, 200)} → ${JSON.stringify(result.reply).slice(0, 400)}`)
        }
      }
      return result
    }

    async close (): Promise<void> {
      this.closing = true
      if (this.ws.readyState === WebSocket.CLOSED) return
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { this.ws.terminate(); resolve() }, 5_000)
        this.ws.once('close', () => { clearTimeout(timer); resolve() })
        if (this.ws.readyState === WebSocket.CONNECTING) this.ws.once('open', () => this.ws.close(1000))
        else this.ws.close(1000)
      })
    }
  }

  /** A reply with `status` whose first error is keyed `key` (or, for a string `key`, is that text); else an error of the run. */
  function expect (scenario: string, reply: Reply | undefined, status: number, key: string, what: string): boolean {
    if (reply === undefined) return false
    const first = Array.isArray(reply.errors) ? reply.errors[0] : undefined
    const matches = reply.response_status === status && (
      (typeof first === 'object' && first !== null && key in first) || (typeof first === 'string' && first.startsWith(key))
    )
    if (!matches) fail('abuse-reply', `${scenario}, ${what}: expected ${status} (${key}), got ${JSON.stringify(reply).slice(0, 400)}`)
    return matches
  }

  async function needles (): Promise<void> {
    const socket = new Abuser('needles', '/ws/')
    if (!await socket.opened()) return
    const frames: Array<{ message: () => Record<string, unknown>, key: string }> = [
      { message: () => ({ action: 'list', search: NEEDLE }), key: 'search' },
      { message: () => ({ action: 'subscribe_list', search: NEEDLE }), key: 'search' },
      { message: () => ({ action: 'list', filter: { username: { $contains: NEEDLE } } }), key: 'filter' },
      { message: () => ({ action: 'subscribe_list', filter: { email: { $contains: NEEDLE } } }), key: 'filter' }
    ]
    for (let k = 0; running && !socket.closed; k++) {
      const { message, key } = frames[k % frames.length]!
      const m: Record<string, unknown> = { ...message(), request_id: `n${nextId++}` }
      const result = await socket.request(m)
      expect('needles', result?.reply, 400, key, `${String(m.action)} with a 500,000-character ${key}`)
    }
    await socket.close()
  }

  async function hoard (worker: number): Promise<void> {
    while (running) {
      const socket = new Abuser('hoard', '/ws/', undefined, `127.0.3.${worker + 1}`)
      if (!await socket.opened()) return
      const accepted: string[] = []
      let refused = 0
      let chars = 0
      while (running && !socket.closed && refused <= HOARD_PAST_CAP) {
        const filter = hoardFilter()
        const requestId = `h${nextId++}`
        const result = await socket.request({ action: 'subscribe_list', request_id: requestId, filter })
        if (result === undefined) break
        const size = JSON.stringify(filter).length
        if (result.reply.response_status === 201) {
          if (refused > 0) fail('abuse-reply', `hoard: a subscribe accepted after a 429 on the same socket (${chars} characters held)`)
          accepted.push(requestId)
          chars += size
        } else {
          expect('hoard', result.reply, 429, 'Too much filtering', `subscribe ${accepted.length + refused + 1} (${chars} + ${size} characters)`)
          refused++
          // A refusal well under the cap would be a budget that counts too much.
          if (refused === 1 && chars + size <= MAX_FILTER_CHARS) fail('abuse-reply', `hoard: 429 with only ${chars} + ${size} characters held`)
        }
      }
      if (refused > 0) {
        report.hoardAccepted.min = Math.min(report.hoardAccepted.min, accepted.length)
        report.hoardAccepted.max = Math.max(report.hoardAccepted.max, accepted.length)
      }
      // An unsubscribe gives its share back: the next subscribe fits again.
      if (running && !socket.closed && accepted.length > 0 && refused > 0) {
        const gone = accepted.pop()!
        const off = await socket.request({ action: 'unsubscribe_list', request_id: gone })
        if (off !== undefined && off.reply.response_status !== 204) fail('abuse-reply', `hoard: unsubscribe_list → ${JSON.stringify(off.reply).slice(0, 300)}`)
        const again = await socket.request({ action: 'subscribe_list', request_id: `h${nextId++}`, filter: hoardFilter() })
        if (again !== undefined && again.reply.response_status !== 201) fail('abuse-reply', `hoard: a subscribe after an unsubscribe → ${JSON.stringify(again.reply).slice(0, 300)}`)
      }
      await socket.close()
    }
  }

  /** The churners' parked subscriptions by address (one user each), oldest first. */
  const parkedBy = new Map<number, Victim[]>()
  const churnIp = (k: number): string => `127.0.2.${k + 1}`

  /**
   * After the churn: the per-client budget holds when, for a user that parked more than
   * `PARKED_PER_CLIENT`, its oldest parked subscription is gone (resume 410) while its newest
   * is still there (resume 200).
   */
  async function checkBudgets (): Promise<void> {
    for (const [k, made] of parkedBy) {
      if (made.length <= PARKED_PER_CLIENT) continue
      const ip = churnIp(k)
      const socket = new Abuser('budget', '/ws/jwt/', undefined, ip, options.tokens.churn[k])
      if (!await socket.opened()) continue
      for (const [which, victim, expected] of [['oldest', made[0]!, 410], ['newest', made[made.length - 1]!, 200]] as const) {
        const result = await socket.request({ action: 'subscribe_list', request_id: victim.requestId, resume: { key: victim.key, seq: 0 } })
        const status = result?.resume?.response_status
        report.budgetChecks.push(`${ip} ${which} of ${made.length}: ${String(status)}`)
        if (result !== undefined && status !== expected) fail('abuse-budget', `${ip}: resuming its ${which} of ${made.length} parked subscriptions → ${JSON.stringify(result.resume ?? null).slice(0, 200)}, expected ${expected}`)
      }
      await socket.close()
    }
  }

  async function churn (worker: number, workers: number): Promise<void> {
    for (let round = 0; running; round++) {
      // Spread over the addresses, 127.0.2.1 … 127.0.2.<churnIps>, each with its user's token.
      const k = (round * workers + worker) % options.churnIps
      const socket = new Abuser('churn', '/ws/jwt/', undefined, churnIp(k), options.tokens.churn[k])
      if (!await socket.opened()) return
      for (let k = 0; k < CHURN_SUBS && running && !socket.closed; k++) {
        const key = hex(16)
        const result = await socket.request({ action: 'subscribe_list', request_id: `p${nextId++}`, resume: { key } })
        if (result === undefined) break
        if (result.reply.response_status !== 201 || result.resume?.response_status !== 201) {
          fail('abuse-reply', `churn: subscribe_list with resume → ${JSON.stringify(result.resume ?? null).slice(0, 200)} then ${JSON.stringify(result.reply).slice(0, 300)}`)
        } else {
          report.parkedMade++
          const made = parkedBy.get(k) ?? []
          parkedBy.set(k, made)
          made.push({ requestId: String(result.reply.request_id), key })
        }
      }
      await socket.close()
    }
  }

  async function thieve (): Promise<void> {
    for (let round = 0; running && options.victims.length > 0; round++) {
      const victim = options.victims[round % options.victims.length]!
      // Alternately a claim (with a seq) and a first subscribe naming the key: both must find nothing.
      const resume = round % 2 === 0 ? { key: victim.key, seq: 1 } : { key: victim.key }
      const attempts: Array<[string, Abuser]> = [
        ['anonymous', new Abuser('theft-anonymous', '/ws/multiplex/', 'users')],
        // The victims' route and address (127.0.0.1), another user: only the principal differs.
        ['cross-principal', new Abuser('theft-principal', '/ws/jwt/', undefined, undefined, options.tokens.thief)]
      ]
      for (const [how, socket] of attempts) {
        if (!await socket.opened()) continue
        report.theftAttempts++
        const result = await socket.request({ action: 'subscribe_list', request_id: victim.requestId, resume })
        if (result === undefined) { await socket.close(); continue }
        const status = result.resume?.response_status
        // Without a principal the key is ignored: no `resume` frame, a plain subscription. With
        // another principal, a claim (with a seq) finds nothing: 410; a first subscribe (no seq)
        // starts a fresh subscription under the thief's own identity: 201. Either way nothing
        // is resumed (200), and the victim gets no 409 (the normal accounting).
        const expected = how === 'anonymous' ? undefined : 'seq' in resume ? 410 : 201
        if (status === expected && result.reply.response_status === 201) report.theftRefused++
        else if (status === 200) fail('stolen', `${how}: claiming ${victim.requestId}'s key resumed it: ${JSON.stringify(result.resume).slice(0, 300)}`)
        else fail('abuse-reply', `${how}: ${'seq' in resume ? 'claiming' : 'subscribing with'} ${victim.requestId}'s key → resume ${JSON.stringify(result.resume ?? null).slice(0, 200)} (expected ${expected ?? 'none'}), ${JSON.stringify(result.reply).slice(0, 200)}`)
        // The fresh subscription is the thief's own: left to park on close, it would hold the
        // victim's key in the thief's namespace, and the next claim would rightly resume it
        // (a 200 that is no theft). Unsubscribed, it leaves nothing behind.
        if (result.reply.response_status === 201) await socket.request({ action: 'unsubscribe_list', request_id: victim.requestId })
        await socket.close()
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }

  const CHURN_WORKERS = 4
  const on = options.scenarios
  const work = Promise.all([
    ...(on.has('needles') ? [needles(), needles()] : []),
    ...(on.has('hoard') ? [hoard(0), hoard(1)] : []),
    ...(on.has('churn') ? Array.from({ length: CHURN_WORKERS }, async (_, w) => { await churn(w, CHURN_WORKERS) }) : []),
    ...(on.has('theft') ? [thieve()] : [])
  ])
  return {
    stop: async () => {
      running = false
      await work
      await checkBudgets()
      if (report.hoardAccepted.min === Infinity) report.hoardAccepted.min = 0
      return report
    }
  }
}
