import type { ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { changeAction } from './update.js'
import type { TSchema } from '@sinclair/typebox'
import type { MixinWire } from '../wire.js'

/** `patch {pk, data}` → 200 with the object. `data` is any subset of `schema.update`. */
export function patch<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'patch', MixinWire<'patch', Response>> {
  return changeAction('patch', 'patch', options)
}
