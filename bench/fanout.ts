/**
 * Fan-out: one change delivered to many subscribed sockets.
 *
 * S sockets `subscribe_instance` to the same row; another socket patches it; for every
 * subscriber, the time from sending the patch to its `update` event arriving (checked: its
 * own request_id, the new title, the public keys). One warm-up round, then measured rounds.
 *
 * - `memory` layer: one plugin server, in-memory SQLite; subscribers and patcher on it.
 * - `redis` layer: two plugin servers on one SQLite file (on tmpfs when /dev/shm exists)
 *   and one Redis (a prefix of their own); subscribers on A, the patch through B, so every
 *   event crosses Redis. Redis itself is not pinned to a core.
 *
 * Also reported: the generator's own CPU time between the patch and the last delivery,
 * which says how much of the measured delivery time the generator itself could account for;
 * and the subscribers' server's memory (after two full GCs) before the sockets opened and
 * once all were subscribed.
 *
 * Scale: the subscribers connect from several loopback source addresses (loopbackSources),
 * as one address has only ~28,000 ephemeral ports; the servers lift the plugin's connection
 * and per-client subscription caps and start with their open-file limit raised (limits.ts).
 */
import { Redis } from 'ioredis'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { groups } from '../index.js'
import { Note } from './entity.js'
import { WsClient } from './client.js'
import { coreTimes, coreUse, loopbackSources, openMany, percentiles, sleep, type CoreUse, type LoadResult } from './load.js'
import { startServer, type BenchServer } from './servers.js'

export interface FanoutOptions {
  layer: 'memory' | 'redis'
  sockets: number
  rounds: number
  redisUrl?: string
  log?: (line: string) => void
}

export interface FanoutRound {
  delivered: number
  latencyMs: LoadResult['latencyMs']
  /** The generator's CPU time from the patch to the last delivery. */
  generatorCpuMs: number
  patchReplyMs: number
  /** Each core's use from the patch to the last delivery. */
  cores: CoreUse[]
}

export interface FanoutResult {
  layer: 'memory' | 'redis'
  sockets: number
  /** Seconds to open and subscribe every socket. */
  setupS: number
  rounds: FanoutRound[]
  /** Over every delivery of every measured round. */
  latencyMs: LoadResult['latencyMs']
  /** Fewest deliveries in one measured round (must equal `sockets`). */
  minDelivered: number
  /** The loopback addresses the subscribers connected from. */
  sourceAddresses: string[]
  /** The subscribers' server: memory before the sockets opened, and with all of them subscribed (after the rounds). */
  serverMemory: { before: NodeJS.MemoryUsage, after: NodeJS.MemoryUsage, perSocketKiB: { heapUsed: number, external: number, rss: number } }
  errors: number
  errorSamples: string[]
}

const ROW = 1
const DELIVERY_TIMEOUT_MS = 30_000
/** At least this long for every subscription to be answered, and longer for more sockets (50,000 at once queue up). */
const SUBSCRIBE_TIMEOUT_MS = 120_000
const SUBSCRIBE_TIMEOUT_PER_SOCKET_MS = 10
const PUBLIC_KEYS = 'body,done,id,title'

