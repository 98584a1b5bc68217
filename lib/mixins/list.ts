import { modelAction, type ActionDefinition } from '../action.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/** `list` → 200 with every object the connection may see, ordered by primary key. */
export function list (options: MixinOptions = {}): ActionDefinition {
  const shaper = shaperOf(options)
  return modelAction('list', async (ctx) => {
    const model = modelOf(ctx)
    return { data: model.serialize(await model.list(ctx), shaper(model)) }
  }, { permissions: options.permissions })
}
