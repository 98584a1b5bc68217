/**
 * Seeded fuzz test (docs/protocol.md "Bad input — better than DCRF"): several connections to
 * the example server send ≥10,000 random and mutated frames — broken JSON, deep nesting,
 * huge numbers, unicode edge cases, wrong types in every field, `__proto__` /
 * `constructor` keys, very long strings, binary, empty and oversized frames.
 *
 * The oracle, per frame: the socket gets the reply to that frame (request_id echoed, or
 * null when the frame has none the server can use), or closes with the defined code
 * (1009 oversized, 1007 invalid UTF-8, 1003 allowed for binary). No reply leaks
 * internals; a 500 is reported as a finding. Meanwhile a canary connection keeps
 * working; afterwards a fresh connection can create and retrieve, no prototype was
 * polluted, and the heap is back near where it started.
 *
 * Seeds: by default (CI included) a fixed set, FIXED_SEEDS, plus one new random seed per run,
 * the frames shared among them (10,200 in all). Every seed is printed in its test's name and
 * in a comment, and every failure names its replay command:
 *
 *   FUZZ_SEED=<seed> FUZZ_FRAMES=<frames> npx tap test/fuzz.test.ts
 *
 * `FUZZ_SEED` runs that one seed only (`FUZZ_FRAMES`, default 10,200, sets its frame count;
 * the frames a seed generates depend on both, so replay with the count the failure names).
 */
import t, { type Test } from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import { BOUND, eventually } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { connectionSeed, FrameSource, preview, type RouteKind } from './helpers/fuzz.js'
import { startExample } from './helpers/server.js'

/** Seeds run on every run, so a regression they once found stays found. */
const FIXED_SEEDS = [1, 2_718_281_828, 3_141_592_653]
const TOTAL_FRAMES = 10_200
const given = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) >>> 0 : undefined
const SEEDS = given !== undefined ? [given] : [...FIXED_SEEDS, (Math.random() * 2 ** 32) >>> 0]
/** Frames per seed: FUZZ_FRAMES, else the total shared among the seeds. */
const FRAMES = Number(process.env.FUZZ_FRAMES ?? Math.ceil(TOTAL_FRAMES / SEEDS.length))
// Four example servers, each fuzzed in turn: more than the 60 s package.json gives a file on a loaded machine.
t.setTimeout(240_000)
t.comment(`fuzz seeds ${SEEDS.join(', ')} (${FRAMES} frames each; replay one with FUZZ_SEED=<seed> FUZZ_FRAMES=${FRAMES})`)

/** One fuzz connection per entry, all at once. */
const CONNECTIONS: Array<{ route: RouteKind, path: string }> = [
  { route: 'plain', path: '/ws/' },
  { route: 'plain', path: '/ws/' },
  { route: 'paginated', path: '/ws/paginated/' },
  { route: 'cursor', path: '/ws/cursor/' },
  { route: 'stream', path: '/ws/stream/' },
  { route: 'multiplex', path: '/ws/multiplex/' }
]

const REPLY_KEYS = ['action', 'data', 'errors', 'request_id', 'response_status']
const EVENT_ACTIONS = new Set(['create', 'update', 'delete'])
/** Internals that must never reach a client: stack frames, SQL, driver names, raw error text. */
const LEAKS = [/\bat \//, /\bat .*\.(ts|js):\d+/, /\bselect\b.*\bfrom\b/i, /sqlite/i, /postgres/i, /Error:/, /node_modules/]

/** A full GC when the runtime allows one (tap does not pass --expose-gc): heap numbers then mean something. */
function findGc (): (() => void) | undefined {
  if (typeof globalThis.gc === 'function') return globalThis.gc as () => void
  try {
    v8.setFlagsFromString('--expose-gc')
    return vm.runInNewContext('gc') as () => void
  } catch {
    return undefined
  }
}

async function settle (gc: (() => void) | undefined): Promise<number> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  gc?.()
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
  gc?.()
  return process.memoryUsage().heapUsed
}

class FuzzFailure extends Error {}

