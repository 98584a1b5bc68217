/**
 * Plugin options, checked once at registration, and the plugin's shared state.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { WebsocketPluginOptions } from '@fastify/websocket'
import type { BroadcastLayer } from './layers/layer.js'
import { MemoryLayer } from './layers/memory.js'
import type { Hub } from './observer/hub.js'
import type { CompiledRoute } from './route.js'
import type { Session } from './session.js'
import { InvalidOption } from './errors.js'

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
   * How events reach subscribers: in this process (default, a new `MemoryLayer`), or
   * across every instance sharing a `RedisLayer`. The plugin closes it with the app.
   */
  broadcast?: BroadcastLayer
  /**
   * Bytes a socket may have waiting to be sent before the client is judged not to be
   * reading and is closed with 1013 (its subscriptions released). Default 4 MiB.
   */
  maxOutbound?: number
}

/** Options after defaults. */
export interface ResolvedOptions {
  orm: MikroORM | undefined
  maxPayload: number
  maxDepth: number
  closeTimeout: number
  websocket: WebsocketPluginOptions
  broadcast: BroadcastLayer
  maxOutbound: number
}

/** State shared by every route of one registration. */
export interface PluginState {
  readonly options: ResolvedOptions
  /** Open sockets, for graceful shutdown. */
  readonly sessions: Set<Session>
  /** Subscriptions, by group, on the broadcast layer. */
  readonly hub: Hub
  /** Start publishing the changes of an entity (by class name). */
  observe: (className: string) => void
  /** `app.wsRest.observe`: publish an entity's changes, also to the groups `groups` names. */
  observeEntity: (entity: unknown, groups?: (change: any) => Iterable<string>) => void
  /** Declared routes, whose hook chains are fixed when the app is ready. */
  readonly routes: CompiledRoute[]
  /** Set once the app is ready: no more preAction hooks from then on. */
  ready: boolean
}

/** A positive integer option, or `fallback` when absent; anything else fails naming the option. */
export function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOption(name, 'must be a positive integer')
  }
  return value
}

/** Check that `orm` looks like an initialised MikroORM instance. */
export function checkOrm (name: string, orm: unknown): MikroORM | undefined {
  if (orm === undefined) return undefined
  const candidate = orm as Partial<MikroORM> | null
  if (candidate === null || typeof candidate !== 'object' || typeof candidate.em?.fork !== 'function' ||
      typeof candidate.getMetadata !== 'function') {
    throw new InvalidOption(name, 'must be an initialised MikroORM instance (await MikroORM.init(...))')
  }
  return orm as MikroORM
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
    broadcast: checkLayer(opts.broadcast),
    maxOutbound: positiveInteger('maxOutbound', opts.maxOutbound, 4 * 1024 * 1024)
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
