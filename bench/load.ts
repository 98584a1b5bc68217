/**
 * The load generator: C connections over real sockets, each keeping D requests in flight
 * (closed loop: a reply sends the next request), a warm-up, then a measured window.
 *
 * Every reply is checked: the five DCRF keys, the request_id of a request still in flight
 * on that socket, the expected action and status, no errors, and the data's content (the
 * row with the requested id and exactly the public keys; the title that was sent; for
 * `nested`, every doc with exactly its seeded owner and labels; for a sign-up, exactly
 * `{id, username, email}` with what was sent; for `list_scoped`, exactly the first page and
 * count of the connection's own owner…). A
 * reply that fails any of it is an error, and so is a request still unanswered 10 s after
 * the run.
 *
 * Reported: throughput and latency (p50/p90/p99/max over every request completed inside
 * the window), errors with samples, the generator's own CPU use (to show it is not the
 * bottleneck), and, given the server's pid, the server's CPU use and CPU time per request.
 *
 * Usable as a module (`runLoad`) or from the command line against a running server:
 * `node --import tsx bench/load.ts --url ws://127.0.0.1:PORT/ws/ --op retrieve [--connections 50]
 *  (`--op nested` goes to the docs route: `--url ws://127.0.0.1:PORT/ws/docs/`)
 *  [--depth 1] [--warmup 2] [--duration 10] [--rows 1000] [--server-pid PID]`
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { NESTED_ROWS, NOOP_DATA, SEED_BODY, seededDoc, seedTitle, type DocView, type SeedInfo } from './entity.js'
import { MIN_TASKS, ownerTaskCount, SCOPES, seededTask, signUpPassword } from './entity-hooked.js'
import { WsClient } from './client.js'

/**
 * The operations a run can load the server with. `nested` is a `list` too, on the docs
 * route (OP_PATH): its rows carry a to-one and a to-many relation as objects. The routes
 * with hooks: `create_hooked` (a sign-up whose hook hashes the password with SHA-256),
 * `create_scrypt` (the same with scrypt), `list_scoped` (a list scoped per connection).
 */
export const OPS = ['retrieve', 'list', 'nested', 'create', 'patch', 'update', 'delete', 'create_hooked', 'create_scrypt', 'list_scoped', 'mixed', 'noop'] as const
export type Op = typeof OPS[number]
type SingleOp = Exclude<Op, 'mixed'>

/** The route an op is sent to, where it is not `/ws/` (the servers' `/ws/echo/` and `/ws/noop/` are chosen by run.ts). */
export const OP_PATH: Partial<Record<Op, string>> = { nested: '/ws/docs/', create_hooked: '/ws/users/', create_scrypt: '/ws/users-scrypt/', list_scoped: '/ws/tasks/' }

/** The owner connection `c` of a `list_scoped` run is scoped to (in its upgrade URL). */
export const scopeOfConnection = (c: number): number => c % SCOPES + 1

/** The URL connection `c` of an `op` run opens: `list_scoped` connections carry their owner. */
export function connectionUrl (url: string, op: Op, c: number): string {
  if (op !== 'list_scoped') return url
  const scoped = new URL(url)
  scoped.searchParams.set('owner', String(scopeOfConnection(c)))
  return scoped.href
}

export interface LoadOptions {
  /** ws://host:port/path */
  url: string
  op: Op
  connections: number
  /** Requests in flight per connection. */
  depth: number
  warmupS: number
  durationS: number
  /** The rows the server holds (from its reset). */
  seed: SeedInfo
  /** The server's pid, to read its CPU time from /proc. */
  serverPid?: number
  /** Called with progress lines (default: none). */
  log?: (line: string) => void
}

export interface LoadResult {
  op: Op
  connections: number
  depth: number
  /** The measured window, in seconds (actual). */
  windowS: number
  /** Requests completed inside the window. */
  requests: number
  rps: number
  latencyMs: { min: number, p50: number, p90: number, p99: number, max: number, mean: number }
  errors: number
  errorSamples: string[]
  /** CPU the generator process used during the window, in cores (1 = one core busy). */
  generatorCpu: number
  /** CPU the server process used during the window, in cores. */
  serverCpu?: number
  /** Server CPU time per completed request, in microseconds. */
  serverCpuUsPerRequest?: number
  /** Each core's use during the window (1 = busy all the time), and what the hypervisor stole of it. */
  cores: CoreUse[]
}

