import { modelAction, type ActionDefinition } from '../action.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/** `retrieve {pk}` → 200 with the object; 404 when it is not there or not in the connection's scope. */
export function retrieve (options: MixinOptions = {}): ActionDefinition {
  const shaper = shaperOf(options)
  return modelAction('retrieve', async (ctx, args) => {
    const model = modelOf(ctx)
    return { data: model.serialize(await model.retrieve(ctx, args), shaper(model)) }
  }, { permissions: options.permissions })
}
