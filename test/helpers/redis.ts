/**
 * The Redis the RedisLayer tests run against, and tools to observe and disturb it.
 *
 * - `REDIS_URL` (default `redis://127.0.0.1:6379`) says where Redis is. Every test uses a
 *   channel prefix of its own (`uniquePrefix()`), so test files running in parallel on one
 *   Redis never see each other's channels or connections.
 * - When Redis cannot be reached, a file that imports this module fails to load when
 *   `REQUIRE_SERVICES=1` (CI), and otherwise plans no test, with the reason, and declares
 *   none (`redisAvailable` is false).
 */
import { Redis } from 'ioredis'
import { randomBytes } from 'node:crypto'
import { createServer, connect as tcpConnect, type AddressInfo, type Socket } from 'node:net'
import tap from 'tap'
import type { Teardown } from './async.js'
export { eventually } from './async.js'

/** Where the tests' Redis is. */
export const redisUrl = process.env.REDIS_URL === undefined || process.env.REDIS_URL === ''
  ? 'redis://127.0.0.1:6379'
  : process.env.REDIS_URL

/** `url` with any password masked, for messages. */
function shown (url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
}

/** PING over a short-lived connection that never retries: the reason Redis is unusable, or undefined. */
async function problem (): Promise<string | undefined> {
  const client = new Redis(redisUrl, {
    lazyConnect: true,
    connectTimeout: 2_000,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0
  })
  // The socket's error says why (ECONNREFUSED…); connect() only rejects with "Connection is closed."
  let cause: Error | undefined
  client.on('error', (err: Error) => { cause ??= err })
  try {
    await client.connect()
    await client.ping()
    return undefined
  } catch (err) {
    return (cause ?? err as Error).message
  } finally {
    client.disconnect()
  }
}

// Is the service there? Checked once per test file, before any test is declared.
const unavailable = await problem()
if (unavailable !== undefined) {
  const reason = `Redis at ${shown(redisUrl)} is not available (${unavailable})`
  if (process.env.REQUIRE_SERVICES === '1') {
    throw new Error(`${reason}; REQUIRE_SERVICES=1 makes this a failure`)
  }
  tap.plan(0, `${reason}; set REQUIRE_SERVICES=1 to fail instead`)
}

/** False when Redis is not reachable: the file must then declare no test (its plan is 0). */
export const redisAvailable = unavailable === undefined

/** A channel prefix no other test uses. */
export function uniquePrefix (): string {
  return `wsrest-test:${randomBytes(6).toString('hex')}:`
}

/** A plain client for inspecting Redis (PUBSUB, CLIENT LIST, CLIENT KILL), closed in teardown. */
export async function admin (t: Teardown): Promise<Redis> {
  const client = new Redis(redisUrl, { lazyConnect: true, connectTimeout: 2_000 })
  t.teardown(async () => { await client.quit().catch(() => client.disconnect()) })
  await client.connect()
  return client
}

/**
 * The channels matching `prefix*` that have at least one subscriber: the groups of
 * subscriptions. The two channels each app keeps for resuming subscriptions
 * (`wsrest:resume:…`, lib/observer/resume.ts) are left out.
 */
export async function channels (client: Redis, prefix: string): Promise<string[]> {
  const all = (await client.pubsub('CHANNELS', `${prefix}*`)) as string[]
  return all.filter((c) => !c.startsWith(`${prefix}wsrest:resume:`)).sort()
}

/** How many connections are subscribed to `channel`. */
export async function subscriberCount (client: Redis, channel: string): Promise<number> {
  const reply = (await client.pubsub('NUMSUB', channel)) as [string, number]
  return Number(reply[1])
}

/** One line of CLIENT LIST, as fields (`id`, `name`, `sub`, …). */
export type ClientInfo = Record<string, string>

/** The connections whose name contains `text`. */
export async function clientsNamed (client: Redis, text: string): Promise<ClientInfo[]> {
  const list = (await client.client('LIST')) as string
  return list.split('\n').filter((line) => line !== '').map((line) =>
    Object.fromEntries(line.split(' ').map((field) => {
      const at = field.indexOf('=')
      return [field.slice(0, at), field.slice(at + 1)]
    }))
  ).filter((info) => info.name?.includes(text) === true)
}

// The recording logger needs no Redis (helpers/logger.ts); re-exported for the Redis tests.
export { LEVEL, recordingLogger, type LogLine, type RecordingLogger } from './logger.js'

/**
 * A TCP proxy to Redis that a test can take down and bring back up, to play an outage or
 * a restart. While down it resets every connection, open or new. Closed in teardown.
 */
export interface RedisProxy {
  /** The proxy's URL: give it to the layer under test. */
  url: string
  down: () => void
  up: () => void
}

export async function redisProxy (t: Teardown): Promise<RedisProxy> {
  const target = new URL(redisUrl)
  const open = new Set<Socket>()
  let isDown = false
  const server = createServer((client) => {
    if (isDown) { client.resetAndDestroy(); return }
    const upstream = tcpConnect(Number(target.port === '' ? 6379 : target.port), target.hostname)
    for (const [socket, other] of [[client, upstream], [upstream, client]] as const) {
      open.add(socket)
      socket.pipe(other)
      socket.on('error', () => other.destroy())
      socket.on('close', () => { open.delete(socket); other.destroy() })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of open) socket.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as AddressInfo
  const url = new URL(redisUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    url: url.href,
    down: () => {
      isDown = true
      for (const socket of open) socket.resetAndDestroy()
    },
    up: () => { isDown = false }
  }
}
