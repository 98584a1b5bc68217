/**
 * The subscription mixins: `subscribeInstance` (DCRF's `subscribe_instance` /
 * `unsubscribe_instance`) and `subscribeList` (filtered-list subscriptions, beyond DCRF).
 */
import { Type, type TSchema } from '@sinclair/typebox'
import { modelAction, type ActionContext, type ActionDefinition } from '../action.js'
import type { ActionDescriber } from '../asyncapi/describe.js'
import { ValidationError } from '../errors.js'
import { modelOf, serializerOf, type MixinOptions } from '../mixins/common.js'
import { kConnection } from '../symbols.js'
import { groups } from './changes.js'
import { Subscription, modelRenderer, type ModelView, type SubscriptionHost } from './subscription.js'
import type { ActionWire, ListArgs, LookupArgs, ModelEvent, RouteObject } from '../wire.js'

/**
 * Subscribe the message's socket to `groups` under the message's request_id, with `view`
 * deciding what each change looks like to it and the action's permissions re-checked
 * with `args` before every event. Events carry the request_id, so subscribing without one
 * is refused (docs/protocol.md: 400 keyed `request_id`).
 */
function subscribeSocket (
  ctx: ActionContext,
  key: string,
  groupNames: string[],
  view: ModelView,
  args: Record<string, unknown>,
  replace: boolean
): void {
  const message = consumerOf(ctx)
  const connection = message[kConnection]
  const permit = connection.permitFor(message, args)
  connection.addSubscription(new Subscription(connection, key, groupNames, ctx.requestId, modelRenderer(view), permit), replace)
}

/** 400 keyed `request_id` when the message has none: its events could not be told apart. */
function requireRequestId (ctx: ActionContext): void {
  if (ctx.requestId === null || ctx.requestId === undefined) throw ValidationError.field('request_id', 'This field is required.')
}

/**
 * Remove the socket's subscriptions whose key starts with `prefix`: with the message's
 * request_id only that one, without one all of them.
 */
function unsubscribeSocket (ctx: ActionContext, prefix: string): void {
  const only = ctx.requestId === null || ctx.requestId === undefined ? undefined : prefix + JSON.stringify(ctx.requestId)
  consumerOf(ctx)[kConnection].removeSubscriptions((s) => only === undefined ? s.key.startsWith(prefix) : s.key === only)
}

/** The context of a message on a wsRest socket, which reaches the socket's consumer. */
type SocketContext = ActionContext & { readonly [kConnection]: SubscriptionHost }

function consumerOf (ctx: ActionContext): SocketContext {
  if (!(kConnection in ctx)) throw new TypeError('subscription actions run only inside a wsRest connection')
  return ctx as SocketContext
}

/** A primary key as it appears in published rows (bigints as strings), so group names agree. */
function plainKey (value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

/** What `subscribe_instance` takes, answers and delivers: the lookup; null; the row's updates and delete. */
export interface SubscribeInstanceWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: LookupArgs<this['route']>
  readonly data: null
  readonly events: ModelEvent<RouteObject<this['route'], Response>>
}

/** What `unsubscribe_instance` takes and answers: the lookup (optional); null. */
export interface UnsubscribeInstanceWire extends ActionWire {
  readonly args: Partial<LookupArgs<this['route']>>
  readonly data: null
}

/** What `subscribe_list` takes, answers and delivers: filter and search; null; rows coming to match, changing, leaving. */
export interface SubscribeListWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: ListArgs<this['route']>
  readonly data: null
  readonly events: ModelEvent<RouteObject<this['route'], Response>>
}

/** What `unsubscribe_list` takes and answers: nothing; null. */
export interface UnsubscribeListWire extends ActionWire {
  readonly args: Record<string, never>
  readonly data: null
}

/**
 * `subscribe_instance {pk}` → 201; then the row's changes, with the subscription's
 * request_id: `update` (200, the object) and `delete` (204, `{"pk": …}`); no creates.
 * `unsubscribe_instance {pk}` → 204, removing that request_id's subscription, or without a
 * request_id every subscription to that row on the socket — the socket's other
 * subscriptions keep working (DCRF drops them).
 *
 * The object must exist and be in the connection's scope (else 404). Each event is
 * checked against the scope and the action's permissions again before it is sent; a row
 * that leaves the scope arrives as a delete.
 */
