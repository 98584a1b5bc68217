import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, RouteInput, RouteObject } from '../wire.js'

/** What `create` takes and answers: the route's create input; the created object. */
export interface CreateWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: Record<'data', RouteInput<this['route'], 'create'>>
  readonly data: RouteObject<this['route'], Response>
}

/**
 * `create {data}` → 201 with the created object. Validated by `schema.create`; written in a
 * transaction of its own, or with other sockets' creates in one flush (group commit).
 */
export function create<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'create', CreateWire<Response>> {
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
