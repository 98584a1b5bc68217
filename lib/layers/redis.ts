/**
 * The Redis broadcast layer: groups shared by every server instance connected to one Redis.
 *
 * Each group is a Redis pub/sub channel (`prefix + group`). A layer subscribes to a group's
 * channel only while this process has a listener for it, and tags what it publishes with
 * its own random id so that it can ignore the echo of its own messages: those were already
 * delivered in-process, at once, and must not arrive twice.
 *
 * Redis being down never stops the app: the layer logs the outage once, keeps delivering
 * to this process's listeners, drops what other instances would have received (delivery
 * is at most once), and ioredis reconnects in the background — resubscribing to exactly
 * the groups this process listens to by then.
 *
 * ioredis is an optional peer dependency: it is loaded only when a RedisLayer is initialised,
 * so apps that broadcast in memory never need it. For the same reason nothing this module
 * exports names an ioredis type: the compiled declarations (dist/lib/layers/redis.d.ts)
 * must type-check in an app without ioredis installed, even with `skipLibCheck: false`.
 * The layer talks to its connections through RedisConnection below, the few members it
 * uses, and the compiler checks in start() that ioredis's client provides them.
 */
import type { FastifyBaseLogger } from 'fastify'
import { randomBytes } from 'node:crypto'
import { InvalidOption } from '../errors.js'
import type { BroadcastLayer, BroadcastMessage, GroupListener } from './layer.js'
import { deliverTo, ListenerRegistry } from './memory.js'

/** Options of a RedisLayer. */
export interface RedisLayerOptions {
  /** Where Redis is: a `redis://` (or `rediss://` for TLS) URL. Default `redis://127.0.0.1:6379`. */
  url?: string
  /**
   * Put before every group name to make its channel name. Default `'wsrest:'`.
   * Redis pub/sub ignores the database number, so the prefix is what keeps apps sharing
   * one Redis apart: instances of one app use the same prefix, other apps another one.
   */
  prefix?: string
  /**
   * More ioredis options (TLS, password, retryStrategy, connectTimeout…), merged into the
   * layer's. The layer sets `lazyConnect`, `connectionName`, `enableOfflineQueue`,
   * `autoResubscribe`, `autoResendUnfulfilledCommands` and `maxRetriesPerRequest` itself:
   * its delivery guarantees depend on them.
   */
  redis?: RedisConnectionOptions
}

/**
 * ioredis options (its `RedisOptions`), passed through to its client untouched. Declared
 * loosely so that this module's types do not depend on ioredis. The index signature is
 * `any`, not `unknown`: only an `any` signature accepts a value typed with ioredis's own
 * `RedisOptions` (an intersection of interfaces, which has no implicit index signature).
 */
export interface RedisConnectionOptions {
  /** Milliseconds ioredis waits for a connection; also bounds how long `init` waits for Redis. Default 10000. */
  connectTimeout?: number
  [option: string]: any
}

/** What the layer uses of an ioredis client (a subset of ioredis's `Redis`). */
interface RedisConnection {
  readonly status: string
  connect (): Promise<void>
  publish (channel: string, message: string): Promise<unknown>
  subscribe (...channels: string[]): Promise<unknown>
  unsubscribe (...channels: string[]): Promise<unknown>
  quit (): Promise<unknown>
  disconnect (): void
  on (event: 'message', listener: (channel: string, message: string) => void): unknown
  on (event: 'error', listener: (err: Error) => void): unknown
  on (event: 'close' | 'ready', listener: () => void): unknown
  once (event: 'end', listener: () => void): unknown
}

/** ioredis's `Redis` class, as the layer constructs it. */
type RedisConnectionClass = new (url: string, options: RedisConnectionOptions) => RedisConnection

const DEFAULT_URL = 'redis://127.0.0.1:6379'
const DEFAULT_PREFIX = 'wsrest:'

/** How long `close()` waits for a polite QUIT before cutting the connection. */
const QUIT_BOUND = 2_000

/** ioredis's own default connectTimeout: init never waits longer than this for Redis. */
const DEFAULT_CONNECT_TIMEOUT = 10_000

