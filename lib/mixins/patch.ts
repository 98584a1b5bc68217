import type { ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { changeAction } from './update.js'

/** `patch {pk, data}` → 200 with the object. `data` is any subset of `schema.update`. */
export function patch (options: MixinOptions = {}): ActionDefinition {
  return changeAction('patch', 'patch', options)
}
