import { modelAction, type ActionDefinition } from '../action.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/** `list {filter?, ordering?, search?}` → 200 with every matching object the connection may see (default order: primary key). */
export function list (options: MixinOptions = {}): ActionDefinition {
  const shaper = shaperOf(options)
  return modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    return { data: model.serialize(await model.list(ctx, query), shaper(model)) }
  }, { permissions: options.permissions })
}
