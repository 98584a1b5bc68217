import { Type } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi.js'
import type { MixinOptions } from './common.js'
import { modelOf } from './common.js'
import type { MixinWire } from '../wire.js'

/** `delete {pk, version?}` → 204, data null (409 for a stale version). Runs in a transaction, or grouped with other sockets' deletes. */
export function destroy (options: Pick<MixinOptions, 'permissions'> = {}): ActionDefinition<'delete', MixinWire<'delete'>> {
  const describe: ActionDescriber = (route) => ({
    summary: 'Delete an object.',
    args: Type.Object({ ...route.lookup, ...route.version }),
    status: 204,
    data: Type.Null()
  })
  return modelAction('delete', async (ctx, args) => {
    await modelOf(ctx).removeOne(ctx, args)
    return { status: 204, data: null }
  }, { permissions: options.permissions, describe })
}