/** How busy one core was over a window, from /proc/stat. */
export interface CoreUse { busy: number, steal: number }

/** What a reply to one request must look like. */
interface Expectation {
  op: SingleOp
  sentAt: number
  pk?: number
  title?: string
  body?: string
  done?: boolean
  /** Sign-ups: what was sent. */
  username?: string
  email?: string
  /** list_scoped: the connection's owner. */
  owner?: number
}

const STATUS: Record<SingleOp, number> = {
  retrieve: 200, list: 200, nested: 200, create: 201, patch: 200, update: 200, delete: 204, noop: 200,
  create_hooked: 201, create_scrypt: 201, list_scoped: 200
}
/** The action an op sends (and its reply names), where it is not the op's own name. */
const ACTION: Partial<Record<SingleOp, string>> = { nested: 'list', create_hooked: 'create', create_scrypt: 'create', list_scoped: 'list' }
const USER_KEYS = ['email', 'id', 'username']
const TASK_KEYS = ['done', 'id', 'owner', 'title']
const REPLY_KEYS = ['action', 'data', 'errors', 'request_id', 'response_status']
const PUBLIC_KEYS = ['body', 'done', 'id', 'title']
const DOC_KEYS = ['id', 'labels', 'owner', 'title']
const RELATED_KEYS = ['id', 'name']
/** The docs a `nested` reply must hold, in this order (seeded once per reset, never written). */
const SEEDED_DOCS: DocView[] = Array.from({ length: NESTED_ROWS }, (_, i) => seededDoc(i + 1))
const LIST_LIMIT = 20
const DRAIN_TIMEOUT_MS = 10_000
const MAX_SAMPLES = 10

/** Clock ticks per second of /proc/<pid>/stat times. */
let clockTicks: number | undefined
function ticksPerSecond (): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      clockTicks = 100
    }
  }
  return clockTicks
}

/** CPU seconds (user + system, all threads) the process `pid` has used so far. */
export function processCpuSeconds (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond()
}

/** Per core: [busy, steal, total] seconds since boot, from /proc/stat. */
export function coreTimes (): Array<[number, number, number]> {
  const times: Array<[number, number, number]> = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line)
    if (match === null) continue
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const [user, nice, system, idle, iowait, irq, softirq, steal] = match[2]!.trim().split(/\s+/).map(Number) as number[]
    const busy = user! + nice! + system! + irq! + softirq!
    const tick = ticksPerSecond()
    times[Number(match[1])] = [busy / tick, steal! / tick, (busy + idle! + iowait! + steal!) / tick]
  }
  return times
}

/** Each core's use between two `coreTimes()` readings. */
export function coreUse (from: Array<[number, number, number]>, to: Array<[number, number, number]>): CoreUse[] {
  return to.map(([busy, steal, total], i) => {
    const [busy0, steal0, total0] = from[i] ?? [0, 0, 0]
    const span = total - total0
    return span > 0 ? { busy: (busy - busy0) / span, steal: (steal - steal0) / span } : { busy: NaN, steal: NaN }
  })
}

/** A growable array of latencies (ms). */
class Samples {
  private data = new Float64Array(1 << 16)
  length = 0
  push (value: number): void {
    if (this.length === this.data.length) {
      const bigger = new Float64Array(this.data.length * 2)
      bigger.set(this.data)
      this.data = bigger
    }
    this.data[this.length++] = value
  }

  summary (): LoadResult['latencyMs'] {
    const sorted = this.data.slice(0, this.length).sort()
    const at = (q: number): number => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
    let sum = 0
    for (const v of sorted) sum += v
    return { min: sorted.length === 0 ? NaN : sorted[0]!, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1), mean: sum / sorted.length }
  }
}

/** Latency percentiles of a list of milliseconds. */
export function percentiles (values: number[]): LoadResult['latencyMs'] {
  const samples = new Samples()
  for (const v of values) samples.push(v)
  return samples.summary()
}

function sameKeys (value: object, keys: string[]): boolean {
  const own = Object.keys(value)
  if (own.length !== keys.length) return false
  own.sort()
  return own.every((k, i) => k === keys[i])
}

