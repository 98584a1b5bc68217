/**
 * `npm run bench`: the plugin against a hand-written baseline, on this machine.
 *
 * Layout: the servers run as child processes pinned to core 0; this process (the load
 * generator) pins itself to core 1. PostgreSQL and Redis, when used, are not pinned.
 *
 * Parts (all by default; `--parts ops,overhead,fanout,memory` picks some):
 * - ops: for each database (`--db`), for each op, the baseline then the plugin, same
 *   parameters, each on freshly reseeded rows → req/s, ratio, p50/p99, server CPU µs per
 *   request, errors. Databases (databases.ts): `memory` (in-memory SQLite: the framework's
 *   own cost), `file` (a durable SQLite file, SQLite's defaults: rollback journal,
 *   synchronous FULL; a fresh temp directory per server), `postgres` (PostgreSQL at
 *   `--pg-url`, a database per server, `<name>_baseline` / `<name>_plugin`, created when
 *   missing). Ops: retrieve, list, nested, create, patch, update, delete, mixed, and the
 *   routes with hooks: `create_hooked` (a sign-up `{username, email, password1}` whose
 *   `prepareCreate` hook stores a SHA-256 hash of password1: the hook, not crypto),
 *   `create_scrypt` (the same with scrypt, N = 16384: limited by hashing — a one-core
 *   scrypt ceiling measured here is printed beside it), `list_scoped` (a paginated list
 *   whose `getQueryset` scopes each connection to the owner in its upgrade URL, `?owner=N`).
 *   After each sign-up run the stored hashes of the latest sign-ups are checked too.
 *   `nested` (a list of 20 docs, each with its owner and labels as objects) is also
 *   compared with the plugin's flat `list` on in-memory SQLite: what serializing relations
 *   costs. With `--ops nested` alone the plugin's flat list is run for that comparison.
 * - overhead: server CPU per request of a no-database action through the plugin, minus
 *   that of a bare @fastify/websocket echo handler, as a share of the plugin's retrieve
 *   (in-memory SQLite). The echo is measured once per run and is also the yardstick of the
 *   retrieve/list µs target (plugin µs/req ≤ 2× the echo's, every database).
 * - fanout (in-memory SQLite): one change to S subscribed sockets on one instance
 *   (`--fanout-sockets`, default 50,000), and through Redis across two instances
 *   (`--fanout-redis-sockets`, default 10,000: subscribers on A, the patch through B). The
 *   subscribers connect from several loopback source addresses (127.0.0.2, …), the servers
 *   lift the plugin's connection and per-client subscription caps, and every process starts
 *   with its open-file limit raised as far as the hard limit allows (limits.ts; 50,000
 *   sockets need a hard limit above ~51,000: `ulimit -Hn`, or `docker run --ulimit
 *   nofile=200000`; a layer that cannot fit is reported as a problem and skipped). The
 *   server's memory before and with all sockets subscribed is reported.
 * - memory: idle memory per open socket, plugin and baseline.
 *
 * Durations: a full run measures 10 s after a 3 s warm-up per op on `memory`, and 5 s
 * after 2 s on `file` and `postgres` (each op × 2 servers × 3 databases: the full run stays
 * under ~20 minutes when the machine is quiet); `--duration` / `--warmup` set all of them.
 * `--quick`: 3 s after 1 s, `--db memory` unless given, 2,000 fan-out sockets per layer.
 *
 * Targets (PASS/FAIL, informational): throughput ratios per op (in-memory SQLite, as
 * before); `create_hooked` ≥ 5× on `file`, ≥ 3× on `memory`; on `postgres` every op but
 * `create_scrypt` ≥ 3×; retrieve/list plugin µs/req ≤ 2× the bare echo's; plugin p99 ≤
 * baseline p99 everywhere; fan-out p99 ≤ 500 ms on one instance, ≤ 150 ms through Redis;
 * idle memory ≤ IDLE_KIB per socket; plugin overhead ≤ 5% of a retrieve.
 *
 * Flags: --quick, --parts a,b, --db a,b, --pg-url URL (default
 * postgresql://postgres@127.0.0.1:5432/wsrest_bench), --ops a,b, --connections N, --depth N,
 * --duration S, --warmup S, --rows N, --fanout-sockets N, --fanout-redis-sockets N,
 * --fanout-rounds N, --idle-sockets N, --delete-rows N, --redis-url URL, --quiet-wait S
 * (wait at most S seconds for other processes to leave the cores alone before each
 * measurement; default 120, quick 5; 600 s in all, quick 10), --json FILE (every result,
 * the comparison table and the verdicts).
 * Exit status 1 when any request or event was wrong or missing (target FAILs alone do not).
 */
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { performance } from 'node:perf_hooks'
import { DATABASES, parseDatabases, serverDb, tmpFileSystem, type DbKind, type ServerDb } from './databases.js'
import { scryptHash } from './entity-hooked.js'
import { runFanout, type FanoutResult } from './fanout.js'
import { coreTimes, coreUse, OP_PATH, OPS, runLoad, sleep, type LoadResult, type Op } from './load.js'
import { filesFor, openFileLimits, withOpenFiles } from './limits.js'
import { runIdleMemory, type IdleMemoryResult } from './memory.js'
import { pgProblem, shownUrl } from './pg.js'
import { GENERATOR_CORE, SERVER_CORE, startServer, type BenchServer, type ServerKind, type StartOptions } from './servers.js'
import { parseFlags } from './flags.js'

// ---------------------------------------------------------------------------- options

