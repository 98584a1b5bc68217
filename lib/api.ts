/**
 * `app.wsRest`: the plugin's public surface on a Fastify instance.
 *
 * The decorator is a getter, so `this` is the instance it is read from: a route or hook
 * declared through `app.wsRest` inside a plugin belongs to that plugin's encapsulation
 * context, exactly like `app.get(...)` / `app.addHook(...)` would.
 */
import type { EntityName, MikroORM } from '@mikro-orm/core'
import type { TSchema } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { documentOf, type AsyncApiDocument } from './asyncapi/document.js'
import type { AsyncApiOptions } from './asyncapi/options.js'
import { declareRoute } from './declare-route.js'
import { HookAfterReady, InvalidOption } from './errors.js'
import { addPreActionHook, type PreActionHook } from './hooks.js'
import { declareMultiplex, type MultiplexOptions } from './multiplexer.js'
import type { ChangeKind, Row } from './observer/changes.js'
import type { RouteOptions } from './route.js'
import { compileShaper } from './shape.js'
import type { PluginState } from './state.js'

/** A committed change as `app.wsRest.observe` hands it to a `groups` function. */
export interface ModelChange {
  /** The entity's class name. */
  readonly entity: string
  readonly change: ChangeKind
  /** The primary key value. */
  readonly pk: unknown
  /** The row before the change (`null` for a create): plain JSON values, hidden properties left out. */
  readonly before: Readonly<Row> | null
  /** The row after the change (`null` for a delete). */
  readonly after: Readonly<Row> | null
}

/** Options of `app.wsRest.observe`. */
export interface ObserveOptions {
  /** More groups this entity's changes go to (DCRF's `groups_for_signal`), besides the built-in per-row and per-entity ones. */
  groups?: (change: ModelChange) => Iterable<string>
  /**
   * The shape of this observer's events in its groups (DCRF's `@model_observer.serializer`):
   * a TypeBox schema the row is shaped by, or a function of the row; rendered once per change.
   * Without it, a subscriber's route shapes them (its response schema), or they carry `{pk}`.
   */
  serializer?: TSchema | ((row: Readonly<Row>) => unknown)
}

/** Options of `app.wsRest.publish`. */
export interface PublishOptions {
  /** The event's `action`. Default `"event"`. */
  action?: string
  /** The event's `response_status`. Default 200. */
  status?: number
}

/** What `app.wsRest` offers. */
export interface WsRest {
  /** Declare a WebSocket route in this encapsulation context. */
  route: <E extends object = any, C extends TSchema = TSchema, U extends TSchema = TSchema, R extends TSchema = TSchema>(
    path: string,
    options: RouteOptions<E, C, U, R>
  ) => void
  /** Declare a multiplexed WebSocket route: one socket, several streams, each a route. */
  multiplex: (path: string, options: MultiplexOptions) => void
  /**
   * Publish an event to `group`: every socket subscribed to it (`ctx.subscribe`) — on this
   * instance and, with a shared broadcast layer, on every other — receives
   * `{action, data, response_status, request_id: <its subscription's>}`. `data` must be JSON.
   */
  publish: (group: string, data: unknown, options?: PublishOptions) => void
  /** Publish the committed changes of `entity`, optionally to groups of the app's own as well. */
  observe: (entity: EntityName<any>, options?: ObserveOptions) => void
  /** Add a preAction hook to this encapsulation context (and the contexts inside it). */
  addHook: (name: 'preAction', hook: PreActionHook) => void
  /** The MikroORM instance the plugin was registered with. */
  readonly orm: MikroORM | undefined
  /**
   * The AsyncAPI 3.0 document of every route declared so far (all contexts of this
   * registration), as plain JSON. `options` override the plugin option's `info` and `servers`.
   */
  asyncapi: (options?: AsyncApiOptions) => AsyncApiDocument
}

/** Build the `wsRest` getter: one facade per encapsulation context, made on first access. */
export function wsRestGetter (state: PluginState): (this: FastifyInstance) => WsRest {
  const facades = new WeakMap<FastifyInstance, WsRest>()
  return function getWsRest (this: FastifyInstance): WsRest {
    let facade = facades.get(this)
    if (facade === undefined) {
      const instance = this
      facade = {
        route (path, options) {
          declareRoute(instance, state, path, options as RouteOptions)
        },
        multiplex (path, options) {
          declareMultiplex(instance, state, path, options)
        },
        publish (group, data, options = {}) {
          if (typeof group !== 'string') throw new InvalidOption('group', 'must be a string')
          const action = options.action ?? 'event'
          const status = options.status ?? 200
          if (typeof action !== 'string') throw new InvalidOption('action', 'must be a string')
          if (!Number.isInteger(status)) throw new InvalidOption('status', 'must be an integer')
          // Encoded now: data JSON cannot carry (a BigInt, a cycle) fails the caller, not a subscriber.
          const json = JSON.parse(JSON.stringify(data ?? null)) as unknown
          state.hub.publish(group, { kind: 'custom', action, status, data: json })
        },
        observe (entity, options = {}) {
          if (options.groups !== undefined && typeof options.groups !== 'function') throw new InvalidOption('groups', 'must be a function')
          const serializer = options.serializer
          if (serializer !== undefined && typeof serializer !== 'function' && (typeof serializer !== 'object' || serializer === null)) {
            throw new InvalidOption('serializer', 'must be a TypeBox schema or a function of the row')
          }
          const shape = serializer === undefined ? undefined : typeof serializer === 'function' ? serializer : compileShaper(serializer)
          state.observeEntity(entity, options.groups, shape as ((row: Row) => unknown) | undefined)
        },
        addHook (name, hook) {
          if (name !== 'preAction') throw new InvalidOption('addHook', `unknown hook "${String(name)}" (only "preAction")`)
          // As with Fastify's own hooks: routes fix their chain at ready, so a later hook would apply to none of them.
          if (state.ready) throw new HookAfterReady()
          addPreActionHook(instance, hook)
        },
        orm: state.options.orm,
        asyncapi: (options) => documentOf(state, options)
      }
      facades.set(this, facade)
    }
    return facade
  }
}
