import { modelAction, type ActionDefinition } from '../action.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/**
 * `create {data}` → 201 with the created object. Validated by `schema.create`; written in a
 * transaction of its own, or with other sockets' creates in one flush (group commit).
 */
export function create (options: MixinOptions = {}): ActionDefinition {
  const shaper = shaperOf(options)
  return modelAction('create', async (ctx, args) => {
    const model = modelOf(ctx)
    const data = await model.validate('create', args.data, ctx)
    const entity = await model.createOne(ctx, data)
    return { status: 201, data: model.serialize(entity, shaper(model)) }
  }, { permissions: options.permissions, input: 'create' })
}
