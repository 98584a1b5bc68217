import type { ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { changeAction } from './update.js'
import type { TSchema } from '@sinclair/typebox'
import type { ActionWire, LookupArgs, RouteInput, RouteObject, VersionArg } from '../wire.js'

/** What `patch` takes and answers: the lookup, the version read, any subset of the route's update input; the object. */
export interface PatchWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: LookupArgs<this['route']> & VersionArg & Record<'data', Partial<RouteInput<this['route'], 'update'>>>
  readonly data: RouteObject<this['route'], Response>
}

/** `patch {pk, data}` → 200 with the object. `data` is any subset of `schema.update`. */
export function patch<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'patch', PatchWire<Response>> {
  return changeAction('patch', 'patch', options)
}
