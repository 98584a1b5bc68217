import { modelAction, type ActionDefinition } from '../action.js'
import type { MixinOptions } from './common.js'
import { modelOf } from './common.js'

/** `delete {pk, version?}` → 204, data null (409 for a stale version). Runs in a transaction, or grouped with other sockets' deletes. */
export function destroy (options: Pick<MixinOptions, 'permissions'> = {}): ActionDefinition {
  return modelAction('delete', async (ctx, args) => {
    await modelOf(ctx).removeOne(ctx, args)
    return { status: 204, data: null }
  }, { permissions: options.permissions })
}
