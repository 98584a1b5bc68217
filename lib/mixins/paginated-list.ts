import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import { integerArg, pageSchema, type ActionDescriber } from '../asyncapi/describe.js'
import { LimitOffsetPaginator, type PaginationOptions } from '../pagination.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, Page, PageArgs, RouteObject } from '../wire.js'

/** What a paginated `list` takes and answers: filter, search, ordering, limit, offset; one page. */
export interface PaginatedListWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: PageArgs<this['route']>
  readonly data: Page<RouteObject<this['route'], Response>>
}

/** `list {limit?, offset?, filter?, ordering?, search?}` → 200 with `{count, results, limit, offset}`. */
export function paginatedList<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> & PaginationOptions = {}): ActionDefinition<'list', PaginatedListWire<Response>> {
  const serializer = serializerOf(options)
  const paginator = new LimitOffsetPaginator(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'One page of the objects the connection may see, filtered, searched and ordered as asked.',
    args: Type.Object({
      ...route.query,
      ...route.ordering,
      limit: integerArg(`Page size: default ${paginator.defaultLimit}, at most ${paginator.maxLimit} (a larger one is capped).`),
      offset: integerArg('Objects to skip (default 0).')
    }),
    data: pageSchema(options.response ?? route.response)
  })
  return modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    const page = paginator.page(args)
    const { results, count } = await model.pageData(ctx, query, page, serializer(model, ctx))
    return { data: { count, results, limit: page.limit, offset: page.offset } }
  }, { permissions: options.permissions, describe })
}
