/**
 * The `preAction` hook chain, with Fastify's encapsulation: a hook added in a context
 * runs for the routes of that context and of the contexts registered inside it, never
 * for a sibling's or a parent's. Hooks are async; throwing denies the action (a
 * PermissionDenied → 403, a ValidationError → 400, anything else → 500).
 */
import type { FastifyInstance } from 'fastify'
import type { ActionContext } from './context.js'
import { InvalidOption } from './errors.js'
/** Own preAction hooks of one encapsulation context, behind a symbol (Fastify's lib/symbols.js pattern). */
const kPreActionHooks = Symbol('fastify-ws-rest.preActionHooks')

/** A preAction hook: runs after the permission check and before validation and the handler. */
export type PreActionHook = (ctx: ActionContext, args: Record<string, unknown>) => void | Promise<void>

type WithHooks = FastifyInstance & { [kPreActionHooks]?: PreActionHook[] }

/** Add a preAction hook to `instance`'s encapsulation context. */
export function addPreActionHook (instance: FastifyInstance, hook: PreActionHook): void {
  if (typeof hook !== 'function') throw new InvalidOption('preAction', 'hook must be a function')
  const target = instance as WithHooks
  // Fastify makes a child context with Object.create(parent); an own array per
  // context keeps a child's hooks from leaking into its parent or siblings.
  if (!Object.hasOwn(target, kPreActionHooks)) target[kPreActionHooks] = []
  target[kPreActionHooks]!.push(hook)
}

/**
 * Every hook that applies in `instance`'s context, outermost context first, by walking
 * the prototype chain Fastify's encapsulation builds.
 */
export function resolvePreActionHooks (instance: FastifyInstance): PreActionHook[] {
  const chain: PreActionHook[][] = []
  for (let ctx: object | null = instance; ctx !== null; ctx = Object.getPrototypeOf(ctx)) {
    if (Object.hasOwn(ctx, kPreActionHooks)) chain.unshift((ctx as WithHooks)[kPreActionHooks]!)
  }
  return chain.flat()
}