export async function runFanout (options: FanoutOptions): Promise<FanoutResult> {
  const log = options.log ?? (() => {})
  const redisUrl = options.redisUrl ?? 'redis://127.0.0.1:6379'
  const servers: BenchServer[] = []
  const clients: WsClient[] = []
  let dir: string | undefined
  let errors = 0
  const errorSamples: string[] = []
  const error = (text: string): void => {
    errors++
    if (errorSamples.length < 10) errorSamples.push(text)
  }
  try {
    let subscribeTo: BenchServer
    let patchThrough: BenchServer
    let prefix = ''
    if (options.layer === 'memory') {
      subscribeTo = patchThrough = await startServer('plugin', { env: { BENCH_SEED: '10' } })
      servers.push(subscribeTo)
    } else {
      // On tmpfs where there is one: the commit's fsync is the disk's cost, not the framework's.
      dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'wsrest-bench-'))
      prefix = `wsrest-bench:${randomBytes(6).toString('hex')}:`
      const env = { BENCH_DB: join(dir, 'fanout.sqlite3'), BENCH_LAYER: 'redis', BENCH_REDIS_URL: redisUrl, BENCH_REDIS_PREFIX: prefix }
      subscribeTo = await startServer('plugin', { env: { ...env, BENCH_SEED: '10' } })
      servers.push(subscribeTo)
      patchThrough = await startServer('plugin', { env: { ...env, BENCH_SEED: '0' } })
      servers.push(patchThrough)
    }

    const memoryBefore = await subscribeTo.memory()
    // Subscribers: open in batches, then subscribe every one and wait for each 201.
    const sources = loopbackSources(options.sockets)
    const setupStart = performance.now()
    clients.push(...await openMany(subscribeTo.url(), options.sockets, 250, sources.of))
    log(`  ${options.sockets} sockets open in ${((performance.now() - setupStart) / 1000).toFixed(1)} s`)
    let expected: { title: string, t0: number } | undefined
    /** What reached the subscribers during the current round, unchecked. */
    const received: Array<{ subscriber: number, text: string, at: number }> = []
    let onDelivered: (() => void) | undefined
    await new Promise<void>((resolve, reject) => {
      let waiting = clients.length
      const timer = setTimeout(() => reject(new Error(`only ${clients.length - waiting} of ${clients.length} subscriptions answered`)), Math.max(SUBSCRIBE_TIMEOUT_MS, options.sockets * SUBSCRIBE_TIMEOUT_PER_SOCKET_MS))
      clients.forEach((client, i) => {
        const requestId = `s${i}`
        let subscribed = false
        client.onClose = (reason) => { error(`subscriber ${i} closed: ${reason}`) }
        client.onMessage = (text, at) => {
          if (subscribed) {
            // During a round only note the arrival: checking it waits until the round is
            // over, so that the generator reads the next socket as soon as it can.
            if (expected === undefined) { error(`subscriber ${i} got an event outside a round: ${text.slice(0, 200)}`); return }
            received.push({ subscriber: i, text, at })
            if (received.length === options.sockets) onDelivered?.()
            return
          }
          let reply: Record<string, any>
          try { reply = JSON.parse(text) } catch { error(`not JSON: ${text.slice(0, 200)}`); return }
          if (reply.request_id !== requestId || reply.action !== 'subscribe_instance' || reply.response_status !== 201) {
            error(`subscribe ${i}: ${text.slice(0, 200)}`)
          }
          subscribed = true
          if (--waiting === 0) { clearTimeout(timer); resolve() }
        }
        client.send(JSON.stringify({ action: 'subscribe_instance', request_id: requestId, pk: ROW }))
      })
    })
    if (options.layer === 'redis') await redisSubscribed(redisUrl, prefix + groups.instance(Note, ROW))
    const setupS = (performance.now() - setupStart) / 1000
    log(`  ${options.sockets} sockets subscribed in ${setupS.toFixed(1)} s`)

    const patcher = await WsClient.connect(patchThrough.url())
    clients.push(patcher)
    let patchReply: ((text: string, at: number) => void) | undefined
    patcher.onMessage = (text, at) => patchReply?.(text, at)
    patcher.onClose = (reason) => { error(`patcher closed: ${reason}`) }

    const rounds: FanoutRound[] = []
    const all: number[] = []
    for (let round = 0; round <= options.rounds; round++) {
      received.length = 0
      const title = `fan-out ${round} ${randomBytes(4).toString('hex')}`
      const replied = new Promise<number>((resolve) => {
        patchReply = (text, at) => {
          const reply = JSON.parse(text) as Record<string, any>
          if (reply.request_id !== round || reply.response_status !== 200 || reply.data?.title !== title) error(`patch reply: ${text.slice(0, 200)}`)
          resolve(at - expected!.t0)
        }
      })
      const delivered = new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, DELIVERY_TIMEOUT_MS)
        onDelivered = () => { clearTimeout(timer); resolve() }
      })
      const cpu0 = process.cpuUsage()
      const cores0 = coreTimes()
      expected = { title, t0: performance.now() }
      patcher.send(JSON.stringify({ action: 'patch', request_id: round, pk: ROW, data: { title } }))
      const patchReplyMs = await replied
      await delivered
      const cpu = process.cpuUsage(cpu0)
      const cores = coreUse(cores0, coreTimes())
      const arrivals = checkRound(received, title, expected!.t0, error)
      const count = arrivals.length
      if (count < options.sockets) error(`round ${round}: ${count} of ${options.sockets} subscribers got the event within ${DELIVERY_TIMEOUT_MS / 1000} s`)
      const result: FanoutRound = { delivered: count, latencyMs: percentiles(arrivals), generatorCpuMs: (cpu.user + cpu.system) / 1000, patchReplyMs, cores }
      log(`  ${round === 0 ? 'warm-up' : `round ${round}`}: ${count} delivered, patch reply ${patchReplyMs.toFixed(1)} ms, first ${result.latencyMs.min.toFixed(1)} ms, p50 ${result.latencyMs.p50.toFixed(1)} ms, p99 ${result.latencyMs.p99.toFixed(1)} ms, max ${result.latencyMs.max.toFixed(1)} ms; generator CPU ${result.generatorCpuMs.toFixed(0)} ms; cores busy ${cores.map((c) => ((c.busy + c.steal) * 100).toFixed(0) + '%').join(' / ')}`)
      if (round > 0) {
        rounds.push(result)
        for (const latency of arrivals) all.push(latency)
      }
      expected = undefined
      await sleep(500)
    }
    const memoryAfter = await subscribeTo.memory()
    const per = (key: 'heapUsed' | 'external' | 'rss'): number => (memoryAfter[key] - memoryBefore[key]) / options.sockets / 1024
    log(`  server memory: RSS ${(memoryBefore.rss / 2 ** 20).toFixed(1)} → ${(memoryAfter.rss / 2 ** 20).toFixed(1)} MiB, heapUsed ${(memoryBefore.heapUsed / 2 ** 20).toFixed(1)} → ${(memoryAfter.heapUsed / 2 ** 20).toFixed(1)} MiB (${per('rss').toFixed(2)} KiB RSS per subscribed socket)`)
    return {
      layer: options.layer,
      sockets: options.sockets,
      sourceAddresses: sources.addresses,
      serverMemory: { before: memoryBefore, after: memoryAfter, perSocketKiB: { heapUsed: per('heapUsed'), external: per('external'), rss: per('rss') } },
      setupS,
      rounds,
      latencyMs: percentiles(all),
      minDelivered: Math.min(...rounds.map((r) => r.delivered)),
      errors,
      errorSamples
    }
  } finally {
    for (const client of clients) {
      client.onClose = () => {}
      client.destroy()
    }
    for (const server of servers) await server.stop()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * Check a round's arrivals: one `update` per subscriber, its own request_id, the new title,
 * the public keys. The latencies (ms after `t0`) of the good ones.
 */
function checkRound (received: Array<{ subscriber: number, text: string, at: number }>, title: string, t0: number, error: (text: string) => void): number[] {
  const seen = new Set<number>()
  const latencies: number[] = []
  for (const { subscriber, text, at } of received) {
    let reply: Record<string, any>
    try { reply = JSON.parse(text) } catch { error(`not JSON: ${text.slice(0, 200)}`); continue }
    const data = reply.data as Record<string, unknown> | null
    if (reply.request_id !== `s${subscriber}` || reply.action !== 'update' || reply.response_status !== 200 || data === null ||
        data.id !== ROW || data.title !== title || Object.keys(data).sort().join(',') !== PUBLIC_KEYS) {
      error(`subscriber ${subscriber} got ${text.slice(0, 200)}`)
      continue
    }
    if (seen.has(subscriber)) { error(`subscriber ${subscriber} got the event twice`); continue }
    seen.add(subscriber)
    latencies.push(at - t0)
  }
  return latencies
}

/** Wait until some connection is subscribed to `channel` on Redis (the layer subscribes asynchronously). */
async function redisSubscribed (url: string, channel: string): Promise<void> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 1 })
  try {
    await client.connect()
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline) {
      const [, count] = await client.pubsub('NUMSUB', channel) as [string, number]
      if (Number(count) > 0) return
      await sleep(50)
    }
    throw new Error(`no Redis subscriber on ${channel} after 10 s`)
  } finally {
    client.disconnect()
  }
}
