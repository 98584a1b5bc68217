/**
 * What every mixin shares: its options, and the route model it acts on.
 */
import type { TSchema } from '@sinclair/typebox'
import type { ActionContext } from '../action.js'
import type { GenericModel } from '../generic.js'
import type { Permission } from '../permissions.js'
import type { Serializer } from '../serializer.js'

/** Options every mixin takes. */
export interface MixinOptions<Response extends TSchema | undefined = TSchema | undefined> {
  /** Serialize this action's replies by another schema than the route's response schema. */
  response?: Response
  /** Overrides the route's permissions for this action. */
  permissions?: Permission[]
}

/** The route's model; mixins are refused at registration on routes without one, so it is always there. */
export function modelOf (ctx: ActionContext): GenericModel {
  return ctx.model as GenericModel
}

/** The serializer of this mixin's replies: its own response schema (compiled once per route), or the route's for this request. */
export function serializerOf (options: MixinOptions): (model: GenericModel, ctx: ActionContext) => Serializer {
  const own = options.response
  return (model, ctx) => own === undefined ? model.serializerOf(ctx) : model.serializerFor(own)
}