/** Why `row` is not a public note view (or undefined if it is). */
function badRow (row: unknown): string | undefined {
  if (typeof row !== 'object' || row === null) return `row is ${JSON.stringify(row)}`
  if (!sameKeys(row, PUBLIC_KEYS)) return `row has keys ${Object.keys(row).join(',')}, expected ${PUBLIC_KEYS.join(',')}`
  const r = row as Record<string, unknown>
  if (!Number.isInteger(r.id) || typeof r.title !== 'string' || typeof r.body !== 'string' || typeof r.done !== 'boolean') {
    return `row has wrong types: ${JSON.stringify(row)}`
  }
  return undefined
}

/** Why `value` is not exactly the related object `expected` ({id, name}), or undefined. */
function badRelated (value: unknown, expected: { id: number, name: string }, what: string): string | undefined {
  if (typeof value !== 'object' || value === null || !sameKeys(value, RELATED_KEYS)) return `${what} is ${JSON.stringify(value)}, expected ${JSON.stringify(expected)}`
  const r = value as { id: unknown, name: unknown }
  return r.id === expected.id && r.name === expected.name ? undefined : `${what} is ${JSON.stringify(value)}, expected ${JSON.stringify(expected)}`
}

/** Why `row` is not exactly the seeded doc `expected` (keys, owner object, labels ordered by id), or undefined. */
function badDoc (row: unknown, expected: DocView): string | undefined {
  if (typeof row !== 'object' || row === null) return `doc is ${JSON.stringify(row)}`
  if (!sameKeys(row, DOC_KEYS)) return `doc has keys ${Object.keys(row).join(',')}, expected ${DOC_KEYS.join(',')}`
  const r = row as Record<string, unknown>
  if (r.id !== expected.id) return `doc ${String(r.id)} where doc ${expected.id} belongs (not all docs, or not ordered by id)`
  if (r.title !== expected.title) return `doc ${expected.id} has title ${JSON.stringify(r.title)}`
  const owner = badRelated(r.owner, expected.owner, `doc ${expected.id}'s owner`)
  if (owner !== undefined) return owner
  if (!Array.isArray(r.labels) || r.labels.length !== expected.labels.length) return `doc ${expected.id} has labels ${JSON.stringify(r.labels)}, expected ${JSON.stringify(expected.labels)}`
  for (let i = 0; i < expected.labels.length; i++) {
    const bad = badRelated(r.labels[i], expected.labels[i]!, `doc ${expected.id}'s label ${i}`)
    if (bad !== undefined) return bad
  }
  return undefined
}

/**
 * Why `reply` does not answer `expect` (or undefined if it does). `exact`: nothing else
 * changes the seeded rows during the run, so their content is known exactly.
 */