const KNOWN = ['quick', 'quiet-wait', 'parts', 'db', 'pg-url', 'ops', 'connections', 'depth', 'duration', 'warmup', 'rows', 'fanout-sockets', 'fanout-redis-sockets', 'fanout-rounds', 'idle-sockets', 'delete-rows', 'redis-url', 'json']
const flags = parseFlags(process.argv.slice(2), KNOWN)

const quick = flags.has('quick')
const num = (key: string, full: number, fast: number): number => {
  const value = Number(flags.get(key) ?? (quick ? fast : full))
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${key} must be a number`)
  return value
}
const LOAD_OPS = OPS.filter((op) => op !== 'noop')
const ops = (flags.get('ops')?.split(',') ?? LOAD_OPS) as Op[]
for (const op of ops) if (!LOAD_OPS.includes(op as typeof LOAD_OPS[number])) throw new Error(`--ops: unknown op ${op} (known: ${LOAD_OPS.join(', ')})`)
const PARTS = ['ops', 'overhead', 'fanout', 'memory'] as const
const parts = new Set(flags.get('parts')?.split(',') ?? PARTS)
for (const part of parts) if (!(PARTS as readonly string[]).includes(part)) throw new Error(`--parts: unknown part ${part}`)
const dbs = parseDatabases(flags.get('db') ?? (quick ? 'memory' : DATABASES.join(',')))
if (dbs.length === 0) throw new Error('--db: name at least one database')

const config = {
  quick,
  dbs,
  pgUrl: flags.get('pg-url') ?? process.env.BENCH_PG_URL ?? 'postgresql://postgres@127.0.0.1:5432/wsrest_bench',
  connections: num('connections', 50, 50),
  depth: num('depth', 1, 1),
  warmupS: num('warmup', 3, 1),
  durationS: num('duration', 10, 3),
  /** On the `file` and `postgres` databases, unless --warmup / --duration are given: keeps the full run under ~20 minutes. */
  durableWarmupS: num('warmup', 2, 1),
  durableDurationS: num('duration', 5, 3),
  rows: num('rows', 1000, 1000),
  fanoutSockets: num('fanout-sockets', 50_000, 2_000),
  fanoutRedisSockets: num('fanout-redis-sockets', 10_000, 2_000),
  fanoutRounds: num('fanout-rounds', 3, 2),
  idleSockets: num('idle-sockets', 5_000, 2_000),
  redisUrl: flags.get('redis-url') ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  /** Seconds to wait, before each measurement, for other processes to leave the two cores alone. */
  quietWaitS: num('quiet-wait', 120, 5),
  /** …and at most this many seconds of waiting in all (keeps --quick under two minutes). */
  quietBudgetS: quick ? 10 : 600
}

/** Warm-up and measured seconds of one op run on `db`. */
interface Timing { warmupS: number, durationS: number, deleteRows: number }
function timing (db: DbKind): Timing {
  const durable = db !== 'memory'
  const warmupS = durable ? config.durableWarmupS : config.warmupS
  const durationS = durable ? config.durableDurationS : config.durationS
  // Rows the delete run may delete: far more than any server here deletes in that time.
  const deleteRows = num('delete-rows', Math.ceil(50_000 * (warmupS + durationS)), Math.ceil(50_000 * (warmupS + durationS)))
  return { warmupS, durationS, deleteRows }
}

/** Throughput targets on in-memory SQLite (plugin req/s ÷ baseline req/s). */
const TARGETS: Partial<Record<Op, number>> = { retrieve: 3.5, list: 3.5, create: 2.5, patch: 2.5, update: 2.5, delete: 2.5, create_hooked: 3 }
/** …on the other databases. */
const DB_TARGETS: Record<Exclude<DbKind, 'memory'>, (op: Op) => number | undefined> = {
  file: (op) => op === 'create_hooked' ? 5 : undefined,
  // scrypt's cost is the same for both servers: its ceiling is the hash, not the database.
  postgres: (op) => op === 'create_scrypt' ? undefined : 3
}
/** Retrieve and list: plugin server µs/req at most this many times the bare echo's. */
const ECHO_US_FACTOR = 2
const ECHO_US_OPS: readonly Op[] = ['retrieve', 'list']
const FANOUT_P99_MS: Record<FanoutResult['layer'], number> = { memory: 500, redis: 150 }
const IDLE_KIB = 8
const OVERHEAD_SHARE = 0.05
/** Above this, the generator (one core) may be what limits a run. */
const GENERATOR_BUSY = 0.85
/** Above this, something else running on the benchmark's cores makes a run noisy. */
const OTHER_BUSY = 0.15

const log = (line: string): void => { process.stderr.write(line + '\n') }

// ---------------------------------------------------------------------------- open files

// The fan-out holds up to tens of thousands of sockets in this process: Node cannot raise
// its own open-file limit, so run again through `ulimit -n` (once) when it is too low.
const fanoutFiles = filesFor(Math.max(config.fanoutSockets, config.fanoutRedisSockets))
if (parts.has('fanout') && openFileLimits().soft < fanoutFiles && process.env.BENCH_FILES_RAISED !== '1') {
  const [command, args] = withOpenFiles(process.execPath, [...process.execArgv, ...process.argv.slice(1)])
  const child = spawn(command, args, { stdio: 'inherit', env: { ...process.env, BENCH_FILES_RAISED: '1' } })
  // The child gets the terminal's signals itself; this process only waits for it.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => {})
  const code = await new Promise<number>((resolve) => child.once('exit', (c, signal) => resolve(c ?? (signal === null ? 1 : 130))))
  process.exit(code)
}
// ---------------------------------------------------------------------------- machine

function pinSelf (): string {
  if (cpus().length < 2) return `only ${cpus().length} core: nothing pinned, generator and server share it`
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(GENERATOR_CORE), String(process.pid)], { stdio: 'ignore' })
    return `servers on core 0, generator (this process) on core ${GENERATOR_CORE}`
  } catch (err) {
    return `taskset failed (${(err as Error).message}): nothing pinned`
  }
}

function machine (): Record<string, string> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown'
  const version = (pkg: string): string => {
    try { return (JSON.parse(readFileSync(new URL(`../node_modules/${pkg}/package.json`, import.meta.url), 'utf8')) as { version: string }).version } catch { return '?' }
  }
  let commit = 'unknown'
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib', 'index.ts'], { encoding: 'utf8' }).trim()
    if (dirty !== '') commit += ' + uncommitted changes in lib/ or index.ts'
  } catch {}
  return {
    cpu: `${model} × ${cpus().length}`,
    node: process.version,
    kernel: release(),
    commit,
    databases: config.dbs.map((db) => db === 'file' ? `file (SQLite file in ${tmpdir()}, ${tmpFileSystem()}; rollback journal, synchronous FULL)` : db === 'postgres' ? `postgres (${shownUrl(config.pgUrl)}_<server>)` : 'memory (in-memory SQLite)').join(', '),
    versions: `fastify ${version('fastify')}, @fastify/websocket ${version('@fastify/websocket')}, @mikro-orm/core ${version('@mikro-orm/core')}, ${['sqlite3', 'better-sqlite3', 'pg'].filter((p) => version(p) !== '?').map((p) => `${p} ${version(p)}`).join(', ')}`,
    pinning: pinSelf(),
    'load avg': `${loadavg().map((v) => v.toFixed(2)).join(' ')} (1/5/15 min) at start; each run below waits for quiet cores and reports what else ran ("other")`
  }
}

// ---------------------------------------------------------------------------- formatting

const fmt = (n: number | undefined, digits = 0): string => n === undefined || Number.isNaN(n) ? '—' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ms = (n: number): string => n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)
const verdict = (pass: boolean): string => pass ? 'PASS' : 'FAIL'

function table (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(' | ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n')
}

// ---------------------------------------------------------------------------- parts

interface OpRow {
  db: DbKind
  op: Op
  baseline?: LoadResult
  plugin?: LoadResult
  failure?: string
  /** Sign-ups: the stored password hashes checked after each server's run. */
  verified?: Partial<Record<ServerKind, { users: number, checked: number, bad: string[] }>>
}

let wrong = 0
const problems: string[] = []
function problem (text: string): void {
  wrong++
  problems.push(text)
  log(`!!! ${text}`)
}

/** A server that is still up (restarted with the same options if a run killed it). */
async function alive (server: BenchServer, options: StartOptions): Promise<BenchServer> {
  try {
    process.kill(server.pid, 0)
    return server
  } catch {
    problem(`the ${server.kind} server died; restarting it`)
    return await startServer(server.kind, options)
  }
}

/**
 * What else ran on the two cores during a run (fractions of a core): the server core's use
 * minus the server's, the generator core's minus the generator's. It includes some kernel
 * time (softirq) of the run's own traffic, so a few percent is normal.
 */
function otherLoad (r: LoadResult): [number, number] {
  const server = r.cores[SERVER_CORE]
  const generator = r.cores[GENERATOR_CORE]
  return [
    Math.max(0, (server?.busy ?? NaN) + (server?.steal ?? 0) - (r.serverCpu ?? NaN)),
    Math.max(0, (generator?.busy ?? NaN) + (generator?.steal ?? 0) - r.generatorCpu)
  ]
}
const otherText = (r: LoadResult): string => otherLoad(r).map((v) => `${fmt(v * 100)}%`).join(' / ')

/**
 * Wait until neither core is busier than QUIET_BUSY over 0.3 s (another test suite
 * on a shared machine would distort the next measurement), at most `config.quietWaitS`.
 */
const QUIET_BUSY = 0.1
let quietWaited = 0
async function waitForQuiet (what: string): Promise<void> {
  const deadline = performance.now() + Math.min(config.quietWaitS, Math.max(0, config.quietBudgetS - quietWaited)) * 1000
  let announced = false
  for (;;) {
    const before = coreTimes()
    await sleep(300)
    const use = coreUse(before, coreTimes())
    const busiest = Math.max(...use.map((u) => u.busy + u.steal))
    if (busiest <= QUIET_BUSY) {
      if (announced) log(`  quiet again, going on with ${what}`)
      return
    }
    if (performance.now() >= deadline) {
      log(`  note: cores still busy (${use.map((u) => fmt((u.busy + u.steal) * 100) + '%').join(' / ')}) after waiting ${config.quietWaitS} s; measuring ${what} anyway`)
      return
    }
    if (!announced) log(`  waiting for other processes to leave the cores alone (${use.map((u) => fmt((u.busy + u.steal) * 100) + '%').join(' / ')} busy) before ${what}…`)
    announced = true
    quietWaited += 0.3
  }
}

async function load (server: BenchServer, db: DbKind, op: Op, path = OP_PATH[op] ?? '/ws/'): Promise<LoadResult> {
  const { warmupS, durationS, deleteRows } = timing(db)
  await waitForQuiet(`${db} ${server.kind} ${op}`)
  const seed = await server.reset(config.rows, op === 'delete' ? deleteRows : 0)
  const result = await runLoad({
    url: server.url(path), op, connections: config.connections, depth: config.depth,
    warmupS, durationS, seed, serverPid: server.pid
  })
  log(`  ${db.padEnd(8)} ${server.kind.padEnd(8)} ${op.padEnd(13)} ${fmt(result.rps).padStart(7)} req/s  p50 ${ms(result.latencyMs.p50)} ms  p99 ${ms(result.latencyMs.p99)} ms  ` +
    `server ${fmt(result.serverCpuUsPerRequest)} µs/req (${fmt((result.serverCpu ?? NaN) * 100)}% CPU)  generator ${fmt(result.generatorCpu * 100)}% CPU  errors ${result.errors}`)
  if (result.errors > 0) problem(`${db} ${server.kind} ${op}: ${result.errors} errors, e.g. ${result.errorSamples.slice(0, 3).join(' | ')}`)
  if (result.generatorCpu > GENERATOR_BUSY) log(`  note: the generator was ${fmt(result.generatorCpu * 100)}% busy on ${db} ${server.kind} ${op}: it may have limited this run`)
  const other = otherLoad(result)
  if (other.some((v) => v > OTHER_BUSY)) log(`  note: something else used ${otherText(result)} of cores ${SERVER_CORE} / ${GENERATOR_CORE} during ${db} ${server.kind} ${op}: this run is noisy`)
  return result
}

/** After a sign-up run: the latest sign-ups' stored hashes must be those of what they sent (the reply cannot show it). */
async function verifySignUps (server: BenchServer, db: DbKind, op: Op, result: LoadResult): Promise<{ users: number, checked: number, bad: string[] }> {
  const hash = op === 'create_scrypt' ? 'scrypt' : 'sha256'
  const verified = await server.verify(hash, op === 'create_scrypt' ? 50 : 2_000)
  if (verified.bad.length > 0) problem(`${db} ${server.kind} ${op}: stored password not the ${hash} of what was sent for ${verified.bad.join(', ')}`)
  else if (verified.checked === 0 || verified.users < result.requests) problem(`${db} ${server.kind} ${op}: ${verified.users} users stored after ${result.requests} sign-ups answered`)
  return verified
}

/**
 * The CPU time one scrypt (the create_scrypt hash) takes here: the ceiling of a one-core
 * server's sign-ups. CPU time of the whole process (libuv's pool threads included), not
 * wall time, so that other load on a shared machine does not inflate it.
 */
async function scryptCeiling (): Promise<{ msPerHash: number, ceilingRps: number }> {
  await scryptHash('warm-up')
  const n = 10
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < n; i++) await scryptHash(`password ${i}`)
  const cpu = process.cpuUsage(cpu0)
  const msPerHash = (cpu.user + cpu.system) / 1000 / n
  return { msPerHash, ceilingRps: 1000 / msPerHash }
}

interface Overhead { echo: LoadResult, noop: LoadResult, retrieveUs: number, overheadUs: number, share: number }

/** One server's nested list against its flat list, in the same run. */
interface NestedCost {
  flat: LoadResult
  nested: LoadResult
  /** Flat req/s ÷ nested req/s: how many flat lists one nested list costs in throughput. */
  rpsRatio: number
  /** Nested server µs/req ÷ flat server µs/req. */
  cpuRatio: number
}
interface NestedVsFlat {
  plugin: NestedCost
  /** The same for the baseline, when the ops measured both its lists. */
  baseline?: NestedCost
  /** True when the plugin's flat list was run for this comparison only (`--ops` without `list`). */
  flatRunForThis: boolean
}
const nestedCost = (flat: LoadResult, nested: LoadResult): NestedCost => ({
  flat, nested, rpsRatio: flat.rps / nested.rps, cpuRatio: (nested.serverCpuUsPerRequest ?? NaN) / (flat.serverCpuUsPerRequest ?? NaN)
})

// ---------------------------------------------------------------------------- main

/** One row of the comparison table: a (database, op) with both servers' numbers and its targets. */
interface Comparison {
  db: DbKind
  op: Op
  baseline: { rps: number, p50: number, p99: number, us?: number, errors: number }
  plugin: { rps: number, p50: number, p99: number, us?: number, errors: number }
  ratio: number
  usRatio: number
  throughputTarget?: number
  /** Retrieve/list: the plugin's µs/req bound (ECHO_US_FACTOR × the echo's). */
  usTarget?: number
  checks: Verdict[]
  pass: boolean
}
interface Verdict { check: string, target: string, value: string, pass: boolean }

const started = performance.now()
const info = machine()
const results: {
  machine: Record<string, string>
  config: typeof config & { ops: Op[], timings: Record<string, Timing> }
  ops: OpRow[]
  comparison: Comparison[]
  /** The bare echo (baseline /ws/echo/), measured once: the overhead part and the µs targets use it. */
  echo?: LoadResult
  scrypt?: { msPerHash: number, ceilingRps: number }
  overhead?: Overhead
  nestedVsFlat?: NestedVsFlat
  fanout: FanoutResult[]
  memory: IdleMemoryResult[]
  verdicts: Verdict[]
  wrong: number
  problems: string[]
  seconds: number
} = {
  machine: info,
  config: { ...config, pgUrl: shownUrl(config.pgUrl), ops, timings: Object.fromEntries(config.dbs.map((db) => [db, timing(db)])) },
  ops: [], comparison: [], fanout: [], memory: [], verdicts: [], wrong: 0, problems, seconds: 0
}

const timingText = (db: DbKind): string => { const t = timing(db); return `warm-up ${t.warmupS} s, measured ${t.durationS} s` }
const header = [
  `fastify-ws-rest benchmark${quick ? ' (--quick)' : ''}`,
  ...Object.entries(info).map(([k, v]) => `${k.padEnd(9)} ${v}`),
  `load      ${config.connections} connections × ${config.depth} in flight, ${config.rows} rows; ` +
    `${[...new Set(config.dbs.map((db) => db === 'memory' ? 'memory' : 'file/postgres'))].map((group) => `${group}: ${timingText(group === 'memory' ? 'memory' : 'file')}`).join('; ')}; ` +
    'list = first page of 20; nested = list of 20 docs, each with its owner {id, name} and 2–3 labels [{id, name}]; ' +
    'list_scoped = first page of 20 of the connection\'s owner (10 owners); create_hooked / create_scrypt = sign-up, password hashed in prepareCreate'
].join('\n')
log(header + '\n')

const verdicts = results.verdicts
const runOps = parts.has('ops')
// The overhead part runs on in-memory SQLite, with or without the ops there.
const opDbs: DbKind[] = runOps ? [...config.dbs] : []
if (parts.has('overhead') && !opDbs.includes('memory')) opDbs.push('memory')
const needEcho = parts.has('overhead') || (runOps && ops.some((op) => ECHO_US_OPS.includes(op)))

if (runOps && ops.includes('create_scrypt')) {
  results.scrypt = await scryptCeiling()
  log(`scrypt (N = 16384, r = 8, p = 1, 32 bytes): ${results.scrypt.msPerHash.toFixed(1)} ms of CPU per hash → at most ${fmt(results.scrypt.ceilingRps)} sign-ups/s on the servers' one core`)
}

