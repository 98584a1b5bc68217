/**
 * `npm run soak`: the example server as its own process under a long mixed load, checked
 * for correctness (every reply, every event), for lost or duplicated events, and for
 * memory growth. Not part of `npm test`.
 *
 * What it does:
 * 1. Starts `example/server.ts` (`node --import tsx`) on a fresh SQLite file in a temp dir,
 *    or on a fresh PostgreSQL database (`--database-url`: a `wsrest_soak_<random>` database
 *    created through that URL and dropped afterwards, so the `user` table starts empty),
 *    with the Redis layer when `--redis-url` is given (a channel prefix of its own).
 * 2. Opens `--connections` sockets (`ws`) to `/ws/`. A share of them (`--subscriber-share`)
 *    subscribe before any row exists: `subscribe_list` with no filter, `subscribe_list`
 *    filtered on the email domain (rows move in and out of it), or, after the seed rows
 *    exist, `subscribe_instance` on other connections' rows.
 * 3. Every connection runs a closed loop, one request in flight: create, retrieve (its
 *    own rows exactly, others' by id), list (its own rows exactly), patch, update, delete,
 *    subscribe/unsubscribe_instance on its own rows, and now and then an invalid frame
 *    whose error reply (400/404/405, exact text) is expected. A connection writes only its
 *    own rows, so the state of every row, and hence every reply and every event, is known.
 * 4. After `--warmup` s it reads the server's RSS, measures `--duration` s, stops, waits
 *    (bounded) for the replies and events still on their way, and compares, per
 *    subscription, the events that each acknowledged change should have produced with
 *    those that arrived.
 *
 * Errors: an unexpected status or reply, a timeout, an unexpected close, a server exit or
 * error log line, a missing, duplicated, unexpected or out-of-order event, an unclean
 * shutdown. Exit status 0 when there were none, 1 otherwise. The last line of output is
 * the summary as one JSON object.
 *
 * Flags: --connections N (200), --duration S (60; --quick: 10), --warmup S (5; quick 2),
 * --subscriber-share F (0.25), --rows-per-connection N (20), --list-share W (5: the weight
 * of `list` in a mix whose other actions weigh 95), --timeout S (60: a reply later
 * than this is an error), --quiet S (10: how long the events still due after the load may
 * take), --database-url URL, --redis-url URL, --seed N, --quick, --abuse (all scenarios)
 * or --abuse needles,hoard,churn,theft (those named), --abuse-ips N (4).
 *
 * --abuse: the measured window is split in two halves. The first runs the normal load
 * alone; the second runs it beside the abusive clients of bench/soak-abuse.ts (huge
 * needles, filter hoarding, subscribe/park churn from --abuse-ips loopback addresses,
 * resume-key theft). Latency per action kind is reported for each half, so the cost of the
 * abuse to the normal clients shows. Resuming needs a principal, and `/ws/` has none: so
 * beside the normal clients, as many list subscribers as half of the plain ones connect to
 * `/ws/jwt/` with the token of a user made for the soak, and subscribe with a resume key
 * (their events carry `seq`, checked to go up by one): they are the thieves' victims, and
 * a `resume` 409 on one of them (a takeover) is an error. The churners and the thieves get
 * users (tokens) of their own too (bench/soak-abuse.ts). Abusive
 * replies are counted by status; a 500, a close the abuser did not ask for, or a reply
 * other than the one expected (see bench/soak-abuse.ts) is an error.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { percentiles, processCpuSeconds } from './load.js'
import { parseFlags } from './flags.js'
import { SCENARIOS, startAbuse, type AbuseReport, type Scenario, type Victim } from './soak-abuse.js'
import { freePort } from '../test/helpers/free-port.js'

// ---------------------------------------------------------------------------- options

const KNOWN = ['quick', 'connections', 'duration', 'warmup', 'subscriber-share', 'rows-per-connection', 'list-share', 'timeout', 'quiet', 'database-url', 'redis-url', 'seed', 'abuse', 'abuse-ips']
const flags = parseFlags(process.argv.slice(2), KNOWN)

const quick = flags.has('quick')
const num = (key: string, full: number, fast: number): number => {
  const value = Number(flags.get(key) ?? (quick ? fast : full))
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${key} must be a non-negative number`)
  return value
}
const config = {
  quick,
  connections: Math.max(1, Math.floor(num('connections', 200, 200))),
  durationS: num('duration', 60, 10),
  warmupS: num('warmup', 5, 2),
  subscriberShare: Math.min(1, num('subscriber-share', 0.25, 0.25)),
  rowsPerConnection: Math.max(1, Math.floor(num('rows-per-connection', 20, 20))),
  /**
   * Weight of `list` in the mix (the others add up to 95). Each connection lists its own
   * rows, so no two lists are alike, and the plugin runs the distinct lists of a batch one
   * after another, each waiting its turn at the database, and answers them all when the
   * last is done (lib/generic.ts, runLists). On SQLite, whose only connection the
   * example's creates hold while they hash a password, a list then takes seconds.
   */
  listShare: num('list-share', 5, 5),
  /**
   * A reply later than this is a timeout (an error): a reply that never comes. Generous,
   * because on a busy machine lists queue for tens of seconds (see `listShare`); slow
   * replies are reported apart (`slowReplies`) without failing the run.
   */
  timeoutMs: num('timeout', 60, 60) * 1000,
  /** How long the events still due after the load may take to arrive. */
  quietMs: num('quiet', 10, 10) * 1000,
  databaseUrl: flags.get('database-url'),
  redisUrl: flags.get('redis-url'),
  seed: Math.floor(num('seed', randomBytes(4).readUInt32BE(0), randomBytes(4).readUInt32BE(0))),
  abuse: flags.has('abuse'),
  /** `--abuse` runs every scenario; `--abuse needles,churn` only those (to see what each one costs). */
  abuseScenarios: new Set<Scenario>(flags.get('abuse') === undefined || flags.get('abuse') === 'true'
    ? SCENARIOS
    : flags.get('abuse')!.split(',').map((name) => {
      if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`--abuse takes scenarios among ${SCENARIOS.join(',')}`)
      return name as Scenario
    })),
  /** Loopback addresses (principals) the churning abusers spread their parked subscriptions over. */
  abuseIps: Math.min(254, Math.max(1, Math.floor(num('abuse-ips', 4, 4))))
}
if (config.databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(config.databaseUrl)) {
  throw new Error('--database-url must be a postgresql:// URL')
}

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Rows each connection creates before the load, for the instance subscriptions to watch. */
const SEED_ROWS = 1
/**
 * Connections creating their seed rows at once. A create hashes a password with scrypt
 * (example/password.ts) inside its transaction: 200 at once would queue the last ones for
 * many seconds before the load even starts.
 */
const SEED_CONCURRENCY = 16
/** Other connections' rows each instance subscriber watches. */
const WATCHED_ROWS = 5
/** Upgrades opened at once (no SYN flood). */
const CONNECT_BATCH = 50
const PROGRESS_EVERY_MS = quick ? 5_000 : 10_000
const MAX_SAMPLES = 20
/** A reply slower than this is counted as slow: not an error, but a sign of queueing. */
const SLOW_MS = 5_000
/** The five keys of every reply and event, in the order docs/protocol.md fixes. */
const REPLY_KEYS = 'errors,data,action,response_status,request_id'
/** The list subscriptions' filter: rows whose email is on this domain. */
const FILTER_DOMAIN = '@blue.'

const log = (line: string): void => { process.stderr.write(line + '\n') }
const shown = (url: string): string => url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')

