import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import type { InputKind } from '../validation.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, LookupArgs, RouteInput, RouteObject, VersionArg } from '../wire.js'

/**
 * The shared body of update and patch: look up, validate `data` as a whole object
 * (update) or any subset of it (patch), apply, reply with the object — in a transaction of
 * its own, or with other sockets' changes in one flush (group commit).
 * A `version` argument that is not the current one is a 409.
 */
export function changeAction<const N extends string> (name: N, kind: InputKind, options: MixinOptions): ActionDefinition<N, never> {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: kind === 'patch' ? 'Change some fields of an object.' : 'Change every field of an object.',
    args: Type.Object({ ...route.lookup, ...route.version, data: route.input(kind) }),
    data: options.response ?? route.response
  })
  return modelAction(name, async (ctx, args) => {
    const model = modelOf(ctx)
    const entity = await model.changeOne(ctx, kind as 'update' | 'patch', args)
    return { data: await model.render(ctx, entity, serializer(model, ctx)) }
  }, { permissions: options.permissions, input: kind, describe })
}

/** What `update` takes and answers: the lookup, the version read, the whole object as the route's update input; the object. */
export interface UpdateWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: LookupArgs<this['route']> & VersionArg & Record<'data', RouteInput<this['route'], 'update'>>
  readonly data: RouteObject<this['route'], Response>
}

/** `update {pk, data}` → 200 with the object. `data` must be the whole object (`schema.update`). */
export function update<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'update', UpdateWire<Response>> {
  return changeAction('update', 'update', options)
}