for (const db of opDbs) {
  if (db === 'postgres') {
    const down = await pgProblem(config.pgUrl)
    if (down !== undefined) {
      problem(`postgres: PostgreSQL at ${shownUrl(config.pgUrl)} is not available (${down}); its ops are not run`)
      for (const op of ops) results.ops.push({ db, op, failure: 'PostgreSQL not available' })
      continue
    }
  }
  log(`database: ${db} (${timingText(db)})`)
  const dbOf: Partial<Record<ServerKind, ServerDb>> = {}
  const optionsOf = (kind: ServerKind): StartOptions => {
    dbOf[kind] ??= serverDb(db, kind, config.pgUrl)
    return { env: { BENCH_DB: dbOf[kind].benchDb } }
  }
  let baseline: BenchServer | undefined
  let plugin: BenchServer | undefined
  try {
    baseline = await startServer('baseline', optionsOf('baseline'))
    plugin = await startServer('plugin', optionsOf('plugin'))
    // A fresh server's first seconds run cold code: warm both up (unmeasured) before any op.
    log('warm-up (mixed load on each server, not measured)')
    for (const server of [baseline, plugin]) {
      const warm = await runLoad({
        url: server.url(), op: 'mixed', connections: config.connections, depth: config.depth,
        warmupS: 0, durationS: Math.max(2, timing(db).warmupS), seed: await server.reset(config.rows)
      })
      if (warm.errors > 0) problem(`${db} ${server.kind} warm-up: ${warm.errors} errors, e.g. ${warm.errorSamples.slice(0, 3).join(' | ')}`)
    }
    if (needEcho && results.echo === undefined) {
      // No database in it: measured once, on whichever database comes first.
      log('bare echo (baseline /ws/echo/, no database): the yardstick of the overhead and of the retrieve/list µs targets')
      try {
        results.echo = await load(baseline, db, 'noop', '/ws/echo/')
      } catch (err) {
        problem(`echo: ${(err as Error).message}`)
      }
    }
    if (runOps && config.dbs.includes(db)) {
      log(`ops on ${db}`)
      for (const op of ops) {
        const row: OpRow = { db, op }
        try {
          baseline = await alive(baseline, optionsOf('baseline'))
          row.baseline = await load(baseline, db, op)
          if (op === 'create_hooked' || op === 'create_scrypt') (row.verified ??= {}).baseline = await verifySignUps(baseline, db, op, row.baseline)
          plugin = await alive(plugin, optionsOf('plugin'))
          row.plugin = await load(plugin, db, op)
          if (op === 'create_hooked' || op === 'create_scrypt') (row.verified ??= {}).plugin = await verifySignUps(plugin, db, op, row.plugin)
        } catch (err) {
          row.failure = (err as Error).message
          problem(`${db} ${op}: ${row.failure}`)
        }
        results.ops.push(row)
      }
      const nestedRow = db === 'memory' ? results.ops.find((r) => r.db === db && r.op === 'nested') : undefined
      if (nestedRow?.plugin !== undefined) {
        try {
          const listRow = results.ops.find((r) => r.db === db && r.op === 'list')
          let flat = listRow?.plugin
          if (flat === undefined) {
            plugin = await alive(plugin, optionsOf('plugin'))
            flat = await load(plugin, db, 'list')
          }
          results.nestedVsFlat = {
            plugin: nestedCost(flat, nestedRow.plugin),
            ...(listRow?.baseline !== undefined && nestedRow.baseline !== undefined ? { baseline: nestedCost(listRow.baseline, nestedRow.baseline) } : {}),
            flatRunForThis: listRow?.plugin === undefined
          }
        } catch (err) {
          problem(`nested vs flat list: ${(err as Error).message}`)
        }
      }
    }
    if (db === 'memory' && parts.has('overhead') && results.echo !== undefined) {
      log('overhead (server CPU per request)')
      try {
        plugin = await alive(plugin, optionsOf('plugin'))
        const noop = await load(plugin, db, 'noop', '/ws/noop/')
        const retrieve = results.ops.find((r) => r.db === db && r.op === 'retrieve')?.plugin ?? await load(plugin, db, 'retrieve')
        const retrieveUs = retrieve.serverCpuUsPerRequest ?? NaN
        const overheadUs = (noop.serverCpuUsPerRequest ?? NaN) - (results.echo.serverCpuUsPerRequest ?? NaN)
        results.overhead = { echo: results.echo, noop, retrieveUs, overheadUs, share: overheadUs / retrieveUs }
      } catch (err) {
        problem(`overhead: ${(err as Error).message}`)
      }
    }
  } catch (err) {
    problem(`${db}: ${(err as Error).message}`)
  } finally {
    await baseline?.stop()
    await plugin?.stop()
    for (const d of Object.values(dbOf)) d.cleanup()
  }
}