/** A seeded PRNG (mulberry32), so a run's mix can be replayed with --seed. */
let rngState = config.seed >>> 0
function rng (): number {
  rngState = (rngState + 0x6d2b79f5) >>> 0
  let t = rngState
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(items: T[]): T => items[Math.floor(rng() * items.length)]!

// ---------------------------------------------------------------------------- errors

let errorCount = 0
const errorKinds = new Map<string, number>()
const errorSamples: string[] = []
function fail (kind: string, text: string): void {
  errorCount++
  errorKinds.set(kind, (errorKinds.get(kind) ?? 0) + 1)
  if (errorSamples.length < MAX_SAMPLES) {
    errorSamples.push(`[${kind}] ${text}`)
    log(`ERROR [${kind}] ${text}`)
  }
}

// ---------------------------------------------------------------------------- the server

interface Server {
  child: ChildProcess
  pid: number
  url: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Log lines by pino level (30 info, 40 warn, 50 error, 60 fatal). */
  levels: Map<number, number>
  /** The first warn/error lines, and stderr. */
  samples: string[]
}

/** The example server as its own process; resolves once it logs `listening on ws://HOST:PORT`. */
async function startExample (env: NodeJS.ProcessEnv): Promise<Server> {
  const port = await freePort()
  const url = `ws://127.0.0.1:${port}`
  const child = spawn(process.execPath, ['--import', 'tsx', 'example/server.ts'], {
    cwd: ROOT,
    env: { ...env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const server: Server = { child, pid: child.pid!, url, exited, levels: new Map(), samples: [] }

  let listening: (() => void) | undefined
  let partial = ''
  let tail = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      tail = (tail + line + '\n').slice(-4000)
      let entry: { level?: number, msg?: unknown }
      try { entry = JSON.parse(line) as typeof entry } catch { continue }
      const level = entry.level ?? 0
      server.levels.set(level, (server.levels.get(level) ?? 0) + 1)
      if (entry.msg === `listening on ${url}`) listening?.()
      if (level >= 40 && server.samples.length < MAX_SAMPLES) {
        server.samples.push(line.slice(0, 1000))
        log(`[server ${level >= 50 ? 'ERROR' : 'warn'}] ${line.slice(0, 1000)}`)
      }
      // An error logged by the server is a failure of the run, even when every reply was right.
      if (level >= 50) fail('server-log', line.slice(0, 500))
    }
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    const text = chunk.toString()
    tail = (tail + text).slice(-4000)
    if (server.samples.length < MAX_SAMPLES) server.samples.push(`stderr: ${text.slice(0, 1000)}`)
    process.stderr.write(text.replace(/^(?=.)/gm, '[server stderr] '))
  })

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example server did not log "listening on ${url}" within 60 s:\n${tail}`)), 60_000)
    listening = () => { clearTimeout(timer); resolve() }
    void exited.then(({ code, signal }) => {
      clearTimeout(timer)
      reject(new Error(`the example server exited (${code ?? signal}) before listening:\n${tail}`))
    })
  })
  return server
}

/** The process's resident set and its high-water mark, in KiB, from /proc/<pid>/status. */
function memoryOf (pid: number): { rss: number, hwm: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    return { rss: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]), hwm: Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]) }
  } catch {
    return undefined
  }
}

/** A fresh database on the PostgreSQL of `url` (as test/helpers/database.ts makes one per test), dropped by `drop`. */
async function freshPostgres (url: string): Promise<{ url: string, drop: () => Promise<void> }> {
  // Loaded only here, so a SQLite run does not load the PostgreSQL driver: `pg`, which both
  // MikroORM majors' PostgreSQL packages bring (it has no types; the computed name keeps tsc off).
  const pgModule = 'pg'
  const { default: pg } = await import(pgModule) as { default: { Client: new (config: object) => { connect: () => Promise<void>, query: (sql: string) => Promise<unknown>, end: () => Promise<void> } } }
  const admin = async (sql: string): Promise<void> => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
    try { await client.connect(); await client.query(sql) } finally { await client.end().catch(() => {}) }
  }
  const name = `wsrest_soak_${randomBytes(6).toString('hex')}`
  await admin(`CREATE DATABASE "${name}"`)
  const fresh = new URL(url)
  fresh.pathname = `/${name}`
  return { url: fresh.href, drop: async () => { await admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) } }
}

// ---------------------------------------------------------------------------- model

/** What a user looks like in every reply and event. */
interface View { id: number, username: string, email: string }

/** A row as its owner last wrote it (and had it acknowledged). */
interface Row extends View {
  owner: Conn
  serial: number
  version: number
  /** A delete of it has been sent: others may no longer expect to find it. */
  deleting: boolean
  /** The owner's own instance subscription to it, if any. */
  ownSub?: Sub
}

type SubKind = 'list' | 'filtered' | 'instance'

/**
 * One subscription and its accounting. `pending` maps an event (its action and content)
 * to how many more of it are due: +1 when a change it covers is acknowledged, −1 when it
 * arrives. An event may arrive before the writer's reply, so a key may go negative for a
 * while; once all is delivered the map is empty. What is left positive is missing, what is
 * left negative arrived once too often (or never should have).
 */
interface Sub {
  conn: Conn
  requestId: string
  kind: SubKind
  /** The watched row (instance subscriptions). */
  pk?: number
  /** Set when the subscribe was acknowledged; cleared when the unsubscribe is sent. */
  active: boolean
  pending: Map<string, number>
  /** The last version seen per row: a row's events must arrive in the order of its changes. */
  versions: Map<number, number>
  /** Called when `pending` becomes empty. */
  onBalanced?: () => void
  /** Its resume key (--abuse: the thieves' victims); its events then carry `seq`. */
  resumeKey?: string
  /** The last `seq` received. */
  seq: number
}

interface Pending {
  requestId: unknown
  action: string | null
  /** What the latency is filed under: the action, or "invalid". */
  kind: string
  sentAt: number
  /**
   * --abuse: the half of the window it was sent in (none outside the window). Filed by when
   * it was sent, and counted even when answered after the window: a reply the abuse delays
   * past the window's end would otherwise be left out, and the slowest look fastest.
   */
  phase?: 'alone' | 'abuse'
  timer: NodeJS.Timeout
  resolve: (reply: Reply | undefined) => void
}

interface Reply { errors: unknown[], data: unknown, action: unknown, response_status: unknown, request_id: unknown }

interface Conn {
  index: number
  ws: WebSocket
  nextId: number
  inflight?: Pending
  rows: Map<number, Row>
  serial: number
  subs: Map<string, Sub>
  subSerial: number
  /** A timeout or a close left its state unknown: it sends nothing more. */
  broken: boolean
  closing: boolean
}

const rows = new Map<number, Row>()
let maxId = 0
const listSubs: Sub[] = []
const instanceSubs = new Map<number, Set<Sub>>()
const allSubs: Sub[] = []

const totals = {
  changes: 0,
  expected: 0,
  delivered: 0,
  /** Replies by action (and "invalid" for the expected error replies). */
  actions: new Map<string, number>(),
  expectedErrors: 0
}
let running = false
let measuring = false
let measuredReplies = 0
const latencies: number[] = []
/** Latencies (ms) of the measured window by kind of request, to show which action is slow. */
const latenciesByKind = new Map<string, number[]>()
/** Replies slower than SLOW_MS in the measured window, by kind. */
const slowByKind = new Map<string, number>()
/** --abuse: which half of the measured window is running (requests are filed by when they were sent). */
let phase: 'alone' | 'abuse' = 'alone'
/** --abuse: latencies (ms) by half of the window, then by kind. */
const latenciesByPhase = new Map<string, Map<string, number[]>>()

const usernameOf = (c: number, serial: number, version: number): string => `u.c${c}.n${serial}.v${version}`
/** Unique per row and version; on the filter's domain about 40% of the time, so rows move in and out of it. */
const emailOf = (c: number, serial: number, version: number): string =>
  `v${version}.n${serial}.c${c}${rng() < 0.4 ? FILTER_DOMAIN : '@red.'}soak.test`
const viewOf = (row: View): View => ({ id: row.id, username: row.username, email: row.email })
const eventKey = (action: string, view: View): string => `${action}|${view.id}|${view.username}|${view.email}`
const matchesFilter = (view: View | undefined): boolean => view !== undefined && view.email.includes(FILTER_DOMAIN)

function bump (sub: Sub, key: string, delta: number): void {
  const n = (sub.pending.get(key) ?? 0) + delta
  if (n === 0) sub.pending.delete(key)
  else sub.pending.set(key, n)
  if (sub.pending.size === 0) sub.onBalanced?.()
}

function expectEvent (sub: Sub, key: string): void {
  totals.expected++
  bump(sub, key, 1)
}

/** An acknowledged change: what every subscription that covers it must receive. */
function committed (change: 'create' | 'update' | 'delete', pk: number, before: View | undefined, after: View | undefined): void {
  totals.changes++
  for (const sub of listSubs) {
    if (!sub.active) continue
    if (sub.kind === 'list') {
      expectEvent(sub, change === 'delete' ? `delete|${pk}` : eventKey(change, after!))
    } else {
      // A filtered list: a row coming into the filter is a create, leaving it a delete.
      const was = matchesFilter(before)
      const is = matchesFilter(after)
      if (is && !was) expectEvent(sub, eventKey('create', after!))
      else if (is && was) expectEvent(sub, eventKey('update', after!))
      else if (was && !is) expectEvent(sub, `delete|${pk}`)
    }
  }
  if (change === 'create') return
  for (const sub of instanceSubs.get(pk) ?? []) {
    if (sub.active) expectEvent(sub, change === 'delete' ? `delete|${pk}` : eventKey('update', after!))
  }
}

/** Why `data` is not a public user (or undefined when it is one). */
function badView (data: unknown): string | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return `data is ${JSON.stringify(data)}`
  if (Object.keys(data).sort().join(',') !== 'email,id,username') return `data has keys ${Object.keys(data).join(',')}`
  const d = data as Record<string, unknown>
  if (!Number.isInteger(d.id) || typeof d.username !== 'string' || typeof d.email !== 'string') return `data has wrong types: ${JSON.stringify(data)}`
  return undefined
}

const EVENT_STATUS: Record<string, number> = { create: 201, update: 200, delete: 204 }

/** An event for `sub`: checked, counted against what is due, ordered per row. */
function onEvent (sub: Sub, reply: Reply, text: string): void {
  totals.delivered++
  const where = `connection ${sub.conn.index}, subscription ${sub.requestId}`
  if (sub.resumeKey !== undefined) {
    // A resumable subscription numbers its events 1, 2, 3…: a gap or a repeat is a lost or doubled event.
    const seq = (reply as Reply & { seq?: unknown }).seq
    if (seq !== sub.seq + 1) fail('event', `${where}: seq ${JSON.stringify(seq)} after ${sub.seq}`)
    if (typeof seq === 'number') sub.seq = seq
  }
  const action = String(reply.action)
  if (EVENT_STATUS[action] === undefined || reply.response_status !== EVENT_STATUS[action] || !Array.isArray(reply.errors) || reply.errors.length > 0) {
    fail('event', `${where}: malformed event ${text.slice(0, 300)}`)
    bump(sub, `malformed|${text}`, -1)
    return
  }
  if (sub.kind === 'instance' && action === 'create') fail('event', `${where}: an instance subscription got a create: ${text.slice(0, 300)}`)
  let key: string
  let pk: number
  if (action === 'delete') {
    const data = reply.data as Record<string, unknown> | null
    if (typeof data !== 'object' || data === null || Object.keys(data).join(',') !== 'pk' || !Number.isInteger(data.pk)) {
      fail('event', `${where}: delete event data is not {pk}: ${text.slice(0, 300)}`)
      bump(sub, `malformed|${text}`, -1)
      return
    }
    pk = data.pk as number
    key = `delete|${pk}`
    sub.versions.delete(pk)
  } else {
    const problem = badView(reply.data)
    if (problem !== undefined) {
      fail('event', `${where}: ${problem}`)
      bump(sub, `malformed|${text}`, -1)
      return
    }
    const view = reply.data as View
    pk = view.id
    key = eventKey(action, view)
    const version = Number(/^v(\d+)\./.exec(view.email)?.[1])
    const last = sub.versions.get(pk)
    if (last !== undefined && !(version > last)) fail('event', `${where}: row ${pk} version ${version} arrived after version ${last}`)
    sub.versions.set(pk, version)
  }
  if (sub.pk !== undefined && pk !== sub.pk) fail('event', `${where}: event for row ${pk} on a subscription to row ${sub.pk}`)
  bump(sub, key, -1)
}

/**
 * A `resume` frame for a resumable subscription: 201 once, before its subscribe reply. A 409
 * means another connection took its key over: with only the thieves claiming it (from
 * another route or principal), that is a stolen subscription.
 */
function onResumeFrame (sub: Sub, reply: Reply, text: string): void {
  const where = `connection ${sub.conn.index}, subscription ${sub.requestId}`
  if (reply.response_status === 409) {
    stolen++
    fail('stolen', `${where}: taken over (resume 409): ${text.slice(0, 300)}`)
    return
  }
  const data = reply.data as { key?: unknown } | null
  if (reply.response_status !== 201 || sub.active || data?.key !== sub.resumeKey) fail('mismatch', `${where}: unexpected resume frame ${text.slice(0, 300)}`)
}
let stolen = 0

/**
 * --abuse: the users whose tokens (`POST /token`) give the victims, the thieves and each
 * churning address a principal of its own on `/ws/jwt/` — resuming needs one, and the
 * example's `/ws/` has none. Made on `conn` through `/ws/` before any subscription exists;
 * `soak.` usernames are no connection's (`.c<n>.`), so no list of its own rows sees them.
 * A churner's token is asked for from its own address (127.0.2.<k>), the others' from
 * 127.0.0.1: each address stays under `POST /token`'s rate limit (10 a minute).
 */
async function makePrincipals (url: string, conn: Conn, churners: number): Promise<{ victim: string, thief: string, churn: string[] }> {
  const token = async (name: string, localAddress?: string): Promise<string> => {
    const username = `soak.${name}`
    const made = await request(conn, { action: 'create', data: { username, email: `${name}@principal.soak.test`, password1: 'pw', password2: 'pw' } })
    if (!ok(conn, made, 201, `create user ${username}`)) throw new Error(`could not create ${username}`)
    const { status, body } = await postJson(`${url.replace(/^ws/, 'http')}/token`, { username, password: 'pw' }, localAddress)
    if (status !== 200) throw new Error(`POST /token for ${username}: ${status} ${body}`)
    return (JSON.parse(body) as { token: string }).token
  }
  const victim = await token('victim')
  const thief = await token('thief')
  // One after the other: `conn` has one request in flight at a time.
  const churn: string[] = []
  for (let k = 0; k < churners; k++) churn.push(await token(`churn${k + 1}`, `127.0.2.${k + 1}`))
  return { victim, thief, churn }
}

/** POST `payload` as JSON from `localAddress`; the status and the body. */
async function postJson (url: string, payload: unknown, localAddress?: string): Promise<{ status: number, body: string }> {
  const body = JSON.stringify(payload)
  return await new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', localAddress, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

// ---------------------------------------------------------------------------- connections

async function connect (index: number, url: string, token?: string): Promise<Conn> {
  const headers = token === undefined ? undefined : { authorization: `Bearer ${token}` }
  const ws = new WebSocket(url, { perMessageDeflate: false, headers })
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => { ws.off('error', reject); resolve() })
    ws.once('error', reject)
  })
  const conn: Conn = { index, ws, nextId: 1, rows: new Map(), serial: 0, subs: new Map(), subSerial: 0, broken: false, closing: false }
  ws.on('message', (data, isBinary) => { onMessage(conn, (data as Buffer).toString(), isBinary) })
  ws.on('error', (err) => { if (!conn.closing) fail('close', `connection ${index}: ${err.message}`) })
  ws.on('close', (code, reason) => {
    if (!conn.closing) fail('close', `connection ${index} closed by the server: ${code} ${reason.toString()}`)
    conn.broken = true
    const pending = conn.inflight
    if (pending !== undefined) {
      conn.inflight = undefined
      clearTimeout(pending.timer)
      pending.resolve(undefined)
    }
  })
  return conn
}

function onMessage (conn: Conn, text: string, isBinary: boolean): void {
  let reply: Reply
  try {
    reply = JSON.parse(text) as Reply
  } catch {
    fail('mismatch', `connection ${conn.index}: a frame that is not JSON: ${text.slice(0, 300)}`)
    return
  }
  const target = typeof reply?.request_id === 'string' ? conn.subs.get(reply.request_id) : undefined
  const keys = typeof reply === 'object' && reply !== null ? Object.keys(reply).join(',') : ''
  // A resumable subscription's events carry a sixth key, `seq`.
  const withSeq = target?.resumeKey !== undefined && keys === REPLY_KEYS + ',seq'
  if (isBinary || typeof reply !== 'object' || reply === null || Array.isArray(reply) || (keys !== REPLY_KEYS && !withSeq)) {
    fail('mismatch', `connection ${conn.index}: not a five-key ${isBinary ? 'text ' : ''}reply: ${text.slice(0, 300)}`)
    return
  }
  if (target?.resumeKey !== undefined && reply.action === 'resume') {
    onResumeFrame(target, reply, text)
    return
  }
  const pending = conn.inflight
  // A subscription's events carry its request_id, as the reply to its (un)subscribe does: the action tells them apart.
  if (pending !== undefined && reply.request_id === pending.requestId && reply.action === pending.action) {
    conn.inflight = undefined
    clearTimeout(pending.timer)
    if (measuring) {
      const ms = performance.now() - pending.sentAt
      measuredReplies++
      latencies.push(ms)
      let byKind = latenciesByKind.get(pending.kind)
      if (byKind === undefined) latenciesByKind.set(pending.kind, byKind = [])
      byKind.push(ms)
      if (ms > SLOW_MS) slowByKind.set(pending.kind, (slowByKind.get(pending.kind) ?? 0) + 1)
    }
    if (pending.phase !== undefined) {
      const ms = performance.now() - pending.sentAt
      let inPhase = latenciesByPhase.get(pending.phase)
      if (inPhase === undefined) latenciesByPhase.set(pending.phase, inPhase = new Map())
      for (const kind of [pending.kind, 'all']) {
        let values = inPhase.get(kind)
        if (values === undefined) inPhase.set(kind, values = [])
        values.push(ms)
      }
    }
    pending.resolve(reply)
    return
  }
  const sub = typeof reply.request_id === 'string' ? conn.subs.get(reply.request_id) : undefined
  if (sub !== undefined) {
    onEvent(sub, reply, text)
    return
  }
  fail('mismatch', `connection ${conn.index}: a message for no request in flight (${pending === undefined ? 'none' : JSON.stringify(pending.requestId)}) nor subscription: ${text.slice(0, 300)}`)
}

/** Send one frame and wait for its reply (request_id and action as given); undefined on timeout or close. */
async function send (conn: Conn, frame: string, requestId: unknown, action: string | null, kind = action ?? 'invalid'): Promise<Reply | undefined> {
  if (conn.broken || conn.ws.readyState !== WebSocket.OPEN) return undefined
  if (conn.inflight !== undefined) throw new Error('one request in flight per connection')
  return await new Promise<Reply | undefined>((resolve) => {
    const timer = setTimeout(() => {
      conn.inflight = undefined
      conn.broken = true
      fail('timeout', `connection ${conn.index}: no reply within ${config.timeoutMs / 1000} s to ${frame.slice(0, 200)}`)
      resolve(undefined)
    }, config.timeoutMs)
    conn.inflight = { requestId, action, kind, sentAt: performance.now(), phase: measuring ? phase : undefined, timer, resolve }
    conn.ws.send(frame)
  })
}

/** Send `message` (its request_id a fresh number unless it brings one) and wait for the reply. */
async function request (conn: Conn, message: Record<string, unknown>): Promise<Reply | undefined> {
  if (!('request_id' in message)) message = { ...message, request_id: conn.nextId++ }
  const reply = await send(conn, JSON.stringify(message), message.request_id ?? null, message.action as string)
  if (reply !== undefined) totals.actions.set(message.action as string, (totals.actions.get(message.action as string) ?? 0) + 1)
  return reply
}

/** True when `reply` has `status` and no errors; otherwise an error is counted. */
function ok (conn: Conn, reply: Reply | undefined, status: number, what: string): reply is Reply {
  if (reply === undefined) return false
  if (reply.response_status !== status || !Array.isArray(reply.errors) || reply.errors.length > 0) {
    fail('status', `connection ${conn.index}, ${what}: expected ${status}, got ${JSON.stringify(reply).slice(0, 400)}`)
    return false
  }
  return true
}

function sameJson (a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

// ---------------------------------------------------------------------------- actions

async function doCreate (conn: Conn): Promise<void> {
  const c = conn.index
  const serial = conn.serial++
  const username = usernameOf(c, serial, 0)
  const email = emailOf(c, serial, 0)
  const reply = await request(conn, { action: 'create', data: { username, email, password1: 'pw', password2: 'pw' } })
  if (!ok(conn, reply, 201, `create ${username}`)) return
  const problem = badView(reply.data)
  const data = reply.data as View
  if (problem !== undefined || data.username !== username || data.email !== email) {
    fail('mismatch', `connection ${c}, create ${username}: ${problem ?? JSON.stringify(data)}`)
    return
  }
  const row: Row = { id: data.id, username, email, owner: conn, serial, version: 0, deleting: false }
  rows.set(row.id, row)
  conn.rows.set(row.id, row)
  if (row.id > maxId) maxId = row.id
  committed('create', row.id, undefined, viewOf(row))
}

/** patch (some fields) or update (all of them) of one of the connection's rows, to its next version. */
async function doWrite (conn: Conn, row: Row, action: 'patch' | 'update'): Promise<void> {
  const version = row.version + 1
  const email = emailOf(conn.index, row.serial, version)
  const data: Partial<View> = action === 'update' || rng() < 0.5
    ? { username: usernameOf(conn.index, row.serial, version), email }
    : { email }
  const reply = await request(conn, { action, pk: row.id, data })
  if (!ok(conn, reply, 200, `${action} ${row.id}`)) return
  const before = viewOf(row)
  const after: View = { id: row.id, username: data.username ?? row.username, email }
  if (!sameJson(reply.data, after)) {
    fail('mismatch', `connection ${conn.index}, ${action} ${row.id}: got ${JSON.stringify(reply.data)}, expected ${JSON.stringify(after)}`)
    return
  }
  row.version = version
  row.username = after.username
  row.email = after.email
  committed('update', row.id, before, after)
}

async function doDelete (conn: Conn, row: Row): Promise<void> {
  row.deleting = true
  const reply = await request(conn, { action: 'delete', pk: row.id })
  if (!ok(conn, reply, 204, `delete ${row.id}`)) return
  if (reply.data !== null) fail('mismatch', `connection ${conn.index}, delete ${row.id}: data ${JSON.stringify(reply.data)}`)
  rows.delete(row.id)
  conn.rows.delete(row.id)
  committed('delete', row.id, viewOf(row), undefined)
  // The row is gone for good: nothing more will be published for it.
  instanceSubs.delete(row.id)
}

async function doRetrieveOwn (conn: Conn, row: Row): Promise<void> {
  const reply = await request(conn, { action: 'retrieve', pk: row.id })
  if (!ok(conn, reply, 200, `retrieve ${row.id}`)) return
  if (!sameJson(reply.data, viewOf(row))) {
    fail('mismatch', `connection ${conn.index}, retrieve own ${row.id}: got ${JSON.stringify(reply.data)}, expected ${JSON.stringify(viewOf(row))}`)
  }
}

/** Any row by id: others may change or delete it meanwhile, so only what cannot change is checked. */
async function doRetrieveAny (conn: Conn): Promise<void> {
  const pk = 1 + Math.floor(rng() * Math.max(1, maxId))
  const row = rows.get(pk)
  const mustExist = row !== undefined && !row.deleting
  const reply = await request(conn, { action: 'retrieve', pk })
  if (reply === undefined) return
  if (reply.response_status === 404) {
    // 404 is right unless the row existed, and no delete of it was sent, from before the request until its reply.
    if (mustExist && rows.get(pk) === row && !row.deleting) fail('status', `connection ${conn.index}, retrieve ${pk}: 404 for a row that exists`)
    if (!sameJson(reply.errors, ['Not found'])) fail('mismatch', `connection ${conn.index}, retrieve ${pk}: 404 with ${JSON.stringify(reply.errors)}`)
    return
  }
  if (!ok(conn, reply, 200, `retrieve ${pk}`)) return
  const problem = badView(reply.data)
  if (problem !== undefined || (reply.data as View).id !== pk) fail('mismatch', `connection ${conn.index}, retrieve ${pk}: ${problem ?? JSON.stringify(reply.data)}`)
}

/** The connection's own rows, filtered by the tag in their usernames: exactly what it holds. */
async function doListOwn (conn: Conn): Promise<void> {
  const reply = await request(conn, { action: 'list', filter: { username: { $contains: `.c${conn.index}.` } } })
  if (!ok(conn, reply, 200, 'list')) return
  const expected = [...conn.rows.values()].sort((a, b) => a.id - b.id).map(viewOf)
  if (!sameJson(reply.data, expected)) {
    fail('mismatch', `connection ${conn.index}, list own: got ${JSON.stringify(reply.data).slice(0, 300)}, expected ${JSON.stringify(expected).slice(0, 300)}`)
  }
}

function newSub (conn: Conn, kind: SubKind, pk?: number): Sub {
  const sub: Sub = { conn, requestId: `${kind}-${pk ?? ''}-${conn.subSerial++}`, kind, pk, active: false, pending: new Map(), versions: new Map(), seq: 0 }
  conn.subs.set(sub.requestId, sub)
  allSubs.push(sub)
  return sub
}

async function subscribeInstance (conn: Conn, row: Row, own: boolean): Promise<Sub | undefined> {
  const sub = newSub(conn, 'instance', row.id)
  const reply = await request(conn, { action: 'subscribe_instance', request_id: sub.requestId, pk: row.id })
  if (!ok(conn, reply, 201, `subscribe_instance ${row.id}`)) return undefined
  if (reply.data !== null) fail('mismatch', `connection ${conn.index}, subscribe_instance: data ${JSON.stringify(reply.data)}`)
  sub.active = true
  let watching = instanceSubs.get(row.id)
  if (watching === undefined) instanceSubs.set(row.id, watching = new Set())
  watching.add(sub)
  if (own) row.ownSub = sub
  return sub
}

/** Wait (bounded) until every event due to `sub` has arrived; false (and an error) if they do not. */
async function balanced (sub: Sub, what: string): Promise<boolean> {
  if (sub.pending.size === 0) return true
  const done = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), config.quietMs)
    sub.onBalanced = () => { clearTimeout(timer); resolve(true) }
  })
  sub.onBalanced = undefined
  if (!done) fail('event', `connection ${sub.conn.index}, ${what}: events of ${sub.requestId} still due after ${config.quietMs / 1000} s: ${[...sub.pending].slice(0, 3).map(([k, n]) => `${k} ×${n}`).join('; ')}`)
  return done
}

async function unsubscribeOwn (conn: Conn, row: Row): Promise<void> {
  const sub = row.ownSub!
  // Unsubscribe only once caught up: an event in flight at the unsubscribe may rightly be dropped.
  if (!await balanced(sub, `unsubscribe_instance ${row.id}`)) { conn.broken = true; return }
  sub.active = false
  instanceSubs.get(row.id)?.delete(sub)
  row.ownSub = undefined
  const reply = await request(conn, { action: 'unsubscribe_instance', request_id: sub.requestId, pk: row.id })
  if (!ok(conn, reply, 204, `unsubscribe_instance ${row.id}`)) return
  if (reply.data !== null) fail('mismatch', `connection ${conn.index}, unsubscribe_instance: data ${JSON.stringify(reply.data)}`)
}

async function subscribeList (conn: Conn, filtered: boolean, resumable = false): Promise<void> {
  const sub = newSub(conn, filtered ? 'filtered' : 'list')
  const message: Record<string, unknown> = { action: 'subscribe_list', request_id: sub.requestId }
  if (filtered) message.filter = { email: { $contains: FILTER_DOMAIN } }
  if (resumable) {
    // 32 random hex digits, as the client library makes them.
    sub.resumeKey = randomBytes(16).toString('hex')
    message.resume = { key: sub.resumeKey }
  }
  const reply = await request(conn, message)
  if (!ok(conn, reply, 201, 'subscribe_list')) return
  sub.active = true
  listSubs.push(sub)
}

/** A frame the server must refuse, and the exact reply it must refuse it with. */
interface Invalid { frame: string, requestId: unknown, action: string | null, status: number, errors: unknown[] }

function invalidFrame (conn: Conn): Invalid {
  const id = conn.nextId++
  const own = [...conn.rows.values()]
  const cases: Array<() => Invalid> = [
    () => ({ frame: `{"action":"retrieve","request_id":${id},"pk":`, requestId: null, action: null, status: 400, errors: ['Invalid JSON.'] }),
    () => ({ frame: '[1,2,3]', requestId: null, action: null, status: 400, errors: ['Invalid message. Expected a JSON object, but got array.'] }),
    () => ({ frame: `{"request_id":${id}}`, requestId: id, action: null, status: 405, errors: ['Unable to find action in message body.'] }),
    () => ({ frame: JSON.stringify({ action: 'explode', request_id: id }), requestId: id, action: 'explode', status: 405, errors: ['Method "explode" not allowed.'] }),
    () => ({ frame: JSON.stringify({ action: 'create', request_id: id }), requestId: id, action: 'create', status: 400, errors: [{ data: ['This field is required.'] }] }),
    () => ({
      frame: JSON.stringify({ action: 'create', request_id: id, data: { username: `bad.c${conn.index}.${id}`, password1: 'a', password2: 'b' } }),
      requestId: id, action: 'create', status: 400, errors: [{ password2: ['Passwords do not match.'] }]
    }),
    // A unique violation: with other sockets' creates in the same group commit, only this one must fail.
    () => own.length === 0
      ? { frame: JSON.stringify({ action: 'retrieve', request_id: id }), requestId: id, action: 'retrieve', status: 400, errors: [{ pk: ['This field is required.'] }] }
      : {
          frame: JSON.stringify({ action: 'create', request_id: id, data: { username: pick(own).username, password1: 'pw', password2: 'pw' } }),
          requestId: id, action: 'create', status: 400, errors: [{ username: ['user with this username already exists.'] }]
        },
    () => ({ frame: JSON.stringify({ action: 'retrieve', request_id: id }), requestId: id, action: 'retrieve', status: 400, errors: [{ pk: ['This field is required.'] }] }),
    () => ({ frame: JSON.stringify({ action: 'retrieve', request_id: id, pk: { $like: '%' } }), requestId: id, action: 'retrieve', status: 404, errors: ['Not found'] }),
    () => ({ frame: JSON.stringify({ action: 'patch', request_id: id, pk: 2_000_000_000, data: { email: '' } }), requestId: id, action: 'patch', status: 404, errors: ['Not found'] }),
    // A failed write of an existing row: nothing changes, so no event may follow.
    () => own.length === 0
      ? { frame: JSON.stringify({ action: 'delete', request_id: id, pk: 2_000_000_000 }), requestId: id, action: 'delete', status: 404, errors: ['Not found'] }
      : {
          frame: JSON.stringify({ action: 'patch', request_id: id, pk: pick(own).id, data: { email: 'not-an-email' } }),
          requestId: id, action: 'patch', status: 400, errors: [{ email: ['Enter a valid email address.'] }]
        },
    () => ({ frame: JSON.stringify({ action: 'subscribe_instance', pk: 1 }), requestId: null, action: 'subscribe_instance', status: 400, errors: [{ request_id: ['This field is required.'] }] }),
    () => ({ frame: JSON.stringify({ action: 'list', request_id: id, filter: { password: 'x' } }), requestId: id, action: 'list', status: 400, errors: [{ filter: ['Unknown field "password".'] }] })
  ]
  return pick(cases)()
}

async function doInvalid (conn: Conn): Promise<void> {
  const invalid = invalidFrame(conn)
  const reply = await send(conn, invalid.frame, invalid.requestId, invalid.action, 'invalid')
  if (reply === undefined) return
  totals.actions.set('invalid', (totals.actions.get('invalid') ?? 0) + 1)
  if (reply.response_status !== invalid.status || !sameJson(reply.errors, invalid.errors) || reply.data !== null) {
    fail('status', `connection ${conn.index}: ${invalid.frame.slice(0, 200)} → expected ${invalid.status} ${JSON.stringify(invalid.errors)}, got ${JSON.stringify(reply).slice(0, 300)}`)
    return
  }
  totals.expectedErrors++
}

/**
 * The mix of a connection's loop, as weights (percent with the default `--list-share 5`).
 * Creates are few, as sign-ups are: the example's create hashes a password with scrypt
 * inside its transaction, which holds SQLite's only connection meanwhile, so every create
 * delays every other query of the server by the time of a hash.
 */
const MIX = {
  invalid: 4,
  create: 3,
  retrieveOwn: 22,
  retrieveAny: 8,
  list: config.listShare,
  patch: 24,
  update: 14,
  delete: 3,
  subscribe: 8.5,
  unsubscribe: 8.5
}
type Step = keyof typeof MIX
const MIX_TOTAL = Object.values(MIX).reduce((a, b) => a + b, 0)

function nextStep (): Step {
  let r = rng() * MIX_TOTAL
  for (const [step, weight] of Object.entries(MIX) as Array<[Step, number]>) {
    if (r < weight) return step
    r -= weight
  }
  return 'retrieveOwn'
}

/** One step of a connection's loop, picked at random from the mix. */
async function step (conn: Conn): Promise<void> {
  const own = [...conn.rows.values()]
  if (own.length === 0) { await doCreate(conn); return }
  switch (nextStep()) {
    case 'invalid': await doInvalid(conn); return
    // Each connection keeps a bounded number of rows, so lists and memory stay steady.
    case 'create': await (own.length >= config.rowsPerConnection ? doDelete(conn, pick(own)) : doCreate(conn)); return
    case 'retrieveOwn': await doRetrieveOwn(conn, pick(own)); return
    case 'retrieveAny': await doRetrieveAny(conn); return
    case 'list': await doListOwn(conn); return
    case 'patch': await doWrite(conn, pick(own), 'patch'); return
    case 'update': await doWrite(conn, pick(own), 'update'); return
    case 'delete': await doDelete(conn, pick(own)); return
    case 'subscribe': {
      const unwatched = own.filter((row) => row.ownSub === undefined)
      await (unwatched.length > 0 ? subscribeInstance(conn, pick(unwatched), true) : doRetrieveOwn(conn, pick(own)))
      return
    }
    case 'unsubscribe': {
      const watched = own.filter((row) => row.ownSub !== undefined)
      await (watched.length > 0 ? unsubscribeOwn(conn, pick(watched)) : doWrite(conn, pick(own), 'patch'))
    }
  }
}

async function loop (conn: Conn): Promise<void> {
  while (running && !conn.broken) await step(conn)
}

// ---------------------------------------------------------------------------- the run

/** Wait (bounded) until `check()` holds, re-checking as replies and events arrive. */
async function until (check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return true
}

const allBalanced = (): boolean => allSubs.every((sub) => sub.pending.size === 0)

function tally (): { missing: number, duplicated: number, samples: string[] } {
  let missing = 0
  let duplicated = 0
  const samples: string[] = []
  for (const sub of allSubs) {
    for (const [key, n] of sub.pending) {
      if (n > 0) missing += n
      else duplicated -= n
      if (samples.length < MAX_SAMPLES) samples.push(`connection ${sub.conn.index} ${sub.requestId}: ${key} ${n > 0 ? `missing ×${n}` : `extra ×${-n}`}`)
    }
  }
  return { missing, duplicated, samples }
}

const mib = (kib: number | undefined): string => kib === undefined ? '?' : `${(kib / 1024).toFixed(1)} MiB`

let server: Server | undefined
let tempDir: string | undefined
let dropDatabase: (() => Promise<void>) | undefined

function cleanupSync (): void {
  if (server !== undefined && server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGKILL')
  if (tempDir !== undefined) rmSync(tempDir, { recursive: true, force: true })
}
process.on('exit', cleanupSync)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    log(`\n${signal}: stopping the server`)
    cleanupSync()
    void (dropDatabase?.() ?? Promise.resolve()).finally(() => process.exit(130))
  })
}

async function main (): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' }
  delete env.DATABASE_URL
  delete env.REDIS_URL
  delete env.DB
  let database: string
  if (config.databaseUrl !== undefined) {
    const fresh = await freshPostgres(config.databaseUrl)
    dropDatabase = fresh.drop
    env.DATABASE_URL = fresh.url
    database = `PostgreSQL ${shown(fresh.url)} (fresh, dropped afterwards)`
  } else {
    tempDir = mkdtempSync(join(tmpdir(), 'wsrest-soak-'))
    env.DB = join(tempDir, 'soak.sqlite3')
    database = `SQLite ${env.DB} (fresh)`
  }
  if (config.redisUrl !== undefined) {
    env.REDIS_URL = config.redisUrl
    // A prefix of its own: other processes on this Redis (tests, another soak) never share its channels.
    env.REDIS_PREFIX = `wsrest-soak:${randomBytes(6).toString('hex')}:`
  }
  const broadcast = config.redisUrl === undefined ? 'in-process' : `Redis ${shown(config.redisUrl)} (prefix ${env.REDIS_PREFIX})`

  const loadAtStart = Number(loadavg()[0]!.toFixed(2))
  log(`soak: ${config.connections} connections, ${config.warmupS} s warm-up + ${config.durationS} s, seed ${config.seed}; load average ${loadAtStart}`)
  log(`      database ${database}; broadcast ${broadcast}`)
  const srv = server = await startExample(env)
  log(`      example server pid ${srv.pid} on ${srv.url}`)
  let serverGone = false
  let stopping = false
  void srv.exited.then(({ code, signal }) => {
    serverGone = true
    if (running || !stopping) fail('server-exit', `the example server exited during the run (${code ?? signal})`)
  })

  let peakRss = 0
  const sampleRss = (): number | undefined => {
    const mem = memoryOf(srv.pid)
    if (mem !== undefined && mem.rss > peakRss) peakRss = mem.rss
    return mem?.rss
  }
  const rssTimer = setInterval(sampleRss, 250)
  const serverCpuSeconds = (): number | undefined => { try { return processCpuSeconds(srv.pid) } catch { return undefined } }
  sampleRss()

  // Connect.
  const conns: Conn[] = []
  for (let i = 0; i < config.connections; i += CONNECT_BATCH) {
    const n = Math.min(CONNECT_BATCH, config.connections - i)
    conns.push(...await Promise.all(Array.from({ length: n }, async (_, k) => await connect(i + k, `${srv.url}/ws/`))))
  }
  const rssConnected = sampleRss()
  log(`      ${conns.length} connections open; server RSS ${mib(rssConnected)}`)

  // Subscribers: list subscriptions before any row exists, so every change of the run is theirs.
  const subscriberCount = Math.round(config.connections * config.subscriberShare)
  const subscribers = conns.slice(0, subscriberCount)
  const listing = subscribers.filter((_, k) => k % 4 === 0 || k % 4 === 1)
  const filtering = subscribers.filter((_, k) => k % 4 === 2)
  const watching = subscribers.filter((_, k) => k % 4 === 3)
  // --abuse: users for the principals resuming needs (made before any subscription, so they
  // are no event of anyone's), and resumable list subscribers on /ws/jwt/, the thieves'
  // victims, one for every other plain list subscriber (in both halves, so the halves compare).
  const principals = config.abuse ? await makePrincipals(srv.url, conns[0]!, config.abuseIps) : undefined
  const victimConns = principals === undefined
    ? []
    : await Promise.all(Array.from({ length: Math.ceil(listing.length / 2) }, async (_, k) => await connect(conns.length + k, `${srv.url}/ws/jwt/`, principals.victim)))
  await Promise.all([
    ...listing.map(async (conn) => { await subscribeList(conn, false) }),
    ...victimConns.map(async (conn) => { await subscribeList(conn, false, true) }),
    ...filtering.map(async (conn) => { await subscribeList(conn, true) })
  ])

  // Seed rows, then instance subscriptions on other connections' rows (nothing writes them until the load starts).
  const seeding = [...conns]
  await Promise.all(Array.from({ length: SEED_CONCURRENCY }, async () => {
    for (let conn = seeding.shift(); conn !== undefined; conn = seeding.shift()) {
      for (let k = 0; k < SEED_ROWS; k++) await doCreate(conn)
    }
  }))
  await Promise.all(watching.map(async (conn) => {
    const others = [...rows.values()].filter((row) => row.owner !== conn)
    const chosen = new Set<Row>()
    while (chosen.size < Math.min(WATCHED_ROWS, others.length)) chosen.add(pick(others))
    for (const row of chosen) await subscribeInstance(conn, row, false)
  }))
  log(`      ${listing.length} list subscribers, ${filtering.length} filtered list subscribers (email contains "${FILTER_DOMAIN}"), ` +
    `${watching.length} watching ${WATCHED_ROWS} rows each; ${rows.size} seed rows`)
  if (errorCount > 0) log('      errors during setup: the run goes on, but will fail')

  // The load: warm-up, then the measured window.
  running = true
  const loops = Promise.all(conns.map(loop))
  const startedAt = performance.now()
  let last = { at: startedAt, replies: 0, delivered: 0 }
  const replies = (): number => { let n = 0; for (const v of totals.actions.values()) n += v; return n }
  const progress = setInterval(() => {
    const now = performance.now()
    const r = replies()
    log(`  t=${((now - startedAt) / 1000).toFixed(0).padStart(3)} s  ${((r - last.replies) * 1000 / (now - last.at)).toFixed(0).padStart(6)} actions/s  ` +
      `${((totals.delivered - last.delivered) * 1000 / (now - last.at)).toFixed(0).padStart(6)} events/s  rows ${rows.size}  ` +
      `RSS ${mib(sampleRss())}  errors ${errorCount}`)
    last = { at: now, replies: r, delivered: totals.delivered }
  }, PROGRESS_EVERY_MS)

  await new Promise((resolve) => setTimeout(resolve, config.warmupS * 1000))
  const rssStart = sampleRss()
  const cpuStart = serverCpuSeconds()
  const ownCpuStart = process.cpuUsage()
  const changesStart = totals.changes
  const deliveredStart = totals.delivered
  measuring = true
  const windowStart = performance.now()
  log(`      warmed up: server RSS ${mib(rssStart)}; measuring ${config.durationS} s`)
  let abuseReport: AbuseReport | undefined
  let abuseRss: { start?: number, peak: number, end?: number } | undefined
  let abuseCpu: { alone?: number, abuse?: number } | undefined
  let stopAbuse: (() => Promise<AbuseReport>) | undefined
  if (!config.abuse) {
    await new Promise((resolve) => setTimeout(resolve, config.durationS * 1000))
  } else {
    // Two halves of one window, same load and same server: alone, then beside the abusers.
    const half = config.durationS * 500
    await new Promise((resolve) => setTimeout(resolve, half))
    const cpuHalf = serverCpuSeconds()
    const halfAt = performance.now()
    phase = 'abuse'
    const victims: Victim[] = allSubs.filter((sub) => sub.resumeKey !== undefined && sub.active).map((sub) => ({ requestId: sub.requestId, key: sub.resumeKey! }))
    const peakBefore = peakRss
    peakRss = 0
    abuseRss = { start: sampleRss(), peak: 0 }
    log(`      abuse starts: ${victims.length} resumable victims (/ws/jwt/), churn as ${config.abuseIps} users from as many addresses; server RSS ${mib(abuseRss.start)}`)
    const abuse = startAbuse({ url: srv.url, victims, churnIps: config.abuseIps, tokens: principals!, scenarios: config.abuseScenarios, timeoutMs: config.timeoutMs, fail })
    await new Promise((resolve) => setTimeout(resolve, half))
    abuseRss.end = sampleRss()
    abuseRss.peak = peakRss
    peakRss = Math.max(peakRss, peakBefore)
    const cpuAbuseEnd = serverCpuSeconds()
    abuseCpu = {
      alone: cpuStart === undefined || cpuHalf === undefined ? undefined : Number(((cpuHalf - cpuStart) / ((halfAt - windowStart) / 1000)).toFixed(2)),
      abuse: cpuHalf === undefined || cpuAbuseEnd === undefined ? undefined : Number(((cpuAbuseEnd - cpuHalf) / ((performance.now() - halfAt) / 1000)).toFixed(2))
    }
    stopAbuse = abuse.stop
  }
  measuring = false
  running = false
  const windowS = (performance.now() - windowStart) / 1000
  const cpuEnd = serverCpuSeconds() ?? cpuStart
  const ownCpu = process.cpuUsage(ownCpuStart)
  const windowChanges = totals.changes - changesStart
  const windowDelivered = totals.delivered - deliveredStart
  clearInterval(progress)
  if (stopAbuse !== undefined) {
    // The abusers finish their request in flight and close their sockets, after the window.
    abuseReport = await stopAbuse()
    log(`      abuse stopped: ${abuseReport.requests} abusive replies, ${abuseReport.socketsOpened} sockets; server RSS ${mib(sampleRss())}`)
  }

  // Drain: each loop ends with its request in flight answered (or timed out), then the events still due.
  await loops
  const quietStart = performance.now()
  let settled = await until(allBalanced, config.quietMs)
  // A last change as a barrier: a socket gets its events in commit order, so once every list
  // subscriber has this one, no older event (a late duplicate, say) is still on its way to them.
  if (settled && !serverGone) {
    const barrier = conns.find((conn) => !conn.broken)
    if (barrier !== undefined) {
      await doCreate(barrier)
      settled = await until(allBalanced, config.quietMs)
    }
  }
  const quietS = (performance.now() - quietStart) / 1000
  const rssEnd = sampleRss()
  const hwm = memoryOf(srv.pid)?.hwm
  clearInterval(rssTimer)
  const { missing, duplicated, samples: eventSamples } = tally()
  if (!settled) log(`      events still due after ${config.quietMs / 1000} s`)
  if (missing > 0) fail('events', `${missing} events missing`)
  if (duplicated > 0) fail('events', `${duplicated} events duplicated or unexpected`)
  for (const sample of eventSamples.slice(0, 5)) log(`      ${sample}`)

  // Close politely, then stop the server the way an operator would, and expect a clean exit.
  stopping = true
  await Promise.all([...conns, ...victimConns].map(async (conn) => {
    conn.closing = true
    if (conn.ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { conn.ws.terminate(); resolve() }, 5_000)
      conn.ws.once('close', () => { clearTimeout(timer); resolve() })
      conn.ws.close(1000)
    })
  }))
  // Events that arrived until the sockets closed were still counted: look once more.
  const final = tally()
  if (final.duplicated > duplicated) fail('events', `${final.duplicated - duplicated} more events arrived after the quiet period`)
  let shutdown = 'already gone'
  if (!serverGone) {
    srv.child.kill('SIGTERM')
    const result = await Promise.race([srv.exited, new Promise<undefined>((resolve) => setTimeout(resolve, 15_000))])
    if (result === undefined) {
      fail('shutdown', 'the example server did not exit within 15 s of SIGTERM')
      srv.child.kill('SIGKILL')
      shutdown = 'killed'
    } else {
      shutdown = `exit ${result.code ?? result.signal}`
      if (result.code !== 0) fail('shutdown', `the example server exited with ${result.code ?? result.signal} on SIGTERM`)
    }
  }
  if (dropDatabase !== undefined) await dropDatabase().catch((err: Error) => { log(`could not drop the soak database: ${err.message}`) })

  const lat = percentiles(latencies)
  const actionsPerSecond = measuredReplies / windowS
  const summary = {
    pass: errorCount === 0,
    errors: errorCount,
    errorKinds: Object.fromEntries(errorKinds),
    errorSamples,
    seed: config.seed,
    connections: config.connections,
    database: config.databaseUrl === undefined ? 'sqlite' : 'postgresql',
    broadcast: config.redisUrl === undefined ? 'memory' : 'redis',
    warmupS: config.warmupS,
    durationS: Number(windowS.toFixed(1)),
    actions: Object.fromEntries([...totals.actions].sort(([a], [b]) => a.localeCompare(b))),
    actionsPerSecond: Math.round(actionsPerSecond),
    expectedErrorReplies: totals.expectedErrors,
    slowReplies: Object.fromEntries(slowByKind),
    latencyMs: { p50: round(lat.p50), p90: round(lat.p90), p99: round(lat.p99), max: round(lat.max) },
    latencyMsByKind: Object.fromEntries([...latenciesByKind].sort(([a], [b]) => a.localeCompare(b)).map(([kind, values]) => {
      const l = percentiles(values)
      return [kind, { n: values.length, p50: round(l.p50), p99: round(l.p99), max: round(l.max) }]
    })),
    serverCpu: cpuStart === undefined || cpuEnd === undefined ? null : Number(((cpuEnd - cpuStart) / windowS).toFixed(2)),
    /** This process's CPU: well under one core, so the generator is not what limits the run. */
    generatorCpu: Number(((ownCpu.user + ownCpu.system) / 1e6 / windowS).toFixed(2)),
    rssKiB: { connected: rssConnected, start: rssStart, end: rssEnd, peak: peakRss, highWaterMark: hwm },
    subscriptions: { list: listing.length, filtered: filtering.length, instanceWatchers: watching.length, total: allSubs.length },
    events: {
      changesCommitted: totals.changes,
      expected: totals.expected,
      delivered: totals.delivered,
      missing: final.missing,
      duplicated: final.duplicated,
      changesPerSecond: Math.round(windowChanges / windowS),
      deliveredPerSecond: Math.round(windowDelivered / windowS),
      quietS: Number(quietS.toFixed(2))
    },
    serverLog: Object.fromEntries([...srv.levels].map(([level, n]) => [String(level), n])),
    serverLogSamples: srv.samples,
    shutdown,
    /** The machine's 1-minute load average at the start and the end: other work on it slows the server down. */
    loadAverage: [loadAtStart, Number(loadavg()[0]!.toFixed(2))],
    /** --abuse: the normal clients' latency alone and beside the abusers, and what the abusers got. */
    abuse: abuseReport === undefined
      ? undefined
      : {
          latencyMsByPhase: Object.fromEntries([...latenciesByPhase].map(([name, byKind]) => [name, Object.fromEntries([...byKind].sort(([a], [b]) => a.localeCompare(b)).map(([kind, values]) => {
            const l = percentiles(values)
            return [kind, { n: values.length, p50: round(l.p50), p99: round(l.p99), max: round(l.max) }]
          }))])),
          serverCpu: abuseCpu,
          rssKiB: abuseRss,
          scenarios: [...config.abuseScenarios],
          stolen,
          ...abuseReport,
          latencyMs: Object.fromEntries(Object.entries(abuseReport.latencyMs).map(([key, values]) => {
            const l = percentiles(values)
            return [key, { n: values.length, p50: round(l.p50), p99: round(l.p99), max: round(l.max) }]
          }))
        }
  }

  const out = (line: string): void => { process.stdout.write(line + '\n') }
  out('')
  out(`soak ${summary.pass ? 'PASSED' : 'FAILED'}: ${errorCount} errors${errorCount > 0 ? ' (' + [...errorKinds].map(([k, n]) => `${k} ${n}`).join(', ') + ')' : ''}`)
  out(`  load        ${config.connections} connections, ${summary.durationS} s measured after ${config.warmupS} s warm-up, seed ${config.seed}; ${summary.database}, ${summary.broadcast} layer`)
  out(`  actions     ${summary.actionsPerSecond}/s (${measuredReplies} in the window), p50 ${summary.latencyMs.p50} ms, p99 ${summary.latencyMs.p99} ms, max ${summary.latencyMs.max} ms; server CPU ${summary.serverCpu} cores, generator CPU ${summary.generatorCpu} cores`)
  out(`              ${[...totals.actions].map(([k, n]) => `${k} ${n}`).join(', ')}; expected error replies ${totals.expectedErrors}`)
  out(`  latency     ${Object.entries(summary.latencyMsByKind).map(([k, l]) => `${k} ${l.p50}/${l.p99}/${l.max}`).join(', ')} (p50/p99/max ms)`)
  if (slowByKind.size > 0) out(`  slow        replies over ${SLOW_MS / 1000} s (not errors): ${[...slowByKind].map(([k, n]) => `${k} ${n}`).join(', ')}`)
  out(`  RSS         connected ${mib(rssConnected)}, start ${mib(rssStart)}, end ${mib(rssEnd)} (${rssEnd !== undefined && rssStart !== undefined ? `${rssEnd >= rssStart ? '+' : ''}${mib(rssEnd - rssStart)}` : '?'}), peak ${mib(peakRss)} (kernel high-water mark ${mib(hwm)})`)
  out(`  events      ${totals.changes} changes committed → ${totals.expected} expected, ${totals.delivered} delivered, ${final.missing} missing, ${final.duplicated} duplicated/unexpected ` +
    `(${summary.events.deliveredPerSecond}/s; all in ${summary.events.quietS} s after the load)`)
  out(`  subscribers ${listing.length} list, ${filtering.length} filtered list, ${watching.length} × ${WATCHED_ROWS} rows, ${allSubs.length} subscriptions in all (with the connections' own)`)
  out(`  server log  ${[...srv.levels].map(([level, n]) => `level ${level}: ${n}`).join(', ')}; shutdown ${shutdown}; machine load average ${summary.loadAverage.join(' → ')}`)
  if (summary.abuse !== undefined) {
    const a = summary.abuse
    for (const [name, byKind] of Object.entries(a.latencyMsByPhase)) {
      out(`  ${name === 'alone' ? 'alone      ' : 'with abuse '} ${Object.entries(byKind).map(([k, l]) => `${k} ${l.p50}/${l.p99} (n ${l.n})`).join(', ')} (p50/p99 ms)`)
    }
    out(`  abuse       ${a.requests} abusive replies on ${a.socketsOpened} sockets; 500s ${a.status500}, unexpected closes ${a.unexpectedCloses}, stolen ${a.stolen}; ` +
      `theft attempts ${a.theftAttempts} (${a.theftRefused} answered as a stranger: anonymous no resume frame, another user's claim 410, first subscribe a fresh 201); parked made ${a.parkedMade} by ${config.abuseIps} users; ` +
      `hoarding: ${a.hoardAccepted.min}–${a.hoardAccepted.max} filters of ${a.hoardFilterChars} chars before the 429; server CPU ${a.serverCpu?.alone} → ${a.serverCpu?.abuse} cores`)
    out(`              ${Object.entries(a.statuses).sort(([x], [y]) => x.localeCompare(y)).map(([k, n]) => `${k}: ${n}`).join(', ')}`)
    out(`  abuser lat. ${Object.entries(a.latencyMs).sort(([x], [y]) => x.localeCompare(y)).map(([k, l]) => `${k} ${l.p50}/${l.p99}`).join(', ')} (p50/p99 ms)`)
    if (a.budgetChecks.length > 0) out(`  parked      resume after the churn (410 = evicted by the per-client budget): ${a.budgetChecks.join(', ')}`)
    out(`  abuse RSS   at its start ${mib(a.rssKiB?.start)}, peak ${mib(a.rssKiB?.peak)}, at its end ${mib(a.rssKiB?.end)}`)
  }
  for (const sample of errorSamples) out(`  ! ${sample}`)
  out(JSON.stringify(summary))
  return summary.pass ? 0 : 1
}

function round (ms: number): number {
  return Number.isFinite(ms) ? Number(ms.toFixed(1)) : ms
}

main().then((code) => {
  cleanupSync()
  process.exit(code)
}, (err: unknown) => {
  log(`soak failed to run: ${(err as Error).stack ?? String(err)}`)
  cleanupSync()
  void (dropDatabase?.() ?? Promise.resolve()).catch(() => {}).finally(() => process.exit(1))
})
