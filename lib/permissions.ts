/**
 * Permission objects, DCRF-style: `canConnect` decides at the upgrade (refused → HTTP
 * 403, the socket never opens), `hasPermission` before every action and before any
 * lookup (refused → 403 reply). A method a permission does not define allows, as in DRF,
 * and that rule carries through `and` / `or` / `not`.
 */
import type { FastifyRequest } from 'fastify'
import type { ActionContext } from './context.js'
import { PermissionDenied } from './errors.js'

/** A permission: any method may be omitted (omitted = allow). */
export interface Permission {
  canConnect?: (request: FastifyRequest) => boolean | Promise<boolean>
  hasPermission?: (ctx: ActionContext, action: string, args: Record<string, unknown>) => boolean | Promise<boolean>
  /**
   * DRF's `has_object_permission`: run on the object a detail action looked up (the entity),
   * and on the row of every event a subscriber would receive (its plain JSON row, as
   * `retrieve` would shape it from: own columns, relations as keys, hidden ones left out).
   */
  hasObjectPermission?: (ctx: ActionContext, action: string, object: Record<string, unknown>) => boolean | Promise<boolean>
}

const allow = (): boolean => true

function connectOf (p: Permission): NonNullable<Permission['canConnect']> {
  return p.canConnect ?? allow
}

function actionOf (p: Permission): NonNullable<Permission['hasPermission']> {
  return p.hasPermission ?? allow
}

function objectOf (p: Permission): NonNullable<Permission['hasObjectPermission']> {
  return p.hasObjectPermission ?? allow
}

/** Allows everything. */
export const allowAny: Permission = { canConnect: allow, hasPermission: allow }

/** Whether the upgrade request carries a user (set by the app's auth hook, e.g. @fastify/jwt's `request.user`). */
function hasUser (request: FastifyRequest): boolean {
  return Boolean((request as FastifyRequest & { user?: unknown }).user)
}

/** Allows only connections whose upgrade request has a `request.user`; checked at connect and per action. */
export const isAuthenticated: Permission = {
  canConnect: hasUser,
  hasPermission: (ctx) => hasUser(ctx.request)
}

/** Allows when every permission allows. */
export function and (...perms: Permission[]): Permission {
  return {
    async canConnect (request) {
      for (const p of perms) if (!(await connectOf(p)(request))) return false
      return true
    },
    async hasPermission (ctx, action, args) {
      for (const p of perms) if (!(await actionOf(p)(ctx, action, args))) return false
      return true
    },
    async hasObjectPermission (ctx, action, object) {
      for (const p of perms) if (!(await objectOf(p)(ctx, action, object))) return false
      return true
    }
  }
}

/** Allows when any permission allows. */
export function or (...perms: Permission[]): Permission {
  return {
    async canConnect (request) {
      for (const p of perms) if (await connectOf(p)(request)) return true
      return false
    },
    async hasPermission (ctx, action, args) {
      for (const p of perms) if (await actionOf(p)(ctx, action, args)) return true
      return false
    },
    async hasObjectPermission (ctx, action, object) {
      for (const p of perms) if (await objectOf(p)(ctx, action, object)) return true
      return false
    }
  }
}

/**
 * Allows what `perm` refuses. Only the checks `perm` defines are negated: negating an
 * omitted check (which allows) would refuse everything, e.g. `not(onlyActions('x'))`
 * would refuse every connection.
 */
export function not (perm: Permission): Permission {
  const negated: Permission = {}
  const { canConnect: connect, hasPermission: act, hasObjectPermission: onObject } = perm
  if (connect !== undefined) negated.canConnect = async (request) => !(await connect(request))
  if (act !== undefined) negated.hasPermission = async (ctx, action, args) => !(await act(ctx, action, args))
  if (onObject !== undefined) negated.hasObjectPermission = async (ctx, action, object) => !(await onObject(ctx, action, object))
  return negated
}

/** The mixins' actions that change nothing: what `isAuthenticatedOrReadOnly` lets anyone run. */
export const SAFE_ACTIONS: readonly string[] = [
  'list', 'retrieve', 'list_cancel', 'subscribe_instance', 'unsubscribe_instance', 'subscribe_list', 'unsubscribe_list'
]

/**
 * DRF's `IsAuthenticatedOrReadOnly`: anyone may run the read actions, only a connection with
 * `request.user` the others. A custom action is safe only when named:
 * `authenticatedOrReadOnly('search', 'whoami')`.
 */
export function authenticatedOrReadOnly (...safeCustomActions: string[]): Permission {
  const safe = new Set([...SAFE_ACTIONS, ...safeCustomActions])
  return { hasPermission: (ctx, action) => safe.has(action) || hasUser(ctx.request) }
}

/** Read actions for anyone, every other action only with `request.user` (see {@link authenticatedOrReadOnly}). */
export const isAuthenticatedOrReadOnly: Permission = authenticatedOrReadOnly()

/** Allows only the named actions (and refuses the rest): `onlyActions('list', 'retrieve')`. */
export function onlyActions (...names: string[]): Permission {
  const allowed = new Set(names)
  return { hasPermission: (_ctx, action) => allowed.has(action) }
}

/** True when every permission lets the upgrade request connect. */
export async function canConnect (perms: readonly Permission[], request: FastifyRequest): Promise<boolean> {
  for (const p of perms) {
    if (p.canConnect !== undefined && !(await p.canConnect(request))) return false
  }
  return true
}

/** Throws PermissionDenied unless every permission allows the action on `object`. */
export async function checkObjectPermissions (perms: readonly Permission[], ctx: ActionContext, object: Record<string, unknown>): Promise<void> {
  for (const p of perms) {
    if (p.hasObjectPermission !== undefined && !(await p.hasObjectPermission(ctx, ctx.action, object))) {
      throw new PermissionDenied()
    }
  }
}

/** Throws PermissionDenied unless every permission allows the action. */
export async function checkPermissions (
  perms: readonly Permission[],
  ctx: ActionContext,
  args: Record<string, unknown>
): Promise<void> {
  for (const p of perms) {
    if (p.hasPermission !== undefined && !(await p.hasPermission(ctx, ctx.action, args))) {
      throw new PermissionDenied()
    }
  }
}