if (parts.has('fanout')) {
  for (const layer of ['memory', 'redis'] as const) {
    const sockets = layer === 'memory' ? config.fanoutSockets : config.fanoutRedisSockets
    log(`fan-out, ${layer === 'memory' ? 'in-process, one instance' : 'Redis, two instances'}: ${fmt(sockets)} subscribers, ${config.fanoutRounds} rounds after a warm-up`)
    const { soft } = openFileLimits()
    if (soft < filesFor(sockets)) {
      problem(`fan-out ${layer}: ${fmt(sockets)} sockets need about ${fmt(filesFor(sockets))} open files, and this process may open ${fmt(soft)} (the hard limit: raise it, e.g. docker run --ulimit nofile=200000, or pass a smaller --fanout${layer === 'redis' ? '-redis' : ''}-sockets); not run`)
      continue
    }
    try {
      await waitForQuiet(`fan-out ${layer}`)
      const result = await runFanout({ layer, sockets, rounds: config.fanoutRounds, redisUrl: config.redisUrl, log })
      if (result.errors > 0) problem(`fan-out ${layer}: ${result.errors} errors, e.g. ${result.errorSamples.slice(0, 3).join(' | ')}`)
      results.fanout.push(result)
    } catch (err) {
      problem(`fan-out ${layer}: ${(err as Error).message}`)
    }
  }
}

