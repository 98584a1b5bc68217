import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, ListArgs, RouteObject } from '../wire.js'

/** What `list` takes and answers: filter, search, ordering; every matching object. */
export interface ListWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: ListArgs<this['route']>
  readonly data: Array<RouteObject<this['route'], Response>>
}

/** `list {filter?, ordering?, search?}` → 200 with every matching object the connection may see (default order: primary key). */
export function list<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'list', ListWire<Response>> {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'Every object the connection may see, filtered, searched and ordered as asked.',
    args: Type.Object({ ...route.query, ...route.ordering }),
    data: Type.Array(options.response ?? route.response)
  })
  return modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    return { data: await model.listData(ctx, query, serializer(model, ctx)) }
  }, { permissions: options.permissions, describe })
}