/** `text` with everything outside printable ASCII escaped: a U+2028 or a NUL must not break a TAP line. */
function ascii (text: string): string {
  return text.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

interface Stats {
  frames: number
  replies: number
  events: number
  streamPages: number
  reconnects: number
  byStatus: Map<number, number>
  findings: string[]
}

let framesSent = 0
for (const seed of SEEDS) {
  t.test(`fuzz: ${FRAMES} random and mutated frames (FUZZ_SEED=${seed}${FIXED_SEEDS.includes(seed) ? ', fixed' : ''})`, async (t) => {
    await fuzz(t, seed, FRAMES)
  })
}

t.test('the seeds together sent at least 10,000 frames', async (t) => {
  t.ok(framesSent >= 10_000 || FRAMES * SEEDS.length < 10_000, `${framesSent} frames`)
})

async function fuzz (t: Test, seed: number, frames: number): Promise<void> {
  const REPLAY = `replay with FUZZ_SEED=${seed} FUZZ_FRAMES=${frames} npx tap test/fuzz.test.ts`
  t.comment(`FUZZ_SEED=${seed} FUZZ_FRAMES=${frames} (${REPLAY})`)
  const { app, base } = await startExample(t)
  const gc = findGc()
  const stats: Stats = { frames: 0, replies: 0, events: 0, streamPages: 0, reconnects: 0, byStatus: new Map(), findings: [] }
  const failures: string[] = []

  // Warm up (first queries, schema metadata) before the heap baseline, on the canary.
  const canary = await openClient(t, `${base}/ws/`)
  const seeded = await canary.request('create', { data: { username: 'canary', email: 'canary@example.com', password1: 'pw', password2: 'pw' } })
  t.equal(seeded.response_status, 201, 'canary user created')
  const heapBefore = await settle(gc)

  // The canary: a connection of its own that only sends valid requests, answered all along.
  // (Fuzzed frames may update or delete any row, so its retrieve may be a 404; a create
  // of its own must always succeed.)
  let fuzzing = true
  let canaryChecks = 0
  const canaryLoop = (async () => {
    for (let n = 0; fuzzing; n++) {
      const create = n % 10 === 0
      const reply = create
        ? await canary.request('create', { data: { username: `canary-${n}`, password1: 'pw', password2: 'pw' } })
        : await canary.request('retrieve', { pk: seeded.data.id })
      if (create ? reply.response_status !== 201 : ![200, 404].includes(reply.response_status)) {
        throw new Error(`canary ${create ? 'create' : 'retrieve'} answered ${JSON.stringify(reply)} during the fuzz run; ${REPLAY}`)
      }
      canaryChecks++
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  })().catch((err: Error) => { failures.push(ascii(err.message)) })

  /** Run one fuzz connection's frames; throws a {@link FuzzFailure} naming the frame and the seed. */
  async function runConnection (index: number, route: RouteKind, path: string, frames: number): Promise<void> {
    const source = new FrameSource(connectionSeed(seed, index), index, route)
    const multiplexed = route === 'multiplex'
    let client: TestClient = await openClient(t, `${base}${path}`)
    try {
      await fuzzOn()
    } finally {
      client.close()
    }

    async function fuzzOn (): Promise<void> {
      /** request_ids (canonical) of streamed lists: their late pages may still come in. */
      const streamIds = new Set<string>()
      let serial = 0
      /** The last few frames sent, for the failure message. */
      const recent: string[] = []

      for (let i = 0; i < frames; i++) {
        const frame = source.next()
        stats.frames++
        recent.push(preview(frame, 200))
        if (recent.length > 4) recent.shift()
        const fail = (problem: string): never => {
          throw new FuzzFailure(ascii(`connection ${index} (${path}) frame ${i}: ${problem}; frame ${preview(frame)}; ${REPLAY}` +
            `; the frames before it: ${recent.slice(0, -1).join(' | ')}`))
        }

        /** The next reply or event (unwrapped from its envelope and checked), or the close. */
        const receive = async (): Promise<{ reply: WireReply, stream?: unknown } | { closed: number }> => {
          let message: WireReply | { closed: number }
          try {
            message = await Promise.race([client.next(BOUND), client.closed.then((c) => ({ closed: c.code }))])
          } catch (err) {
            return fail(`no reply: ${(err as Error).message}`)
          }
          if ('closed' in message) return message
          let reply: WireReply = message
          let stream: unknown
          if (multiplexed) {
            const keys = Object.keys(message).sort()
            if (keys.join() !== 'payload,stream') fail(`not an envelope: ${JSON.stringify(message).slice(0, 300)}`)
            stream = (message as unknown as { stream: unknown }).stream
            reply = (message as unknown as { payload: WireReply }).payload
          }
          const shown = JSON.stringify(reply).slice(0, 300)
          if (reply === null || typeof reply !== 'object' || Object.keys(reply).sort().join() !== REPLY_KEYS.join()) fail(`not exactly the five keys: ${shown}`)
          if (!Array.isArray(reply.errors)) fail(`errors is not an array: ${shown}`)
          const status = reply.response_status
          if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) fail(`bad response_status: ${shown}`)
          const errors = JSON.stringify(reply.errors)
          for (const leak of LEAKS) if (leak.test(errors)) fail(`errors leak internals (${String(leak)}): ${errors.slice(0, 500)}`)
          if (status >= 400 && (reply.data !== null || reply.errors.length === 0)) fail(`an error reply must have data null and an error: ${shown}`)
          if (status >= 500) {
            stats.findings.push(ascii(`HTTP-${status} from connection ${index} (${path}) frame ${i}: ${shown}; frame ${preview(frame)}; ${REPLAY}`))
          }
          return { reply, stream }
        }

        /** The reply to this frame: events of this connection's subscriptions (and late stream pages) skipped. */
        const replyTo = async (options: { skipStreams: 'none' | 'others' | 'all' }): Promise<{ reply: WireReply, stream?: unknown } | { closed: number }> => {
          for (let skipped = 0; ; skipped++) {
            if (skipped > 10_000) fail('more than 10,000 events without the reply')
            const got = await receive()
            if ('closed' in got) return got
            const id = JSON.stringify(got.reply.request_id)
            if (EVENT_ACTIONS.has(got.reply.action as string) && source.subscriptionIds.has(id) && got.reply.response_status < 300) {
              stats.events++
              continue
            }
            if (options.skipStreams !== 'none' && got.reply.action === 'list' && got.reply.response_status === 200 && streamIds.has(id) &&
              (options.skipStreams === 'all' || !(frame.action === 'list' && id === frame.requestId))) {
              stats.streamPages++
              continue
            }
            return got
          }
        }

        client.send(frame.payload, { binary: frame.binary })

        if (frame.expect === 'close') {
          let code: number
          try {
            code = (await client.waitClose(BOUND)).code
          } catch (err) {
            return fail(`expected close ${frame.closeCode ?? '?'}: ${(err as Error).message}`)
          }
          if (code !== frame.closeCode) fail(`closed with ${code}, expected ${frame.closeCode ?? '?'}`)
          client = await openClient(t, `${base}${path}`)
          stats.reconnects++
          continue
        }

        const got = await replyTo({ skipStreams: 'others' })
        if ('closed' in got) {
          if (frame.expect === 'binary' && got.closed === 1003) {
            client = await openClient(t, `${base}${path}`)
            stats.reconnects++
            continue
          }
          fail(`socket closed with ${got.closed} instead of a reply`)
          return
        }
        const { reply, stream } = got
        stats.replies++
        stats.byStatus.set(reply.response_status, (stats.byStatus.get(reply.response_status) ?? 0) + 1)
        const id = JSON.stringify(reply.request_id)
        if (id !== frame.requestId && !(id === 'null' && frame.mayDropId)) {
          fail(`reply request_id ${id.slice(0, 100)}, expected ${frame.requestId.slice(0, 100)}: ${JSON.stringify(reply).slice(0, 300)}`)
        }
        if (frame.expect === 'binary' && reply.response_status !== 400) fail(`binary frame answered ${reply.response_status}, expected 400`)
        if (multiplexed && stream !== frame.stream) fail(`reply on stream ${JSON.stringify(stream)}, expected ${JSON.stringify(frame.stream)}`)

        // A streamed list goes on after its first page: read it to the end, or cancel a long one.
        const data = reply.data as { count?: unknown, limit?: unknown, offset?: unknown } | null
        if (route === 'stream' && frame.action === 'list' && reply.action === 'list' && reply.response_status === 200 &&
            data !== null && typeof data.count === 'number' && typeof data.limit === 'number' && typeof data.offset === 'number') {
          streamIds.add(id)
          // Each page counts the rows again (other connections write meanwhile): the stream
          // ends at the first page whose offset + limit reaches that page's own count.
          const { limit } = data
          let { offset, count } = data
          if (offset + limit < count && (count - offset - limit) / limit <= 8) {
            while (offset + limit < count) {
              const page = await replyTo({ skipStreams: 'none' })
              if ('closed' in page) return fail(`socket closed with ${page.closed} during a streamed list`)
              const next = page.reply.data as { offset?: unknown, count?: unknown } | null
              if (page.reply.action !== 'list' || JSON.stringify(page.reply.request_id) !== id ||
                  typeof next?.offset !== 'number' || next.offset !== offset + limit || typeof next.count !== 'number') {
                fail(`expected the streamed page at offset ${offset + limit}, got ${JSON.stringify(page.reply).slice(0, 300)}`)
              }
              offset += limit
              count = next?.count as number
              stats.streamPages++
            }
          } else if (offset + limit < count) {
            const cancelId = `cancel${index}-${serial++}`
            client.send({ action: 'list_cancel', request_id: cancelId })
            const cancelled = await replyTo({ skipStreams: 'all' })
            if ('closed' in cancelled) return fail(`socket closed with ${cancelled.closed} after list_cancel`)
            if (cancelled.reply.request_id !== cancelId || cancelled.reply.response_status !== 200) {
              fail(`expected the list_cancel reply, got ${JSON.stringify(cancelled.reply).slice(0, 300)}`)
            }
          }
        }
      }
    }
  }

  const started = Date.now()
  const per = Math.ceil(frames / CONNECTIONS.length)
  const results = await Promise.allSettled(CONNECTIONS.map(async ({ route, path }, index) => await runConnection(index, route, path, per)))
  fuzzing = false
  const elapsed = Date.now() - started
  for (const result of results) {
    if (result.status === 'rejected') {
      const err = result.reason as Error
      failures.push(err instanceof FuzzFailure ? err.message : ascii(`${err.stack ?? String(err)}; ${REPLAY}`))
    }
  }
  await canaryLoop

  const statuses = [...stats.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')
  t.comment(`${stats.frames} frames in ${elapsed} ms on ${CONNECTIONS.length} connections: ${stats.replies} replies (${statuses}), ` +
    `${stats.events} events, ${stats.streamPages} further stream pages, ${stats.reconnects} reconnects; canary answered ${canaryChecks}×`)
  framesSent += stats.frames
  t.ok(stats.frames >= frames, `every planned frame sent (${stats.frames} of ${frames})`)
  t.strictSame(failures, [], `every frame got its reply or its close code (${REPLAY})`)
  t.ok(canaryChecks > 0, 'the canary connection kept working during the run')
  for (const finding of stats.findings) t.comment(`finding: ${finding}`)
  t.equal(stats.findings.length, 0, `no 500 for bad input — docs/protocol.md wants a 4xx (${REPLAY})`)

  // Nothing leaked into the prototypes (the server runs in this process).
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype not polluted')
  t.notOk(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted'), 'no own "polluted" key on Object.prototype')

  // The server works: a fresh connection creates and retrieves.
  const fresh = await openClient(t, `${base}/ws/`)
  const created = await fresh.request('create', { data: { username: 'after-fuzz', email: 'after@example.com', password1: 'pw', password2: 'pw' } })
  t.equal(created.response_status, 201, 'a fresh connection creates after the run')
  const retrieved = await fresh.request('retrieve', { pk: created.data.id })
  t.equal(retrieved.response_status, 200, 'and retrieves what it created')
  t.strictSame(retrieved.data, created.data, 'the same object')
  fresh.close()
  canary.close()

  // Every socket released, then the heap back near where it started.
  await eventually(() => app.websocketServer.clients.size === 0, 'every socket closed on the server')
  const heapAfter = await settle(gc)
  const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
  t.comment(`heapUsed before ${mib(heapBefore)}, after ${mib(heapAfter)} (${gc === undefined ? 'no gc available' : 'after a full gc'})`)
  t.ok(heapAfter - heapBefore < 64 * 1024 * 1024, `heap within +64 MiB of its start (${mib(heapAfter - heapBefore)})`)
}