if (parts.has('memory')) {
  for (const kind of ['plugin', 'baseline'] as ServerKind[]) {
    log(`idle memory, ${kind}: ${fmt(config.idleSockets)} sockets`)
    try {
      await waitForQuiet(`idle memory ${kind}`)
      const result = await runIdleMemory(kind, config.idleSockets)
      log(`  heapUsed ${result.perSocketKiB.heapUsed.toFixed(2)} KiB/socket, external ${result.perSocketKiB.external.toFixed(2)}, RSS ${result.perSocketKiB.rss.toFixed(2)}`)
      results.memory.push(result)
    } catch (err) {
      problem(`idle memory ${kind}: ${(err as Error).message}`)
    }
  }
}

// ---------------------------------------------------------------------------- report

const out: string[] = ['', header, '']
/** The throughput target of `op` on `db`, if it has one. */
function throughputTarget (db: DbKind, op: Op): number | undefined {
  return db === 'memory' ? TARGETS[op] : DB_TARGETS[db](op)
}

function compare (db: DbKind, op: Op, b: LoadResult, p: LoadResult): Comparison {
  const ratio = p.rps / b.rps
  const usRatio = (p.serverCpuUsPerRequest ?? NaN) / (b.serverCpuUsPerRequest ?? NaN)
  const checks: Verdict[] = []
  if (b.requests === 0 || p.requests === 0) {
    // A slow op (scrypt on a loaded machine) in a short window: no latency to compare.
    checks.push({ check: `${db} ${op} measured`, target: 'requests completed in the window (else lengthen --duration)', value: `${b.requests} / ${p.requests}`, pass: false })
  }
  const target = throughputTarget(db, op)
  if (target !== undefined) checks.push({ check: `${db} ${op} throughput`, target: `≥ ${target}× baseline`, value: `${ratio.toFixed(2)}×`, pass: ratio >= target })
  const echoUs = results.echo?.serverCpuUsPerRequest
  const usTarget = ECHO_US_OPS.includes(op) && echoUs !== undefined ? ECHO_US_FACTOR * echoUs : undefined
  if (usTarget !== undefined) {
    const us = p.serverCpuUsPerRequest ?? NaN
    checks.push({ check: `${db} ${op} server µs/req`, target: `≤ ${ECHO_US_FACTOR}× echo = ${fmt(usTarget, 1)} µs`, value: `${fmt(us, 1)} µs`, pass: us <= usTarget })
  }
  checks.push({ check: `${db} ${op} p99`, target: `≤ baseline ${ms(b.latencyMs.p99)} ms`, value: `${ms(p.latencyMs.p99)} ms`, pass: p.latencyMs.p99 <= b.latencyMs.p99 })
  const side = (r: LoadResult): Comparison['baseline'] => ({ rps: r.rps, p50: r.latencyMs.p50, p99: r.latencyMs.p99, ...(r.serverCpuUsPerRequest === undefined ? {} : { us: r.serverCpuUsPerRequest }), errors: r.errors })
  return {
    db, op, baseline: side(b), plugin: side(p), ratio, usRatio,
    ...(target === undefined ? {} : { throughputTarget: target }),
    ...(usTarget === undefined ? {} : { usTarget }),
    checks, pass: checks.every((c) => c.pass)
  }
}

