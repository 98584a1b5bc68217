import type { FilterQuery } from '@mikro-orm/core'
import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import { integerArg, type ActionDescriber } from '../asyncapi/describe.js'
import { CursorCodec, keysetCondition, type CursorOptions, type CursorPosition } from '../cursor.js'
import type { OrderStep } from '../filtering.js'
import { LimitOffsetPaginator } from '../pagination.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, CursorArgs, CursorPage, RouteObject } from '../wire.js'

/** What a cursor `list` takes and answers: filter, search, ordering, limit, cursor; one page and the next cursor. */
export interface CursorListWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: CursorArgs<this['route']>
  readonly data: CursorPage<RouteObject<this['route'], Response>>
}

/**
 * `list {cursor?, limit?, filter?, ordering?, search?}` → 200 with `{results, next, previous}`,
 * cursors opaque strings or null. A cursor carries its ordering, so later pages keep the
 * first page's order; the filter and search are applied again from each message.
 */
export function cursorList<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> & CursorOptions = {}): ActionDefinition<'list', CursorListWire<Response>> {
  const serializer = serializerOf(options)
  const paginator = new LimitOffsetPaginator(options)
  const codec = new CursorCodec(options.secret)
  const describe: ActionDescriber = (route) => ({
    summary: 'One page by cursor (keyset pagination): no row skipped or repeated while rows change.',
    args: Type.Object({
      ...route.query,
      ...route.ordering,
      cursor: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: '`next` or `previous` of a page; absent for the first page.' })),
      limit: integerArg(`Page size: default ${paginator.defaultLimit}, at most ${paginator.maxLimit} (a larger one is capped).`)
    }),
    data: Type.Object({
      results: Type.Array(options.response ?? route.response),
      next: Type.Union([Type.String(), Type.Null()]),
      previous: Type.Union([Type.String(), Type.Null()])
    })
  })
  return modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    const { limit } = paginator.page(args)
    const from: CursorPosition | undefined = args.cursor === undefined || args.cursor === null ? undefined : codec.decode(args.cursor)
    const order: OrderStep[] = from === undefined ? query.order : model.query.checkCursor(from.order, from.values)
    model.query.checkKeysetOrder(order)
    const back = from?.back === true

    const keyset = from === undefined
      ? undefined
      : keysetCondition(from, (f, v) => model.query.fieldValue(f, v), (f, c) => model.query.onField(f, c))
    const condition = (): FilterQuery<any> | undefined => {
      const parts = [query.where(), keyset].filter((c) => c !== undefined)
      return parts.length <= 1 ? parts[0] : { $and: parts }
    }
    // Going back, read the rows before the position nearest-first, then restore the order.
    const readOrder = back ? order.map((s) => ({ field: s.field, desc: !s.desc })) : order
    // A position ordered by a path (`author.name`) is read from the related entity: populated, not only joined.
    const populate = model.query.populate(order)
    const rows = await ctx.em.find(model.entity, await model.where(ctx, condition), {
      orderBy: model.query.orderBy(readOrder), limit: limit + 1, ...(populate.length > 0 ? { populate } : {})
    } as object)
    const more = rows.length > limit
    const page = rows.slice(0, limit)
    if (back) page.reverse()

    const at = (row: object | undefined, where: 'after' | 'before', inclusive = false): string =>
      codec.encode({
        order,
        values: row === undefined ? from!.values : order.map((s) => model.query.valueOf(row, s.field)),
        back: where === 'before',
        inclusive
      })
    const first = page[0]
    const last = page[page.length - 1]
    let next: string | null
    let previous: string | null
    if (from === undefined) {
      next = more ? at(last, 'after') : null
      previous = null
    } else if (!back) {
      next = more ? at(last, 'after') : null
      // An empty page (its rows were deleted) points back at its own position, inclusive.
      previous = first !== undefined ? at(first, 'before') : at(undefined, 'before', true)
    } else {
      previous = more ? at(first, 'before') : null
      next = last !== undefined ? at(last, 'after') : at(undefined, 'after', true)
    }
    return { data: { results: await model.render(ctx, page, serializer(model, ctx)), next, previous } }
  }, { permissions: options.permissions, describe })
}
