/**
 * `npm run bench`: the plugin against a hand-written baseline, on this machine.
 *
 * Layout: the servers run as child processes pinned to core 0; this process (the load
 * generator) pins itself to core 1. In-memory SQLite, so the framework's own cost shows.
 *
 * Parts (all by default; `--parts ops,overhead,fanout,memory` picks some):
 * - ops: for each op, the baseline then the plugin, same parameters, each on freshly
 *   reseeded rows → req/s, ratio, p50/p99, errors. `nested` (a list of 20 docs, each with
 *   its owner and labels as objects) is also compared with the plugin's flat `list`: what
 *   serializing relations costs. With `--ops nested` alone the plugin's flat list is run
 *   for that comparison (not the baseline's: the ops table shows no list row then).
 * - overhead: server CPU per request of a no-database action through the plugin, minus
 *   that of a bare @fastify/websocket echo handler, as a share of the plugin's retrieve.
 * - fanout: one change to S subscribed sockets, in-process layer and Redis layer.
 * - memory: idle memory per open socket, plugin and baseline.
 *
 * Flags: --quick, --ops a,b, --connections N, --depth N, --duration S, --warmup S,
 * --rows N, --fanout-sockets N, --fanout-rounds N, --idle-sockets N, --delete-rows N,
 * --redis-url URL, --quiet-wait S (wait at most S seconds for other processes to leave the
 * cores alone before each measurement; default 120, quick 5; 600 s in all, quick 10), --json FILE.
 * Exit status 1 when any request or event was wrong or missing (target FAILs alone do not).
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { performance } from 'node:perf_hooks'
import { runFanout, type FanoutResult } from './fanout.js'
import { coreTimes, coreUse, OP_PATH, OPS, runLoad, sleep, type LoadResult, type Op } from './load.js'
import { runIdleMemory, type IdleMemoryResult } from './memory.js'
import { GENERATOR_CORE, SERVER_CORE, startServer, type BenchServer, type ServerKind } from './servers.js'
import { parseFlags } from './flags.js'

// ---------------------------------------------------------------------------- options

const KNOWN = ['quick', 'quiet-wait', 'ops', 'connections', 'depth', 'duration', 'warmup', 'rows', 'fanout-sockets', 'fanout-rounds', 'idle-sockets', 'delete-rows', 'redis-url', 'json', 'parts']
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

const config = {
  quick,
  connections: num('connections', 50, 50),
  depth: num('depth', 1, 1),
  warmupS: num('warmup', 3, 1),
  durationS: num('duration', 10, 3),
  rows: num('rows', 1000, 1000),
  fanoutSockets: num('fanout-sockets', 10_000, 2_000),
  fanoutRounds: num('fanout-rounds', 3, 2),
  idleSockets: num('idle-sockets', 5_000, 2_000),
  redisUrl: flags.get('redis-url') ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  /** Seconds to wait, before each measurement, for other processes to leave the two cores alone. */
  quietWaitS: num('quiet-wait', 120, 5),
  /** …and at most this many seconds of waiting in all (keeps --quick under two minutes). */
  quietBudgetS: quick ? 10 : 600
}
// Rows the delete run may delete: far more than any server here deletes in that time.
const deleteRows = num('delete-rows', Math.ceil(50_000 * (config.warmupS + config.durationS)), Math.ceil(50_000 * (config.warmupS + config.durationS)))

const TARGETS: Partial<Record<Op, number>> = { retrieve: 3.5, list: 3.5, create: 2.5, patch: 2.5, update: 2.5, delete: 2.5 }
const FANOUT_P99_MS = 250
const IDLE_KIB = 12
const OVERHEAD_SHARE = 0.05
/** Above this, the generator (one core) may be what limits a run. */
const GENERATOR_BUSY = 0.85
/** Above this, something else running on the benchmark's cores makes a run noisy. */
const OTHER_BUSY = 0.15

const log = (line: string): void => { process.stderr.write(line + '\n') }

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
    versions: `fastify ${version('fastify')}, @fastify/websocket ${version('@fastify/websocket')}, @mikro-orm/core ${version('@mikro-orm/core')}, ${['sqlite3', 'better-sqlite3'].filter((p) => version(p) !== '?').map((p) => `${p} ${version(p)}`).join(', ')}`,
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

interface OpRow { op: Op, baseline?: LoadResult, plugin?: LoadResult, failure?: string }

let wrong = 0
const problems: string[] = []
function problem (text: string): void {
  wrong++
  problems.push(text)
  log(`!!! ${text}`)
}

