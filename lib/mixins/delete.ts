import { Type } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import type { MixinOptions } from './common.js'
import { modelOf } from './common.js'
import type { ActionWire, LookupArgs, VersionArg } from '../wire.js'

/** What `delete` takes and answers: the lookup and the version read; null. */
export interface DeleteWire extends ActionWire {
  readonly args: LookupArgs<this['route']> & VersionArg
  readonly data: null
}

/** `delete {pk, version?}` → 204, data null (409 for a stale version). Runs in a transaction, or grouped with other sockets' deletes. */
export function destroy (options: Pick<MixinOptions, 'permissions'> = {}): ActionDefinition<'delete', DeleteWire> {
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