export function subscribeInstance<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): [ActionDefinition<'subscribe_instance', SubscribeInstanceWire<Response>>, ActionDefinition<'unsubscribe_instance', UnsubscribeInstanceWire>] {
  const serializer = serializerOf(options)
  // A socket's subscriptions to a row are keyed by the row and the request_id: the same pair again adds nothing.
  const keyOf = (lookup: unknown): string => `instance:${JSON.stringify(lookup)}:`
  const describe: ActionDescriber = (route) => ({
    summary: 'Subscribe to one row\'s changes: its updates and its delete arrive with this request_id.',
    args: Type.Object(route.lookup),
    requiresRequestId: true,
    status: 201,
    data: Type.Null(),
    events: [
      { action: 'update', status: 200, data: options.response ?? route.response, summary: 'The row changed.' },
      { action: 'delete', status: 204, data: Type.Object({ pk: route.pk }), summary: 'The row was deleted or left the connection\'s scope.' }
    ]
  })
  const describeUnsubscribe: ActionDescriber = (route) => ({
    summary: 'Stop this request_id\'s subscription to the row (without one, every subscription to it on the socket).',
    args: Type.Object(route.lookup),
    status: 204,
    data: Type.Null()
  })
  const subscribe = modelAction('subscribe_instance', async (ctx, args) => {
    requireRequestId(ctx)
    const model = modelOf(ctx)
    const lookup = model.lookupValue(args)
    const entity = await model.getObject(ctx, args) as Record<string, unknown>
    const view = await model.view(ctx, { serializer: serializer(model, ctx), creates: false })
    const group = groups.instance(model.entityName, plainKey(entity[model.primaryKey]))
    subscribeSocket(ctx, keyOf(lookup) + JSON.stringify(ctx.requestId), [group], view, { [model.lookupArg]: lookup }, false)
    return { status: 201, data: null }
  }, { permissions: options.permissions, observes: true, response: options.response, describe })

  const unsubscribe = modelAction('unsubscribe_instance', async (ctx, args) => {
    const model = modelOf(ctx)
    unsubscribeSocket(ctx, keyOf(model.lookupValue(args)))
    // DCRF looks the row up: a pk with no row (in scope) is a 404 — its subscriptions are gone all the same.
    await model.getObject(ctx, args)
    return { status: 204, data: null }
  }, { permissions: options.permissions, describe: describeUnsubscribe })

  return [subscribe, unsubscribe]
}

/**
 * `subscribe_list {filter?, search?}` → 201; then, with the subscription's request_id, a
 * row that comes to match (created, or changed into the filter) as `create` (201), a
 * matching row changed as `update` (200), and one deleted or changed out of the filter
 * as `delete` (204, `{"pk": …}`). The filter has the syntax and checks of `list`; only
 * rows within the connection's scope are ever sent. `unsubscribe_list` → 204, removing
 * that request_id's subscription (or, without one, all of the socket's list subscriptions).
 * Subscribing again with the same request_id replaces the filter.
 */
export function subscribeList<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): [ActionDefinition<'subscribe_list', SubscribeListWire<Response>>, ActionDefinition<'unsubscribe_list', UnsubscribeListWire>] {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'Subscribe to the rows matching a filter: rows coming to match, changing, and leaving arrive with this request_id.',
    args: Type.Object(route.query),
    requiresRequestId: true,
    status: 201,
    data: Type.Null(),
    events: [
      { action: 'create', status: 201, data: options.response ?? route.response, summary: 'A row came to match (created, or changed into the filter).' },
      { action: 'update', status: 200, data: options.response ?? route.response, summary: 'A matching row changed.' },
      { action: 'delete', status: 204, data: Type.Object({ pk: route.pk }), summary: 'A row was deleted or changed out of the filter.' }
    ]
  })
  const describeUnsubscribe: ActionDescriber = () => ({
    summary: 'Stop this request_id\'s list subscription (without one, every list subscription on the socket).',
    args: Type.Object({}),
    status: 204,
    data: Type.Null()
  })
  const subscribe = modelAction('subscribe_list', async (ctx, args) => {
    requireRequestId(ctx)
    const model = modelOf(ctx)
    const query = model.listQuery(args)
    const view = await model.view(ctx, { serializer: serializer(model, ctx), filter: query.matches, creates: true })
    // Keyed by request_id alone: subscribing again with it replaces the filter.
    subscribeSocket(ctx, `list:${JSON.stringify(ctx.requestId)}`, [groups.model(model.entityName)], view,
      { filter: args.filter, search: args.search }, true)
    return { status: 201, data: null }
  }, { permissions: options.permissions, observes: true, response: options.response, describe })

  const unsubscribe = modelAction('unsubscribe_list', (ctx) => {
    unsubscribeSocket(ctx, 'list:')
    return { status: 204, data: null }
  }, { permissions: options.permissions, describe: describeUnsubscribe })

  return [subscribe, unsubscribe]
}