function check (reply: Record<string, unknown>, expect: Expectation, seed: SeedInfo, exact: boolean): string | undefined {
  if (!sameKeys(reply, REPLY_KEYS)) return `reply has keys ${Object.keys(reply).join(',')}`
  const action = ACTION[expect.op] ?? expect.op
  if (reply.action !== action) return `action ${JSON.stringify(reply.action)}, expected ${action}`
  if (reply.response_status !== STATUS[expect.op]) return `status ${String(reply.response_status)}, expected ${STATUS[expect.op]}: ${JSON.stringify(reply.errors)}`
  if (!Array.isArray(reply.errors) || reply.errors.length > 0) return `errors ${JSON.stringify(reply.errors)}`
  const data = reply.data as Record<string, unknown> | null
  switch (expect.op) {
    case 'delete':
      return data === null ? undefined : `data ${JSON.stringify(data)}, expected null`
    case 'noop':
      return JSON.stringify(data) === JSON.stringify(NOOP_DATA) ? undefined : `data ${JSON.stringify(data)}`
    case 'create_hooked':
    case 'create_scrypt': {
      // Exactly the public keys: a password (hashed or not) in a reply is an error.
      if (typeof data !== 'object' || data === null || !sameKeys(data, USER_KEYS)) return `user data ${JSON.stringify(data)}, expected keys ${USER_KEYS.join(',')}`
      const user = data as { id: unknown, username: unknown, email: unknown }
      if (!Number.isInteger(user.id) || (user.id as number) < 1) return `user id ${String(user.id)}`
      if (user.username !== expect.username || user.email !== expect.email) return `user ${JSON.stringify(data)}, expected ${expect.username} <${expect.email}>`
      return undefined
    }
    case 'list_scoped': {
      if (typeof data !== 'object' || data === null || !sameKeys(data, ['count', 'limit', 'offset', 'results'])) return `list data ${JSON.stringify(data).slice(0, 200)}`
      const { count, results, limit, offset } = data as { count: unknown, results: unknown, limit: unknown, offset: unknown }
      const owner = expect.owner!
      const total = ownerTaskCount(owner, seed.tasks)
      if (limit !== LIST_LIMIT || offset !== 0) return `limit ${String(limit)} offset ${String(offset)}`
      if (count !== total) return `owner ${owner}: count ${String(count)}, expected ${total}`
      const size = Math.min(LIST_LIMIT, total)
      if (!Array.isArray(results) || results.length !== size) return `owner ${owner}: results is not ${size} rows`
      for (let k = 0; k < size; k++) {
        const row: unknown = results[k]
        const expected = seededTask(owner + k * SCOPES)
        if (typeof row !== 'object' || row === null || !sameKeys(row, TASK_KEYS)) return `task row ${JSON.stringify(row)}`
        const r = row as Record<string, unknown>
        if (r.id !== expected.id || r.owner !== expected.owner || r.title !== expected.title || r.done !== expected.done) {
          return `owner ${owner}: row ${k} is ${JSON.stringify(row)}, expected ${JSON.stringify(expected)}`
        }
      }
      return undefined
    }
    case 'nested': {
      // A plain list (no pagination): every doc, and nothing writes docs during any run.
      if (!Array.isArray(data) || data.length !== NESTED_ROWS) return `nested data is not ${NESTED_ROWS} docs: ${JSON.stringify(data).slice(0, 200)}`
      for (let i = 0; i < NESTED_ROWS; i++) {
        const bad = badDoc(data[i], SEEDED_DOCS[i]!)
        if (bad !== undefined) return bad
      }
      return undefined
    }
    case 'list': {
      if (typeof data !== 'object' || data === null || !sameKeys(data, ['count', 'limit', 'offset', 'results'])) return `list data ${JSON.stringify(data)}`
      const { count, results, limit, offset } = data as { count: unknown, results: unknown, limit: unknown, offset: unknown }
      if (limit !== LIST_LIMIT || offset !== 0) return `limit ${String(limit)} offset ${String(offset)}`
      if (typeof count !== 'number' || (exact ? count !== seed.maxId : count < seed.maxId)) return `count ${String(count)}, expected ${exact ? '' : '≥ '}${seed.maxId}`
      if (!Array.isArray(results) || results.length !== LIST_LIMIT) return `results is not ${LIST_LIMIT} rows`
      let previous = 0
      for (const row of results as unknown[]) {
        const bad = badRow(row)
        if (bad !== undefined) return bad
        const { id, title } = row as { id: number, title: string }
        if (id <= previous) return `results not ordered by id: ${previous} then ${id}`
        if (exact && title !== seedTitle(id)) return `row ${id} has title ${title}`
        previous = id
      }
      return (results[0] as { id: number }).id === seed.minId ? undefined : 'first page does not start at the first row'
    }
    default: {
      const bad = badRow(data)
      if (bad !== undefined) return bad
      const row = data as unknown as { id: number, title: string, body: string, done: boolean }
      if (expect.pk !== undefined && row.id !== expect.pk) return `row ${row.id}, expected ${expect.pk}`
      if (expect.op === 'create' && row.id <= seed.maxId) return `created row has id ${row.id}`
      if (expect.op === 'retrieve' && exact && (row.title !== seedTitle(row.id) || row.body !== SEED_BODY || row.done)) return `row ${row.id} has content ${JSON.stringify(row)}`
      if (expect.title !== undefined && row.title !== expect.title) return `title ${row.title}, expected ${expect.title}`
      if (expect.body !== undefined && row.body !== expect.body) return `body ${row.body}, expected ${expect.body}`
      if (expect.done !== undefined && row.done !== expect.done) return `done ${String(row.done)}, expected ${String(expect.done)}`
      return undefined
    }
  }
}

/** Sockets the generator opens from one loopback address: below the ~28,000 ephemeral ports (32768–60999) one address has. */
export const SOCKETS_PER_SOURCE = 20_000

/**
 * Source addresses for `count` sockets, socket i from `127.0.0.(2 + i mod K)`: all of
 * 127.0.0.0/8 is loopback on Linux, and each address has its own ephemeral ports, so 50,000
 * sockets to one server port fit. At least two addresses, so a small run exercises it too.
 */
