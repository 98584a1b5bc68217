/**
 * `app.wsRest`: the plugin's public surface on a Fastify instance.
 *
 * The decorator is a getter, so `this` is the instance it is read from: a route or hook
 * declared through `app.wsRest` inside a plugin belongs to that plugin's encapsulation
 * context, exactly like `app.get(...)` / `app.addHook(...)` would.
 */
import type { MikroORM } from '@mikro-orm/core'
import type { TSchema } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import { HookAfterReady, InvalidOption } from './errors.js'
import { addPreActionHook, type PreActionHook } from './hooks.js'
import { declareRoute, type RouteOptions } from './route.js'
import type { PluginState } from './state.js'

/** What `app.wsRest` offers. */
export interface WsRest {
  /** Declare a WebSocket route in this encapsulation context. */
  route: <E extends object = any, C extends TSchema = TSchema, U extends TSchema = TSchema, R extends TSchema = TSchema>(
    path: string,
    options: RouteOptions<E, C, U, R>
  ) => void
  /** Add a preAction hook to this encapsulation context (and the contexts inside it). */
  addHook: (name: 'preAction', hook: PreActionHook) => void
  /** The MikroORM instance the plugin was registered with. */
  readonly orm: MikroORM | undefined
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
        addHook (name, hook) {
          if (name !== 'preAction') throw new InvalidOption('addHook', `unknown hook "${String(name)}" (only "preAction")`)
          // As with Fastify's own hooks: routes fix their chain at ready, so a later hook would apply to none of them.
          if (state.ready) throw new HookAfterReady()
          addPreActionHook(instance, hook)
        },
        orm: state.options.orm
      }
      facades.set(this, facade)
    }
    return facade
  }
}