/** What travels on a channel: the publishing layer's id and the message. */
interface Envelope { o: string, m: BroadcastMessage }

function isEnvelope (value: unknown): value is Envelope {
  if (typeof value !== 'object' || value === null) return false
  const { o, m } = value as Partial<Envelope>
  return typeof o === 'string' && typeof m === 'object' && m !== null && !Array.isArray(m)
}

/** A value Redis accepts as a connection name (CLIENT SETNAME refuses spaces and control characters). */
function connectionName (text: string): string {
  return text.replace(/[^!-~]/g, '_')
}

/** One of the layer's two connections: pub/sub needs one of its own, in subscriber mode. */
type Role = 'pub' | 'sub'

const ROLE_NAMES: Record<Role, string> = { pub: 'publisher', sub: 'subscriber' }

/**
 * Groups shared through Redis by every instance using the same URL and prefix.
 *
 * Give the plugin one instance per process (`broadcast: new RedisLayer({ url })`); it calls
 * `init` with the app's logger and `close` when the app closes.
 */
export class RedisLayer implements BroadcastLayer {
  readonly remote = true
  /**
   * This instance's random id. It tags the messages it publishes, so it can ignore their
   * echo, and names its Redis connections `<prefix>pub:<id>` and `<prefix>sub:<id>`
   * (seen in CLIENT LIST).
   */
  readonly id = randomBytes(8).toString('hex')
  /** The channel prefix (see RedisLayerOptions). */
  readonly prefix: string
  private readonly url: string
  private readonly redisOptions: RedisConnectionOptions
  private readonly listeners = new ListenerRegistry()
  private log: FastifyBaseLogger | undefined
  private starting: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private publisher: RedisConnection | undefined
  private subscriber: RedisConnection | undefined
  /** The latest SUBSCRIBE/UNSUBSCRIBE sent: its answer means every earlier one is in effect too. */
  private lastCommand: Promise<unknown> = Promise.resolve()
  /** Messages not sent to Redis since the last successful publish; the first one of a run is logged. */
  private dropped = 0

