import { modelAction, type ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { modelOf } from './common.js'

/** `delete {pk, version?}` → 204, data null (409 for a stale version). Runs in a transaction. */
export function destroy (options: Pick<MixinOptions, 'permissions'> = {}): ActionDefinition {
  return modelAction('delete', async (ctx, args) => {
    const model = modelOf(ctx)
    const entity = await model.getObject(ctx, args, { forWrite: true })
    model.checkVersion(entity, args)
    await model.delete(ctx, entity)
    return { status: 204, data: null }
  }, { transaction: true, permissions: options.permissions })
}