if (results.ops.length > 0) {
  const rows = results.ops.map(({ db, op, baseline: b, plugin: p, failure }) => {
    if (b === undefined || p === undefined) return [db, op, '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', '—', `failed: ${(failure ?? '').slice(0, 60)}`]
    const c = compare(db, op, b, p)
    results.comparison.push(c)
    verdicts.push(...c.checks)
    const failed = c.checks.filter((v) => !v.pass).map((v) => v.check.slice(`${db} ${op} `.length))
    return [
      db, op, fmt(c.baseline.rps), fmt(c.plugin.rps), `${c.ratio.toFixed(2)}×`, c.throughputTarget === undefined ? '(info)' : `≥ ${c.throughputTarget}×`,
      `${ms(c.baseline.p50)} / ${ms(c.baseline.p99)}`, `${ms(c.plugin.p50)} / ${ms(c.plugin.p99)}`,
      fmt(c.baseline.us), fmt(c.plugin.us), `${c.usRatio.toFixed(2)}×`, c.usTarget === undefined ? '—' : `≤ ${fmt(c.usTarget)}`,
      `${b.errors} / ${p.errors}`,
      failed.length === 0 ? 'PASS' : `FAIL (${failed.join(', ')})`
    ]
  })
  out.push(`Comparison, every database and op (${config.connections} connections × ${config.depth} in flight; µs = server CPU time per request;`)
  out.push(`µs target: retrieve/list plugin ≤ ${ECHO_US_FACTOR}× the bare echo's ${results.echo === undefined ? '(echo not measured)' : `${fmt(results.echo.serverCpuUsPerRequest, 1)} µs`};`)
  out.push('result: every target of the row — throughput ratio, µs, plugin p99 ≤ baseline p99; errors baseline / plugin)')
  out.push(table(['db', 'op', 'baseline req/s', 'plugin req/s', 'ratio', 'target', 'baseline p50/p99 ms', 'plugin p50/p99 ms', 'baseline µs/req', 'plugin µs/req', 'µs ratio', 'µs target', 'errors', 'result'], rows))
  const scrypt = results.scrypt
  if (scrypt !== undefined) {
    for (const c of results.comparison.filter((r) => r.op === 'create_scrypt')) {
      out.push(`create_scrypt on ${c.db}: one scrypt takes ${scrypt.msPerHash.toFixed(1)} ms of CPU here, a ceiling of ${fmt(scrypt.ceilingRps)} sign-ups/s on the servers' one core; ` +
        `baseline reached ${fmt(c.baseline.rps / scrypt.ceilingRps * 100)}% of it, plugin ${fmt(c.plugin.rps / scrypt.ceilingRps * 100)}%; server CPU per sign-up ` +
        `${fmt((c.baseline.us ?? NaN) / 1000, 1)} / ${fmt((c.plugin.us ?? NaN) / 1000, 1)} ms (baseline / plugin): near the hash's own, the hash is the limit, not the database`)
    }
  }
  out.push('')

  const diag = results.ops.filter((r) => r.baseline !== undefined && r.plugin !== undefined).map(({ db, op, baseline: b, plugin: p }) => [
    db, op,
    `${fmt((b!.serverCpu ?? NaN) * 100)}% / ${fmt(b!.generatorCpu * 100)}%`, `${fmt((p!.serverCpu ?? NaN) * 100)}% / ${fmt(p!.generatorCpu * 100)}%`,
    otherText(b!), otherText(p!),
    `${ms(b!.latencyMs.max)} / ${ms(p!.latencyMs.max)}`, `${fmt(b!.requests)} / ${fmt(p!.requests)}`
  ])
  out.push('Where the time goes (CPU use of the server and of the generator, 100% = one core; PostgreSQL\'s own CPU is in neither;')
  out.push(`"other" = what else used core ${SERVER_CORE} / core ${GENERATOR_CORE} meanwhile, incl. kernel softirq, steal and, on postgres, the database: more than a few % means a noisy run)`)
  out.push(table(['db', 'op', 'baseline server/gen CPU', 'plugin server/gen CPU', 'other b', 'other p', 'max ms b / p', 'requests b / p'], diag), '')
}

