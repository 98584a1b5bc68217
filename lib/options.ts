/**
 * Plugin options, checked once at registration.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { WebsocketPluginOptions } from '@fastify/websocket'
import { resolveAsyncApiOption, type AsyncApiPluginOptions, type ResolvedAsyncApi } from './asyncapi/options.js'
import type { BroadcastLayer } from './layers/layer.js'
import { MemoryLayer } from './layers/memory.js'
import { resolveResume, type ResolvedResume, type ResumeOptions } from './observer/resume.js'
import { InvalidOption } from './errors.js'
import { checkOrm, positiveInteger } from './option-checks.js'

/** Options of `app.register(wsRest, options)`. */
export interface WsRestOptions {
  /** An initialised MikroORM instance; needed by routes with an entity and by `ctx.em`. */
  orm?: MikroORM
  /** Largest frame accepted, in bytes; a larger one closes the socket with 1009. Default 1 MiB. */
  maxPayload?: number
  /** Deepest JSON nesting accepted in a frame; deeper → 400. Default 64. */
  maxDepth?: number
  /** How long `app.close()` waits for in-flight actions before closing sockets with 1001, in ms. Default 10 s. */
  closeTimeout?: number
  /** Options for @fastify/websocket, used only when the plugin registers it (the app has not). */
  websocket?: WebsocketPluginOptions
  /**
   * Serve the AsyncAPI 3.0 document of the declared routes at `path` (default
   * `/asyncapi.json`), a plain HTTP GET; `true` for the defaults. Off by default.
   */
  asyncapi?: AsyncApiPluginOptions | boolean
  /**
   * How events reach subscribers: in this process (default, a new `MemoryLayer`), or
   * across every instance sharing a `RedisLayer`. The plugin closes it with the app.
   */
  broadcast?: BroadcastLayer
  /**
   * Bytes a socket may have waiting to be sent before the client is judged not to be
   * reading and is closed with 1013 (its subscriptions released). Default 4 MiB.
   */
  maxOutbound?: number
  /**
   * Origins (the `Origin` header of a browser's upgrade) allowed to open a socket, or a
   * function deciding; any other origin is refused with HTTP 403 — what stops another site
   * from opening a socket with your users' cookies (cross-site WebSocket hijacking). An
   * upgrade without an `Origin` (not a browser) is allowed. Default: every origin.
   */
  allowedOrigins?: string[] | ((origin: string) => boolean)
  /** Actions a socket may send per second (a token bucket of that size); past it → 429. Default 1000. */
  maxActionsPerSecond?: number
  /** Actions one socket (one stream) may have waiting or running at once; past it → 429. Default 256. */
  maxInFlight?: number
  /** Subscriptions one socket (one stream) may hold; past it → 429. Default 1000. */
  maxSubscriptions?: number
  /** Subscriptions one client (its principal: the app's or the user, else the address) may hold on all its sockets, parked ones included; past it → 429. Default 10,000. */
  maxSubscriptionsPerClient?: number
  /** Subscriptions this process holds in all, parked ones included; past it → 429. Default 1,000,000. */
  maxSubscriptionsTotal?: number
  /**
   * Characters of `filter` and `search` (as JSON) the subscriptions of one socket (one
   * stream) may hold in all; a subscribe past it → 429. Default 65,536.
   */
  maxFilterChars?: number
  /** Open sockets in all; an upgrade past it is refused with HTTP 503. Default 10,000. */
  maxConnections?: number
  /**
   * Open sockets per client IP (`request.ip`); an upgrade past it is refused with HTTP 429.
   * Default: no per-address cap (only `maxConnections`) — many real clients share one
   * address (NAT, a corporate proxy, a load balancer without `trustProxy`), and a default
   * cap refused them. Set it when clients have addresses of their own.
   */
  maxConnectionsPerIp?: number
  /**
   * Milliseconds between pings; a socket that has not answered the previous ping by the
   * next one is dropped (a dead peer, a vanished network). 0 turns heartbeats off. Default 30 s.
   */
  heartbeatInterval?: number
  /**
   * Resumable subscriptions (a client's subscribe frame carrying `"resume"`): how long a
   * subscription whose socket went away keeps its events for a reconnect, how many it
   * keeps, and how long a claim waits for another instance. `false` turns them off.
   * Default `{ window: 60000, maxEvents: 500, claimTimeout: 1000 }`.
   */
  resume?: ResumeOptions | false
}