export function loopbackSources (count: number): { addresses: string[], of: (i: number) => string } {
  const n = Math.max(2, Math.ceil(count / SOCKETS_PER_SOURCE))
  const addresses = Array.from({ length: n }, (_, k) => `127.0.0.${2 + k}`)
  return { addresses, of: (i) => addresses[i % n]! }
}

/**
 * Open `count` connections to `url` (or `url(i)` for connection i), `batch` upgrades at a
 * time (no SYN flood), connection i from `localAddress(i)` when given (see loopbackSources).
 */
export async function openMany (url: string | ((i: number) => string), count: number, batch = 200, localAddress?: (i: number) => string): Promise<WsClient[]> {
  const clients: WsClient[] = []
  const urlOf = typeof url === 'string' ? () => url : url
  try {
    for (let i = 0; i < count; i += batch) {
      const n = Math.min(batch, count - i)
      clients.push(...await Promise.all(Array.from({ length: n }, async (_, k) => await WsClient.connect(urlOf(i + k), 10_000, localAddress?.(i + k)))))
    }
  } catch (err) {
    for (const c of clients) c.destroy()
    throw err
  }
  return clients
}

/** Run one load: connect, warm up, measure, drain, close. */
export async function runLoad (options: LoadOptions): Promise<LoadResult> {
  const { op, connections, depth, seed } = options
  const exact = op !== 'mixed'
  const clients = await openMany((c) => connectionUrl(options.url, op, c), connections)

  let nextId = 1
  let nextDoomed = seed.deletableFrom
  let running = true
  let measuring = false
  let windowStart = 0
  let completed = 0
  let errors = 0
  const errorSamples: string[] = []
  const latencies = new Samples()
  const inflight = clients.map(() => new Map<number, Expectation>())
  let outstanding = 0
  let drained: (() => void) | undefined

  const error = (text: string): void => {
    errors++
    if (errorSamples.length < MAX_SAMPLES) errorSamples.push(text)
  }

  const randomPk = (): number => seed.minId + Math.floor(Math.random() * (seed.maxId - seed.minId + 1))

  /** The next request of `op` for connection `c`; false when none can be made. */
  const send = (c: number): boolean => {
    let kind: SingleOp
    if (op === 'mixed') {
      const r = Math.random()
      kind = r < 0.7 ? 'retrieve' : r < 0.8 ? 'list' : r < 0.9 ? 'patch' : 'create'
    } else {
      kind = op
    }
    const requestId = nextId++
    const expect: Expectation = { op: kind, sentAt: 0 }
    let message: Record<string, unknown>
    switch (kind) {
      case 'retrieve':
        expect.pk = randomPk()
        message = { action: kind, request_id: requestId, pk: expect.pk }
        break
      case 'list':
        message = { action: kind, request_id: requestId, limit: LIST_LIMIT, offset: 0 }
        break
      case 'nested':
        message = { action: 'list', request_id: requestId }
        break
      case 'create':
        expect.title = `created ${requestId}`
        expect.body = `body of ${requestId}`
        expect.done = false
        message = { action: kind, request_id: requestId, data: { title: expect.title, body: expect.body } }
        break
      case 'patch':
        expect.pk = randomPk()
        expect.title = `patched ${requestId}`
        message = { action: kind, request_id: requestId, pk: expect.pk, data: { title: expect.title } }
        break
      case 'update':
        expect.pk = randomPk()
        expect.title = `updated ${requestId}`
        expect.body = `body of ${requestId}`
        expect.done = requestId % 2 === 0
        message = { action: kind, request_id: requestId, pk: expect.pk, data: { title: expect.title, body: expect.body, done: expect.done } }
        break
      case 'delete':
        if (nextDoomed > seed.deletableTo) {
          error(`ran out of rows to delete (${seed.deletableTo - seed.deletableFrom + 1} were seeded): seed more`)
          return false
        }
        expect.pk = nextDoomed++
        message = { action: kind, request_id: requestId, pk: expect.pk }
        break
      case 'noop':
        message = { action: kind, request_id: requestId }
        break
      case 'create_hooked':
      case 'create_scrypt': {
        const username = `u${requestId}`
        expect.username = username
        expect.email = `${username}@example.com`
        message = { action: 'create', request_id: requestId, data: { username, email: expect.email, password1: signUpPassword(username) } }
        break
      }
      case 'list_scoped':
        expect.owner = scopeOfConnection(c)
        message = { action: 'list', request_id: requestId, limit: LIST_LIMIT, offset: 0 }
        break
    }
    const text = JSON.stringify(message)
    expect.sentAt = performance.now()
    if (!clients[c]!.send(text)) return false
    inflight[c]!.set(requestId, expect)
    outstanding++
    return true
  }

  clients.forEach((client, c) => {
    client.onMessage = (text, at) => {
      let reply: Record<string, unknown>
      try {
        reply = JSON.parse(text) as Record<string, unknown>
      } catch {
        error(`not JSON: ${text.slice(0, 200)}`)
        return
      }
      const requestId = reply.request_id as number
      const expect = inflight[c]!.get(requestId)
      if (expect === undefined) {
        error(`reply with a request_id not in flight on this socket: ${text.slice(0, 200)}`)
        return
      }
      inflight[c]!.delete(requestId)
      outstanding--
      const problem = check(reply, expect, seed, exact)
      if (problem !== undefined) {
        error(`${expect.op}: ${problem}`)
      } else if (measuring) {
        completed++
        latencies.push(at - expect.sentAt)
      }
      if (running) send(c)
      else if (outstanding === 0) drained?.()
    }
    client.onClose = (reason) => {
      if (running || inflight[c]!.size > 0) error(`connection ${c} closed: ${reason}`)
      outstanding -= inflight[c]!.size
      inflight[c]!.clear()
      if (!running && outstanding === 0) drained?.()
    }
  })

  const cpu = (): { gen: number, server: number | undefined, cores: Array<[number, number, number]> } => {
    const usage = process.cpuUsage()
    return {
      gen: (usage.user + usage.system) / 1e6,
      server: options.serverPid === undefined ? undefined : processCpuSeconds(options.serverPid),
      cores: coreTimes()
    }
  }

  for (let c = 0; c < clients.length; c++) for (let d = 0; d < depth; d++) send(c)
  await sleep(options.warmupS * 1000)
  measuring = true
  windowStart = performance.now()
  const cpuStart = cpu()
  await sleep(options.durationS * 1000)
  measuring = false
  running = false
  const windowS = (performance.now() - windowStart) / 1000
  const cpuEnd = cpu()
  const measured = completed

  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, DRAIN_TIMEOUT_MS)
      drained = () => { clearTimeout(timer); resolve() }
    })
  }
  if (outstanding > 0) error(`${outstanding} requests unanswered ${DRAIN_TIMEOUT_MS / 1000} s after the run`)
  for (const client of clients) {
    client.onClose = () => {}
    client.close()
  }

  const serverCpuS = cpuStart.server === undefined || cpuEnd.server === undefined ? undefined : cpuEnd.server - cpuStart.server
  return {
    op,
    connections,
    depth,
    windowS,
    requests: measured,
    rps: measured / windowS,
    latencyMs: latencies.summary(),
    errors,
    errorSamples,
    generatorCpu: (cpuEnd.gen - cpuStart.gen) / windowS,
    cores: coreUse(cpuStart.cores, cpuEnd.cores),
    ...(serverCpuS === undefined
      ? {}
      : { serverCpu: serverCpuS / windowS, serverCpuUsPerRequest: measured === 0 ? NaN : serverCpuS * 1e6 / measured })
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

// Command line: load a server that is already running.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = new Map<string, string>()
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) args.set(argv[i]!.replace(/^--/, ''), argv[i + 1] ?? '')
  const op = (args.get('op') ?? 'retrieve') as Op
  if (!OPS.includes(op)) throw new Error(`--op must be one of ${OPS.join(', ')}`)
  const rows = Number(args.get('rows') ?? 1000)
  const result = await runLoad({
    url: args.get('url') ?? `ws://127.0.0.1:8000${OP_PATH[op] ?? '/ws/'}`,
    op,
    connections: Number(args.get('connections') ?? 50),
    depth: Number(args.get('depth') ?? 1),
    warmupS: Number(args.get('warmup') ?? 2),
    durationS: Number(args.get('duration') ?? 10),
    seed: { minId: 1, maxId: rows, deletableFrom: rows + 1, deletableTo: rows, tasks: Math.max(rows, MIN_TASKS) },
    ...(args.has('server-pid') ? { serverPid: Number(args.get('server-pid')) } : {})
  })
  process.stdout.write(JSON.stringify(result, null, 2) + '\n')
  process.exitCode = result.errors > 0 ? 1 : 0
}