if (results.nestedVsFlat !== undefined) {
  const { plugin: p, baseline: b, flatRunForThis } = results.nestedVsFlat
  const cell = (c: NestedCost | undefined, value: (c: NestedCost) => string): string => c === undefined ? '—' : value(c)
  out.push('Nested vs flat list, same run: what serializing a to-one and a to-many relation costs (flat = first page of 20 notes with its count;')
  out.push(`nested = 20 docs with owner and labels as objects; flat ÷ nested req/s = how many flat lists one nested list costs${flatRunForThis ? '; the plugin\'s flat list was run for this only' : ''})`)
  out.push(table(['measure', 'plugin', 'baseline'], [
    ['flat list req/s', cell(p, (c) => fmt(c.flat.rps)), cell(b, (c) => fmt(c.flat.rps))],
    ['nested list req/s', cell(p, (c) => fmt(c.nested.rps)), cell(b, (c) => fmt(c.nested.rps))],
    ['flat ÷ nested (req/s)', cell(p, (c) => `${c.rpsRatio.toFixed(2)}×`), cell(b, (c) => `${c.rpsRatio.toFixed(2)}×`)],
    ['flat server µs/req', cell(p, (c) => fmt(c.flat.serverCpuUsPerRequest)), cell(b, (c) => fmt(c.flat.serverCpuUsPerRequest))],
    ['nested server µs/req', cell(p, (c) => fmt(c.nested.serverCpuUsPerRequest)), cell(b, (c) => fmt(c.nested.serverCpuUsPerRequest))],
    ['nested ÷ flat (server µs/req)', cell(p, (c) => `${c.cpuRatio.toFixed(2)}×`), cell(b, (c) => `${c.cpuRatio.toFixed(2)}×`)]
  ]), '')
}