/** Options after defaults. */
export interface ResolvedOptions {
  orm: MikroORM | undefined
  maxPayload: number
  maxDepth: number
  closeTimeout: number
  websocket: WebsocketPluginOptions
  asyncapi: ResolvedAsyncApi | undefined
  broadcast: BroadcastLayer
  maxOutbound: number
  allowedOrigins: ((origin: string) => boolean) | undefined
  maxActionsPerSecond: number
  maxInFlight: number
  maxSubscriptions: number
  maxSubscriptionsPerClient: number
  maxSubscriptionsTotal: number
  maxFilterChars: number
  maxConnections: number
  maxConnectionsPerIp: number
  heartbeatInterval: number
  resume: ResolvedResume | false
}

/** Validate the plugin options, failing fast with a coded error naming the option. */
export function resolveOptions (options: WsRestOptions | undefined): ResolvedOptions {
  const opts = (options ?? {}) as Record<string, unknown>
  if (typeof opts !== 'object') throw new InvalidOption('options', 'must be an object')
  const websocket = opts.websocket ?? {}
  if (typeof websocket !== 'object' || websocket === null) throw new InvalidOption('websocket', 'must be an object')
  return {
    orm: checkOrm('orm', opts.orm),
    maxPayload: positiveInteger('maxPayload', opts.maxPayload, 1024 * 1024),
    maxDepth: positiveInteger('maxDepth', opts.maxDepth, 64),
    closeTimeout: positiveInteger('closeTimeout', opts.closeTimeout, 10_000),
    websocket: websocket as WebsocketPluginOptions,
    asyncapi: resolveAsyncApiOption(opts.asyncapi),
    broadcast: checkLayer(opts.broadcast),
    maxOutbound: positiveInteger('maxOutbound', opts.maxOutbound, 4 * 1024 * 1024),
    allowedOrigins: checkOrigins(opts.allowedOrigins),
    maxActionsPerSecond: positiveInteger('maxActionsPerSecond', opts.maxActionsPerSecond, 1000),
    maxInFlight: positiveInteger('maxInFlight', opts.maxInFlight, 256),
    maxSubscriptions: positiveInteger('maxSubscriptions', opts.maxSubscriptions, 1000),
    maxSubscriptionsPerClient: positiveInteger('maxSubscriptionsPerClient', opts.maxSubscriptionsPerClient, 10_000),
    maxSubscriptionsTotal: positiveInteger('maxSubscriptionsTotal', opts.maxSubscriptionsTotal, 1_000_000),
    maxFilterChars: positiveInteger('maxFilterChars', opts.maxFilterChars, 65_536),
    maxConnections: positiveInteger('maxConnections', opts.maxConnections, 10_000),
    maxConnectionsPerIp: positiveInteger('maxConnectionsPerIp', opts.maxConnectionsPerIp, Infinity),
    heartbeatInterval: opts.heartbeatInterval === 0 ? 0 : positiveInteger('heartbeatInterval', opts.heartbeatInterval, 30_000),
    resume: resolveResume(opts.resume)
  }
}

/** A broadcast layer, or a new in-process one. */
function checkLayer (layer: unknown): BroadcastLayer {
  if (layer === undefined) return new MemoryLayer()
  const candidate = layer as Partial<BroadcastLayer> | null
  if (candidate === null || typeof candidate !== 'object' ||
      !(['publish', 'listen', 'unlisten', 'groups', 'close'] as const).every((m) => typeof candidate[m] === 'function')) {
    throw new InvalidOption('broadcast', 'must be a broadcast layer (MemoryLayer, RedisLayer, or an object with publish/listen/unlisten/groups/close)')
  }
  return layer as BroadcastLayer
}

/** The origin check, from a list of origins or the app's own function. */
function checkOrigins (value: unknown): ((origin: string) => boolean) | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'function') return value as (origin: string) => boolean
  if (!Array.isArray(value) || value.some((o) => typeof o !== 'string')) {
    throw new InvalidOption('allowedOrigins', 'must be an array of origins (e.g. "https://app.example.com") or a function')
  }
  // Origins compare as the browser sends them: scheme://host[:port], no path, case-insensitive host.
  const allowed = new Set(value.map((o: string) => o.toLowerCase().replace(/\/+$/, '')))
  return (origin) => allowed.has(origin.toLowerCase())
}
