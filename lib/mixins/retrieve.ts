import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, LookupArgs, RouteObject } from '../wire.js'

/** What `retrieve` takes and answers: the lookup; the object. */
export interface RetrieveWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: LookupArgs<this['route']>
  readonly data: RouteObject<this['route'], Response>
}

/** `retrieve {pk}` → 200 with the object; 404 when it is not there or not in the connection's scope. */
export function retrieve<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'retrieve', RetrieveWire<Response>> {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'One object, looked up within the connection\'s scope (404 otherwise).',
    args: Type.Object(route.lookup),
    data: options.response ?? route.response
  })
  return modelAction('retrieve', async (ctx, args) => {
    const model = modelOf(ctx)
    return { data: await model.retrieveData(ctx, args, serializer(model, ctx)) }
  }, { permissions: options.permissions, describe })
}