  constructor (options: RedisLayerOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOption('RedisLayer', 'options must be an object')
    }
    const { url = DEFAULT_URL, prefix = DEFAULT_PREFIX, redis = {} } = options
    if (typeof url !== 'string' || !/^rediss?:$/.test(parsedProtocol(url))) {
      throw new InvalidOption('url', 'must be a redis:// (or rediss://) URL')
    }
    if (typeof prefix !== 'string') {
      throw new InvalidOption('prefix', 'must be a string')
    }
    if (typeof redis !== 'object' || redis === null || Array.isArray(redis)) {
      throw new InvalidOption('redis', 'must be an object of ioredis options')
    }
    this.url = url
    this.prefix = prefix
    this.redisOptions = redis
  }

  /**
   * Load ioredis and connect. Resolves once both connections are ready or, when Redis
   * cannot be reached, once that is logged (within the connect timeout): the app starts
   * without Redis and ioredis goes on retrying in the background. Only a missing ioredis
   * package throws. A second call (another registration sharing the layer) waits for the
   * first and keeps its logger.
   */
  async init (log: FastifyBaseLogger): Promise<void> {
    this.starting ??= this.start(log)
    await this.starting
  }

  private async start (log: FastifyBaseLogger): Promise<void> {
    this.log = log
    if (this.closing !== undefined) return
    let RedisClient: RedisConnectionClass
    try {
      // Assigning ioredis's class to RedisConnectionClass is what checks, at compile time,
      // that the structural types above match the real client.
      ({ Redis: RedisClient } = await import('ioredis'))
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') throw err
      const error = new InvalidOption('broadcast', 'RedisLayer needs the ioredis package, an optional peer dependency: npm install ioredis')
      error.cause = err
      throw error
    }
    // close() may have run while ioredis was loading: then there is nothing to open.
    if (this.closing !== undefined) return

    const common: RedisConnectionOptions = { ...this.redisOptions, lazyConnect: true }
    // No offline queue: while Redis is down a publish fails at once instead of piling up
    // in memory, and a publish in flight when the connection drops is not sent again
    // (it may have reached Redis already; delivery is at most once, never twice).
    const publisher = this.publisher = new RedisClient(this.url, {
      ...common,
      connectionName: connectionName(`${this.prefix}pub:${this.id}`),
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false
    })
    // The offline queue keeps SUBSCRIBE/UNSUBSCRIBE issued while Redis is down, in order,
    // until it is back; autoResubscribe restores the subscriptions Redis had acknowledged
    // before the loss, before that queue is replayed. maxRetriesPerRequest: null keeps
    // ioredis from failing queued commands after 20 attempts — in a long outage those
    // would be lost subscriptions.
    const subscriber = this.subscriber = new RedisClient(this.url, {
      ...common,
      connectionName: connectionName(`${this.prefix}sub:${this.id}`),
      enableOfflineQueue: true,
      autoResubscribe: true,
      autoResendUnfulfilledCommands: true,
      maxRetriesPerRequest: null
    })
    this.watch(publisher, 'pub')
    this.watch(subscriber, 'sub')
    subscriber.on('message', (channel: string, text: string) => { this.receive(channel, text) })

    const connected = Promise.allSettled([publisher.connect(), subscriber.connect()])
    // Groups listened to before init: queued now, sent when the subscriber is ready.
    const groups = this.listeners.groups()
    if (groups.length > 0) this.command('subscribe', groups)

    let timer: NodeJS.Timeout | undefined
    const bound = this.redisOptions.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), bound) })
    try {
      const outcome = await Promise.race([connected, timedOut])
      if (this.closing !== undefined) return
      // A refused connection was logged by watch(); a silent hang (something that is not
      // Redis answering, a handshake never finishing) is reported here.
      if (outcome === 'timeout') {
        this.log.error(`fastify-ws-rest: Redis is not ready after ${bound} ms; starting without it, retrying in the background (events reach this instance only until then)`)
      }
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Log a connection's outages once each: the loss (error with its cause, or warn when the
   * server just closed it), retries at debug level only, and the recovery at info.
   */
  private watch (connection: RedisConnection, role: Role): void {
    const name = `Redis ${ROLE_NAMES[role]}`
    let up = false
    let everUp = false
    let reported = false
    connection.on('error', (err: Error) => {
      if (this.closing !== undefined) return
      if (reported) {
        this.log?.debug({ err }, `fastify-ws-rest: ${name} still unreachable`)
        return
      }
      reported = true
      this.log?.error({ err }, `fastify-ws-rest: ${name} connection failed; retrying in the background (events reach this instance only until then)`)
    })
    connection.on('close', () => {
      if (!up || this.closing !== undefined) return
      up = false
      if (reported) return
      reported = true
      this.log?.warn(`fastify-ws-rest: ${name} connection lost; reconnecting`)
    })
    connection.on('ready', () => {
      if (reported) {
        const resubscribed = role === 'sub' ? ` (listening to ${this.listeners.groups().length} group(s))` : ''
        this.log?.info(`fastify-ws-rest: ${name} ${everUp ? 'reconnected' : 'connected'}${resubscribed}`)
      }
      up = everUp = true
      reported = false
    })
  }

  /** Send (or queue) SUBSCRIBE/UNSUBSCRIBE for `groups`' channels; a failure is logged, never thrown. */
  private command (name: 'subscribe' | 'unsubscribe', groups: string[]): void {
    const subscriber = this.subscriber
    if (subscriber === undefined || this.closing !== undefined) return
    this.lastCommand = subscriber[name](...groups.map((group) => this.prefix + group)).catch((err: unknown) => {
      if (this.closing !== undefined) return
      this.log?.error({ err, groups }, `fastify-ws-rest: Redis ${name} failed`)
    })
  }

  /** Resolves once Redis has acknowledged every SUBSCRIBE/UNSUBSCRIBE sent so far (one connection answers in order). */
  async settled (): Promise<void> {
    await this.lastCommand
  }

  /** A message from Redis: deliver it here unless this layer published it itself. */
  private receive (channel: string, text: string): void {
    if (this.closing !== undefined || !channel.startsWith(this.prefix)) return
    const group = channel.slice(this.prefix.length)
    let envelope: unknown
    try {
      envelope = JSON.parse(text)
    } catch {
      envelope = undefined
    }
    if (!isEnvelope(envelope)) {
      // Another writer on our channel, or another version of the layer: drop, never throw
      // (an exception here would be an 'error' on the subscriber connection).
      this.log?.warn({ channel, length: text.length }, 'fastify-ws-rest: dropped a malformed message from Redis')
      return
    }
    if (envelope.o === this.id) return
    // A copy of the set, as in MemoryLayer: a listener that unlistens while called does not skip its neighbour.
    const set = this.listeners.get(group)
    deliverTo(set === undefined ? undefined : [...set], group, envelope.m, this.log)
  }

  /**
   * Deliver to this process's listeners at once, then send to the other instances through
   * Redis without waiting. While Redis is unreachable the message reaches this process
   * only; the first failure of a run is logged, the following ones are counted.
   */
  publish (group: string, message: BroadcastMessage): void {
    // Serialised first: a listener mutating the message must not change what others receive.
    let text: string | undefined
    try {
      text = JSON.stringify({ o: this.id, m: message } satisfies Envelope)
    } catch (err) {
      this.log?.error({ err, group }, 'fastify-ws-rest: broadcast message is not JSON-safe; sent to this instance only')
    }
    const set = this.listeners.get(group)
    deliverTo(set === undefined ? undefined : [...set], group, message, this.log)

    const publisher = this.publisher
    if (text === undefined || publisher === undefined || this.closing !== undefined) return
    publisher.publish(this.prefix + group, text).then(() => {
      if (this.dropped === 0) return
      this.log?.info(`fastify-ws-rest: publishing to Redis again; ${this.dropped} message(s) did not reach other instances meanwhile`)
      this.dropped = 0
    }, (err: unknown) => {
      if (this.closing !== undefined) return
      if (this.dropped++ === 0) {
        this.log?.error({ err, group }, 'fastify-ws-rest: cannot publish to Redis; events reach this instance only until it is back')
      }
    })
  }

  /** Deliver `group`'s messages to `listener`; the first listener of a group subscribes to its channel. */
  listen (group: string, listener: GroupListener): void {
    if (this.listeners.add(group, listener)) this.command('subscribe', [group])
  }

  /** Stop delivering to `listener`; the last listener of a group unsubscribes from its channel. */
  unlisten (group: string, listener: GroupListener): void {
    if (this.listeners.remove(group, listener)) this.command('unsubscribe', [group])
  }

  /** The groups this process listens to (each one subscribed in Redis, or queued to be). */
  groups (): string[] {
    return this.listeners.groups()
  }

  /**
   * Forget every listener and close both connections: QUIT when connected (what was sent
   * before is processed first), cut at once when Redis is unreachable, so it never hangs.
   * Safe before init and more than once.
   */
  async close (): Promise<void> {
    this.closing ??= this.shutDown()
    await this.closing
  }

  private async shutDown (): Promise<void> {
    this.listeners.clear()
    const connections = [this.publisher, this.subscriber].filter((c): c is RedisConnection => c !== undefined)
    this.publisher = this.subscriber = undefined
    await Promise.all(connections.map(quit))
  }
}

/** The protocol of `url`, or '' when it is not a URL. */
function parsedProtocol (url: string): string {
  try {
    return new URL(url).protocol
  } catch {
    return ''
  }
}

/** QUIT and wait until the server has closed the connection; cut it after QUIT_BOUND or when not connected. */
async function quit (connection: RedisConnection): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect()
    return
  }
  let timer: NodeJS.Timeout | undefined
  let done = false
  const ended = new Promise<void>((resolve) => { connection.once('end', () => { done = true; resolve() }) })
  const limit = new Promise<void>((resolve) => { timer = setTimeout(resolve, QUIT_BOUND) })
  connection.quit().catch(() => { connection.disconnect() })
  try {
    await Promise.race([ended, limit])
  } finally {
    clearTimeout(timer)
  }
  if (!done) connection.disconnect()
}
