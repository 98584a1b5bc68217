/**
 * Plugin options, checked once at registration, and the plugin's shared state.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { WebsocketPluginOptions } from '@fastify/websocket'
import type { Connection } from './consumer.js'
import type { CompiledRoute } from './route.js'
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
}

/** Options after defaults. */
export interface ResolvedOptions {
  orm: MikroORM | undefined
  maxPayload: number
  maxDepth: number
  closeTimeout: number
  websocket: WebsocketPluginOptions
}

/** State shared by every route of one registration. */
export interface PluginState {
  readonly options: ResolvedOptions
  /** Open sockets, for graceful shutdown. */
  readonly connections: Set<Connection>
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
    websocket: websocket as WebsocketPluginOptions
  }
}
