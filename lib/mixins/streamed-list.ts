import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionDefinition } from '../action.js'
import { integerArg, pageSchema, type ActionDescriber } from '../asyncapi/describe.js'
import { LimitOffsetPaginator, type PaginationOptions } from '../pagination.js'
import { modelOf, serializerOf, type MixinOptions } from './common.js'
import type { ActionWire, Page, PageArgs, RouteObject } from '../wire.js'

/** The cancellation scope shared by streamed lists and `list_cancel`. */
const STREAM_SCOPE = 'list'

/** What a streamed `list` takes and answers: filter, search, ordering, limit, offset; each reply one page. */
export interface StreamedListWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: PageArgs<this['route']>
  readonly data: Page<RouteObject<this['route'], Response>>
}

/** What `list_cancel` takes and answers: nothing; null. */
export interface ListCancelWire extends ActionWire {
  readonly args: Record<string, never>
  readonly data: null
}

/**
 * `list {limit?}` streamed: one `{count, results, limit, offset}` reply per page, all with
 * the request's request_id, until `offset + limit >= count`; plus `list_cancel`, which
 * stops every stream in flight on the socket. Streams are detached, so several run at
 * once and the socket's other actions are not held up behind them.
 */
export function streamedList<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> & PaginationOptions = {}): [ActionDefinition<'list', StreamedListWire<Response>>, ActionDefinition<'list_cancel', ListCancelWire>] {
  const serializer = serializerOf(options)
  const paginator = new LimitOffsetPaginator(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'The list, one reply per page (offsets o, o + limit, o + 2·limit … from the request\'s offset o, default 0) until offset + limit >= count.',
    args: Type.Object({
      ...route.query,
      ...route.ordering,
      limit: integerArg(`Page size: default ${paginator.defaultLimit}, at most ${paginator.maxLimit} (a larger one is capped).`),
      offset: integerArg('The first page\'s offset (default 0).')
    }),
    data: pageSchema(options.response ?? route.response)
  })
  const describeCancel: ActionDescriber = () => ({
    summary: 'Stop every streamed list in flight on this socket.',
    args: Type.Object({}),
    data: Type.Null()
  })
  const stream = modelAction('list', async (ctx, args) => {
    const model = modelOf(ctx)
    const signal = ctx.cancellable(STREAM_SCOPE)
    const query = model.listQuery(args)
    // From the request's offset, as DCRF: offsets o, o + limit, o + 2·limit …
    const { limit, offset: start } = paginator.page(args)
    for (let offset = start; !signal.aborted; offset += limit) {
      const { results, count } = await model.page(ctx, query, { limit, offset })
      // A cancel that arrived during the query wins: no page after list_cancel's reply.
      if (signal.aborted) break
      ctx.reply({ count, results: await model.render(ctx, results, serializer(model, ctx)), limit, offset })
      if (offset + limit >= count) break
    }
    return {}
  }, { detached: true, stream: true, permissions: options.permissions, describe })
  const cancel = modelAction('list_cancel', (ctx) => {
    ctx.cancel(STREAM_SCOPE)
    return { data: null }
  }, { permissions: options.permissions, describe: describeCancel })
  return [stream, cancel]
}
