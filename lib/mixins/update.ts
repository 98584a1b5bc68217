import { modelAction, type ActionDefinition } from '../action.js'
import type { InputKind } from '../generic.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/**
 * The shared body of update and patch: look up, validate `data` as a whole object
 * (update) or any subset of it (patch), apply, reply with the object — in a transaction of
 * its own, or with other sockets' changes in one flush (group commit).
 * A `version` argument that is not the current one is a 409.
 */
export function changeAction (name: string, kind: InputKind, options: MixinOptions): ActionDefinition {
  const shaper = shaperOf(options)
  return modelAction(name, async (ctx, args) => {
    const model = modelOf(ctx)
    const entity = await model.changeOne(ctx, kind as 'update' | 'patch', args)
    return { data: model.serialize(entity, shaper(model)) }
  }, { permissions: options.permissions, input: kind })
}

/** `update {pk, data}` → 200 with the object. `data` must be the whole object (`schema.update`). */
export function update (options: MixinOptions = {}): ActionDefinition {
  return changeAction('update', 'update', options)
}