/** A server that is still up (restarted if a run killed it). */
async function alive (server: BenchServer): Promise<BenchServer> {
  try {
    process.kill(server.pid, 0)
    return server
  } catch {
    problem(`the ${server.kind} server died; restarting it`)
    return await startServer(server.kind)
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

async function load (server: BenchServer, op: Op, path = OP_PATH[op] ?? '/ws/'): Promise<LoadResult> {
  await waitForQuiet(`${server.kind} ${op}`)
  const seed = await server.reset(config.rows, op === 'delete' ? deleteRows : 0)
  const result = await runLoad({
    url: server.url(path), op, connections: config.connections, depth: config.depth,
    warmupS: config.warmupS, durationS: config.durationS, seed, serverPid: server.pid
  })
  log(`  ${server.kind.padEnd(8)} ${op.padEnd(8)} ${fmt(result.rps).padStart(7)} req/s  p50 ${ms(result.latencyMs.p50)} ms  p99 ${ms(result.latencyMs.p99)} ms  ` +
    `server ${fmt(result.serverCpuUsPerRequest)} µs/req (${fmt((result.serverCpu ?? NaN) * 100)}% CPU)  generator ${fmt(result.generatorCpu * 100)}% CPU  errors ${result.errors}`)
  if (result.errors > 0) problem(`${server.kind} ${op}: ${result.errors} errors, e.g. ${result.errorSamples.slice(0, 3).join(' | ')}`)
  if (result.generatorCpu > GENERATOR_BUSY) log(`  note: the generator was ${fmt(result.generatorCpu * 100)}% busy on ${server.kind} ${op}: it may have limited this run`)
  const other = otherLoad(result)
  if (other.some((v) => v > OTHER_BUSY)) log(`  note: something else used ${otherText(result)} of cores ${SERVER_CORE} / ${GENERATOR_CORE} during ${server.kind} ${op}: this run is noisy`)
  return result
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

const started = performance.now()
const info = machine()
const results: {
  machine: Record<string, string>
  config: typeof config & { deleteRows: number, ops: Op[] }
  ops: OpRow[]
  overhead?: Overhead
  nestedVsFlat?: NestedVsFlat
  fanout: FanoutResult[]
  memory: IdleMemoryResult[]
  verdicts: Array<{ check: string, target: string, value: string, pass: boolean }>
  wrong: number
  problems: string[]
  seconds: number
} = { machine: info, config: { ...config, deleteRows, ops }, ops: [], fanout: [], memory: [], verdicts: [], wrong: 0, problems, seconds: 0 }

const header = [
  `fastify-ws-rest benchmark${quick ? ' (--quick)' : ''}`,
  ...Object.entries(info).map(([k, v]) => `${k.padEnd(8)} ${v}`),
  `load     ${config.connections} connections × ${config.depth} in flight, warm-up ${config.warmupS} s, measured ${config.durationS} s, ` +
    `${config.rows} rows, in-memory SQLite; list = first page of 20; nested = list of 20 docs, each with its owner {id, name} and 2–3 labels [{id, name}]`
].join('\n')
log(header + '\n')

const verdicts = results.verdicts
if (parts.has('ops') || parts.has('overhead')) {
  let baseline = await startServer('baseline')
  let plugin = await startServer('plugin')
  try {
    // A fresh server's first seconds run cold code: warm both up (unmeasured) before any op.
    log('warm-up (mixed load on each server, not measured)')
    for (const server of [baseline, plugin]) {
      const warm = await runLoad({
        url: server.url(), op: 'mixed', connections: config.connections, depth: config.depth,
        warmupS: 0, durationS: Math.max(2, config.warmupS), seed: await server.reset(config.rows)
      })
      if (warm.errors > 0) problem(`${server.kind} warm-up: ${warm.errors} errors, e.g. ${warm.errorSamples.slice(0, 3).join(' | ')}`)
    }
    if (parts.has('ops')) {
      log('ops')
      for (const op of ops) {
        const row: OpRow = { op }
        try {
          baseline = await alive(baseline)
          row.baseline = await load(baseline, op)
          plugin = await alive(plugin)
          row.plugin = await load(plugin, op)
        } catch (err) {
          row.failure = (err as Error).message
          problem(`${op}: ${row.failure}`)
        }
        results.ops.push(row)
      }
      const nestedRow = results.ops.find((r) => r.op === 'nested')
      if (nestedRow?.plugin !== undefined) {
        try {
          const listRow = results.ops.find((r) => r.op === 'list')
          let flat = listRow?.plugin
          if (flat === undefined) {
            plugin = await alive(plugin)
            flat = await load(plugin, 'list')
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
    if (parts.has('overhead')) {
      log('overhead (server CPU per request)')
      try {
        baseline = await alive(baseline)
        plugin = await alive(plugin)
        const echo = await load(baseline, 'noop', '/ws/echo/')
        const noop = await load(plugin, 'noop', '/ws/noop/')
        const retrieve = results.ops.find((r) => r.op === 'retrieve')?.plugin ?? await load(plugin, 'retrieve')
        const retrieveUs = retrieve.serverCpuUsPerRequest ?? NaN
        const overheadUs = (noop.serverCpuUsPerRequest ?? NaN) - (echo.serverCpuUsPerRequest ?? NaN)
        results.overhead = { echo, noop, retrieveUs, overheadUs, share: overheadUs / retrieveUs }
      } catch (err) {
        problem(`overhead: ${(err as Error).message}`)
      }
    }
  } finally {
    await baseline.stop()
    await plugin.stop()
  }
}

if (parts.has('fanout')) {
  for (const layer of ['memory', 'redis'] as const) {
    log(`fan-out, ${layer === 'memory' ? 'in-process' : 'Redis'} layer: ${fmt(config.fanoutSockets)} subscribers, ${config.fanoutRounds} rounds after a warm-up`)
    try {
      await waitForQuiet(`fan-out ${layer}`)
      const result = await runFanout({ layer, sockets: config.fanoutSockets, rounds: config.fanoutRounds, redisUrl: config.redisUrl, log })
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
if (results.ops.length > 0) {
  const rows = results.ops.map(({ op, baseline: b, plugin: p, failure }) => {
    if (b === undefined || p === undefined) return [op, '—', '—', '—', '—', '—', '—', 'failed', failure ?? '']
    const ratio = p.rps / b.rps
    const target = TARGETS[op]
    const p99ok = p.latencyMs.p99 <= b.latencyMs.p99
    if (target !== undefined) verdicts.push({ check: `${op} throughput`, target: `≥ ${target}× baseline`, value: `${ratio.toFixed(2)}×`, pass: ratio >= target })
    verdicts.push({ check: `${op} p99`, target: `≤ baseline ${ms(b.latencyMs.p99)} ms`, value: `${ms(p.latencyMs.p99)} ms`, pass: p99ok })
    return [
      op, fmt(b.rps), fmt(p.rps), `${ratio.toFixed(2)}×`, target === undefined ? '(info)' : `≥ ${target}×`,
      `${ms(b.latencyMs.p50)} / ${ms(b.latencyMs.p99)}`, `${ms(p.latencyMs.p50)} / ${ms(p.latencyMs.p99)}`,
      `${b.errors} / ${p.errors}`,
      `${target === undefined ? '—' : verdict(ratio >= target)} / ${verdict(p99ok)}`
    ]
  })
  out.push(`Throughput and latency (${config.connections} connections × ${config.depth} in flight; errors baseline / plugin; result = throughput / p99 ≤ baseline p99)`)
  out.push(table(['op', 'baseline req/s', 'plugin req/s', 'ratio', 'target', 'baseline p50/p99 ms', 'plugin p50/p99 ms', 'errors', 'result'], rows), '')

  const diag = results.ops.filter((r) => r.baseline !== undefined && r.plugin !== undefined).map(({ op, baseline: b, plugin: p }) => [
    op, fmt(b!.serverCpuUsPerRequest), fmt(p!.serverCpuUsPerRequest),
    `${fmt((b!.serverCpu ?? NaN) * 100)}% / ${fmt(b!.generatorCpu * 100)}%`, `${fmt((p!.serverCpu ?? NaN) * 100)}% / ${fmt(p!.generatorCpu * 100)}%`,
    otherText(b!), otherText(p!),
    `${ms(b!.latencyMs.max)} / ${ms(p!.latencyMs.max)}`, `${fmt(b!.requests)} / ${fmt(p!.requests)}`
  ])
  out.push('Where the time goes (server CPU time per request; CPU use of the server and of the generator, 100% = one core;')
  out.push(`"other" = what else used core ${SERVER_CORE} / core ${GENERATOR_CORE} meanwhile, incl. kernel softirq and steal: more than a few % means a noisy run)`)
  out.push(table(['op', 'baseline µs/req', 'plugin µs/req', 'baseline server/gen CPU', 'plugin server/gen CPU', 'other b', 'other p', 'max ms b / p', 'requests b / p'], diag), '')
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
    const pass = f.minDelivered === f.sockets && f.latencyMs.p99 <= FANOUT_P99_MS && f.errors === 0
    verdicts.push({ check: `fan-out ${f.layer}`, target: `all ${f.sockets} delivered, p99 ≤ ${FANOUT_P99_MS} ms`, value: `${f.minDelivered} delivered, p99 ${ms(f.latencyMs.p99)} ms`, pass })
    return [
      f.layer === 'memory' ? 'in-process' : 'Redis (A ← B)', fmt(f.sockets), `${fmt(f.minDelivered)}`, ms(f.latencyMs.p50), ms(f.latencyMs.p99), ms(f.latencyMs.max),
      f.rounds.map((r) => ms(r.latencyMs.min)).join(', '), f.rounds.map((r) => ms(r.latencyMs.p99)).join(', '), f.rounds.map((r) => ms(r.patchReplyMs)).join(', '),
      fmt(Math.max(...f.rounds.map((r) => r.generatorCpuMs))), `≤ ${FANOUT_P99_MS}`, verdict(pass)
    ]
  })
  out.push(`Fan-out: one patch, every subscriber's update event (ms from sending the patch; ${config.fanoutRounds} rounds after a warm-up; each change is serialized once by the plugin, only the request_id differs per subscriber)`)
  out.push(table(['layer', 'subscribers', 'min delivered', 'p50', 'p99', 'max', 'first per round', 'p99 per round', 'patch reply per round', 'gen CPU ms (max)', 'target p99', 'result'], rows), '')
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
