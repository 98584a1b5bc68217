import { modelAction, type ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { modelOf } from './common.js'

/** `delete {pk}` → 204, data null. Runs in a transaction. */
export function destroy (options: Pick<MixinOptions, 'permissions'> = {}): ActionDefinition {
  return modelAction('delete', async (ctx, args) => {
    const model = modelOf(ctx)
    await model.delete(ctx, await model.getObject(ctx, args))
    return { status: 204, data: null }
  }, { transaction: true, permissions: options.permissions })
}
