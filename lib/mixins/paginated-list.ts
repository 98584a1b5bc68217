import { modelAction, type ActionDefinition } from '../action.js'
import { LimitOffsetPaginator, type PaginationOptions } from '../pagination.js'
import { modelOf, shaperOf, type MixinOptions } from './common.js'

/** `list {limit?, offset?, filter?, ordering?, search?}` → 200 with `{count, results, limit, offset}`. */
export function paginatedList (options: MixinOptions & PaginationOptions = {}): ActionDefinition {
  const shaper = shaperOf(options)
  const paginator = new LimitOffsetPaginator(options)
  return modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    const page = paginator.page(args)
    const { results, count } = await model.page(ctx, query, page)
    return { data: { count, results: model.serialize(results, shaper(model)), limit: page.limit, offset: page.offset } }
  }, { permissions: options.permissions })
}
