import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { MixinWire } from '../wire.js'

/**
 * `create {data}` → 201 with the created object. Validated by `schema.create`; written in a
 * transaction of its own, or with other sockets' creates in one flush (group commit).
 */
export function create<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'create', MixinWire<'create', Response>> {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'Create an object.',
    args: Type.Object({ data: route.input('create') }),
    status: 201,
    data: options.response ?? route.response
  })
  return modelAction('create', async (ctx, args) => {
    const model = modelOf(ctx)
    const data = await model.validate('create', args.data, ctx)
    const entity = await model.createOne(ctx, data)
    return { status: 201, data: await model.render(ctx, entity, serializer(model, ctx)) }
  }, { permissions: options.permissions, input: 'create', describe })
}
