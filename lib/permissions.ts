/**
 * Permission objects, DCRF-style: `canConnect` decides at the upgrade (refused → HTTP
 * 403, the socket never opens), `hasPermission` before every action and before any
 * lookup (refused → 403 reply). A method a permission does not define allows, as in DRF,
 * and that rule carries through `and` / `or` / `not`.
 */
import type { FastifyRequest } from 'fastify'
import type { ActionContext } from './action.js'
import { PermissionDenied } from './errors.js'

/** A permission: either method may be omitted (omitted = allow). */
export interface Permission {
  canConnect?: (request: FastifyRequest) => boolean | Promise<boolean>
  hasPermission?: (ctx: ActionContext, action: string, args: Record<string, unknown>) => boolean | Promise<boolean>
}

const allow = (): boolean => true

function connectOf (p: Permission): NonNullable<Permission['canConnect']> {
  return p.canConnect ?? allow
}

function actionOf (p: Permission): NonNullable<Permission['hasPermission']> {
  return p.hasPermission ?? allow
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
  const { canConnect: connect, hasPermission: act } = perm
  if (connect !== undefined) negated.canConnect = async (request) => !(await connect(request))
  if (act !== undefined) negated.hasPermission = async (ctx, action, args) => !(await act(ctx, action, args))
  return negated
}

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