if (results.overhead !== undefined) {
  const o = results.overhead
  const pass = o.share <= OVERHEAD_SHARE
  verdicts.push({ check: 'plugin overhead', target: `≤ ${OVERHEAD_SHARE * 100}% of a retrieve`, value: `${(o.share * 100).toFixed(1)}%`, pass })
  out.push('Plugin overhead: server CPU per request of a no-database `noop` action through the plugin, minus a bare @fastify/websocket echo (parse, constant reply), as a share of the plugin\'s retrieve')
  out.push(table(['measure', 'server µs/req', 'req/s', 'server / gen CPU', 'other'], [
    ['bare echo (baseline /ws/echo/)', fmt(o.echo.serverCpuUsPerRequest, 1), fmt(o.echo.rps), `${fmt((o.echo.serverCpu ?? NaN) * 100)}% / ${fmt(o.echo.generatorCpu * 100)}%`, otherText(o.echo)],
    ['plugin noop action (/ws/noop/)', fmt(o.noop.serverCpuUsPerRequest, 1), fmt(o.noop.rps), `${fmt((o.noop.serverCpu ?? NaN) * 100)}% / ${fmt(o.noop.generatorCpu * 100)}%`, otherText(o.noop)],
    ['plugin retrieve (/ws/)', fmt(o.retrieveUs, 1), '', '', ''],
    [`overhead = noop − echo`, fmt(o.overheadUs, 1), '', '', ''],
    [`share of retrieve (target ≤ ${OVERHEAD_SHARE * 100}%)`, `${(o.share * 100).toFixed(1)}%`, '', '', verdict(pass)]
  ]), '')
}

if (results.fanout.length > 0) {
  const rows = results.fanout.map((f) => {
    const bound = FANOUT_P99_MS[f.layer]
    const pass = f.minDelivered === f.sockets && f.latencyMs.p99 <= bound && f.errors === 0
    verdicts.push({ check: `fan-out ${f.layer}`, target: `all ${f.sockets} delivered, p99 ≤ ${bound} ms`, value: `${f.minDelivered} delivered, p99 ${ms(f.latencyMs.p99)} ms`, pass })
    const mem = f.serverMemory
    return [
      f.layer === 'memory' ? 'in-process' : 'Redis (A ← B)', fmt(f.sockets), String(f.sourceAddresses.length), `${fmt(f.minDelivered)}`, ms(f.latencyMs.p50), ms(f.latencyMs.p99), ms(f.latencyMs.max),
      f.rounds.map((r) => ms(r.latencyMs.p99)).join(', '), f.rounds.map((r) => ms(r.patchReplyMs)).join(', '),
      fmt(Math.max(...f.rounds.map((r) => r.generatorCpuMs))),
      `${fmt(mem.before.rss / 2 ** 20)} → ${fmt(mem.after.rss / 2 ** 20)}`, `${fmt(mem.before.heapUsed / 2 ** 20)} → ${fmt(mem.after.heapUsed / 2 ** 20)}`, mem.perSocketKiB.rss.toFixed(1),
      `≤ ${bound}`, verdict(pass)
    ]
  })
  out.push(`Fan-out: one patch, every subscriber's update event (ms from sending the patch; ${config.fanoutRounds} rounds after a warm-up; each change is serialized once by the plugin, only the request_id differs per subscriber;`)
  out.push('subscribers from several loopback source addresses; server memory = the subscribers\' server after two full GCs, before the sockets opened → with all subscribed)')
  out.push(table(['layer', 'subscribers', 'sources', 'min delivered', 'p50', 'p99', 'max', 'p99 per round', 'patch reply per round', 'gen CPU ms (max)', 'server RSS MiB', 'heapUsed MiB', 'RSS KiB/socket', 'target p99', 'result'], rows), '')
}

if (results.memory.length > 0) {
  const rows = results.memory.map((m) => {
    const { heapUsed, external, rss } = m.perSocketKiB
    const judged = Math.max(heapUsed + external, rss)
    const pass = judged <= IDLE_KIB
    if (m.kind === 'plugin') verdicts.push({ check: 'idle memory', target: `≤ ${IDLE_KIB} KiB per socket`, value: `${judged.toFixed(2)} KiB`, pass })
    return [m.kind, fmt(m.sockets), heapUsed.toFixed(2), external.toFixed(2), rss.toFixed(2), judged.toFixed(2),
      `${fmt(m.before.rss / 2 ** 20, 1)} → ${fmt(m.after.rss / 2 ** 20, 1)}`, m.kind === 'plugin' ? `≤ ${IDLE_KIB}` : '(info)', m.kind === 'plugin' ? verdict(pass) : '—']
  })
  out.push('Idle memory per open socket (KiB; each socket made one retrieve, then idles; two full GCs before each reading;')
  out.push('the target applies to the larger of heapUsed + external and RSS, as RSS alone moves with V8\'s page reuse)')
  out.push(table(['server', 'sockets', 'heapUsed', 'external', 'RSS', 'judged', 'RSS MiB before → after', 'target', 'result'], rows), '')
}

results.seconds = (performance.now() - started) / 1000
results.wrong = wrong
const passed = verdicts.filter((v) => v.pass).length
out.push(`Targets: ${passed} PASS, ${verdicts.length - passed} FAIL${verdicts.some((v) => !v.pass) ? ' (' + verdicts.filter((v) => !v.pass).map((v) => v.check).join(', ') + ')' : ''}`)
out.push(wrong === 0
  ? 'Errors: none (every reply and event checked)'
  : `ERRORS: ${wrong} problems — the numbers above are not valid:\n  ${problems.join('\n  ')}`)
out.push(`Took ${results.seconds.toFixed(0)} s${quietWaited > 0 ? ` (${quietWaited.toFixed(1)} s of it waiting for other processes to go quiet)` : ''}`)
process.stdout.write(out.join('\n') + '\n')

const jsonPath = flags.get('json')
if (jsonPath !== undefined) {
  writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n')
  log(`results written to ${jsonPath}`)
}
process.exit(wrong === 0 ? 0 : 1)
