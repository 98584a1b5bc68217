/**
 * fastify-ws-rest: REST-style actions over WebSocket for Fastify and MikroORM, speaking
 * the Django Channels REST Framework wire protocol.
 *
 * ```ts
 * await app.register(wsRest, { orm })
 * app.wsRest.route('/ws/', { entity: User, schema: { create, update, response }, actions: [mixins.create(), …] })
 * ```
 */
import websocket from '@fastify/websocket'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { wsRestGetter } from './lib/api.js'
import { serveAsyncApi } from './lib/asyncapi/document.js'
import { InvalidOption } from './lib/errors.js'
import { entityName, groups, type ModelMessage, type Row } from './lib/observer/changes.js'
import { Hub } from './lib/observer/hub.js'
import { ModelObserver } from './lib/observer/model-observer.js'
import { ResumeRegistry } from './lib/observer/resume.js'
import { keepFailedStatements, releaseLostConnections } from './lib/orm-compat.js'
import { SubscriptionBudget } from './lib/subscription-budget.js'
import { CLOSE_GOING_AWAY } from './lib/session.js'
import { resolveOptions, type WsRestOptions } from './lib/options.js'
import type { PluginState } from './lib/state.js'
import './types/fastify.js'

const wsRestPlugin: FastifyPluginAsync<WsRestOptions> = async (fastify, options) => {
  const resolved = resolveOptions(options)
  const layer = resolved.broadcast
  await layer.init?.(fastify.log)
  const hub = new Hub(layer, fastify.log)
  /** The app's own groups for an entity's changes (`app.wsRest.observe(entity, { groups })`). */
  const extraGroups = new Map<string, Array<{ groupsOf: (change: ModelMessage) => Iterable<string>, shape?: (row: Row) => unknown }>>()

  /** Every committed change goes to its row's group, its entity's group, and the app's own. */
  function publishChange (message: ModelMessage): void {
    hub.publish(groups.model(message.entity), message)
    hub.publish(groups.instance(message.entity, message.pk), message)
    for (const { groupsOf, shape } of extraGroups.get(message.entity) ?? []) {
      // The groups of the row as it was and as it is: one it entered gets a create, one it left a delete.
      const was = new Set(message.before === null ? [] : groupsOf({ ...message, after: null }))
      const is = new Set(message.after === null ? [] : groupsOf({ ...message, before: null }))
      // This observer's own shape, rendered once for all its groups (DCRF's observer serializer).
      const shaped: ModelMessage = shape === undefined || message.after === null ? message : { ...message, groupData: shape(message.after) ?? null }
      for (const group of is) hub.publish(group, was.has(group) ? shaped : { ...shaped, groupChange: 'create' })
      for (const group of was) if (!is.has(group)) hub.publish(group, { ...shaped, groupChange: 'delete' })
    }
  }
  const orm = resolved.orm
  // Before anything queries: database errors then name their statement (database-errors.ts).
  if (orm !== undefined) keepFailedStatements(orm)
  // A transaction whose connection is lost must still give its pool slot back (MikroORM 7).
  if (orm !== undefined) releaseLostConnections(orm)
  const observer = orm === undefined ? undefined : new ModelObserver(orm, publishChange, fastify.log)

  const state: PluginState = {
    options: resolved,
    sessions: new Set(),
    perIp: new Map(),
    subscriptionBudget: new SubscriptionBudget(resolved.maxSubscriptionsPerClient, resolved.maxSubscriptionsTotal),
    routes: [],
    declared: [],
    ready: false,
    hub,
    resume: resolved.resume === false ? undefined : new ResumeRegistry(hub, resolved.resume),
    observe: (className) => observer?.observe(className),
    describeEvents: (className, serializers, paths) => observer?.describe(className, serializers, paths),
    observeEntity (entity, groupsOf, shape) {
      if (orm === undefined || observer === undefined) throw new InvalidOption('orm', 'is needed to observe an entity')
      let name: string
      try {
        name = entityName(orm, entity as never)
      } catch {
        throw new InvalidOption('entity', 'is not an entity known to the MikroORM instance')
      }
      observer.observe(name)
      if (groupsOf !== undefined) {
        let list = extraGroups.get(name)
        if (list === undefined) extraGroups.set(name, (list = []))
        list.push({ groupsOf, shape })
      }
    }
  }
  fastify.addHook('onReady', async () => {
    state.ready = true
    for (const route of state.routes) route.resolveHooks()
  })
  // One timer for every socket rather than one each: the heartbeat pings them all in turn.
  const heartbeat = resolved.heartbeatInterval === 0
    ? undefined
    : setInterval(() => { for (const session of state.sessions) session.heartbeat() }, resolved.heartbeatInterval).unref()
  fastify.addHook('onClose', async () => {
    clearInterval(heartbeat)
    // Before the app closes its ORM (its own onClose, registered before this plugin, runs after this one).
    // Every socket is closed by now: the parked subscriptions are the last listeners, and
    // they go first, once the events they were checking are through (their checks may query).
    await state.resume?.close(resolved.closeTimeout)
    await observer?.stop()
    hub.clear()
    await layer.close()
  })

  /** Let in-flight actions finish and commit, then close every wsRest socket with 1001. */
  async function drainConnections (): Promise<void> {
    await Promise.all([...state.sessions].map(async (s) => await s.shutdown(resolved.closeTimeout)))
  }

  if (fastify.hasDecorator('websocketServer')) {
    // The app registered @fastify/websocket itself; its own preClose runs first.
    fastify.addHook('preClose', drainConnections)
  } else {
    await fastify.register(websocket, {
      // A client breaking the WebSocket protocol (oversized frame, invalid UTF-8) is the
      // client's fault: ws has already closed the socket with the right code (1009, 1007),
      // so log it quietly instead of as a server error with a stack.
      errorHandler (error, socket, request) {
        const code = (error as Error & { code?: unknown }).code
        if (typeof code === 'string' && code.startsWith('WS_ERR_')) {
          request.log.info({ code }, 'fastify-ws-rest: client protocol error, socket closed')
          return
        }
        request.log.error({ err: error }, 'fastify-ws-rest: socket error')
        socket.terminate()
      },
      ...resolved.websocket,
      options: { maxPayload: resolved.maxPayload, ...resolved.websocket.options },
      preClose: resolved.websocket.preClose ?? async function preClose (this: FastifyInstance) {
        await drainConnections()
        // Sockets of the app's own (non-wsRest) websocket routes go away the same way.
        for (const client of this.websocketServer.clients) client.close(CLOSE_GOING_AWAY, 'Server shutting down')
        this.websocketServer.close()
      }
    })
  }

  fastify.decorate('wsRest', { getter: wsRestGetter(state) })
  if (resolved.asyncapi !== undefined) serveAsyncApi(fastify, state, resolved.asyncapi)
}

/** The plugin: `await app.register(wsRest, { orm })`. */
const wsRest = fp(wsRestPlugin, { fastify: '5.x', name: 'fastify-ws-rest' })
export default wsRest
export { wsRest }

export type { WsRestOptions } from './lib/options.js'
export type { AsyncApiDocument } from './lib/asyncapi/document.js'
export type { AsyncApiOptions, AsyncApiPluginOptions } from './lib/asyncapi/options.js'
export type { ActionDoc, EventDoc } from './lib/asyncapi/describe.js'
export type { ResumeOptions } from './lib/observer/resume.js'
export type { WsRest, ModelChange, ObserveOptions, PublishOptions } from './lib/api.js'
export type { MultiplexOptions } from './lib/multiplexer.js'
export type { SubscribeOptions, UnsubscribeOptions } from './lib/action.js'
export { MemoryLayer } from './lib/layers/memory.js'
export { RedisLayer, type RedisLayerOptions } from './lib/layers/redis.js'
export type { BroadcastLayer, BroadcastMessage, GroupListener } from './lib/layers/layer.js'
export { groups } from './lib/observer/changes.js'
export type { Row, ChangeKind } from './lib/observer/changes.js'
export { defineRoute, type RouteDefinition, type RouteOptions } from './lib/route.js'
export type { ActionName, ArgsOf, DataOf, EventOf, CustomWire, ModelEvent, Page, CursorPage, ListArgs, PageArgs, CursorArgs } from './lib/wire.js'
export type { MixinWire, MixinKind } from './lib/mixins/kinds.js'
// Writing a mixin, in an app as in this package (test/app-mixin.test.ts): one file holds
// its behaviour (`modelAction`, run against `ctx.model`), its wire (an `ActionWire`
// reading the route it is used on as `this['route']`, which types it in the client) and
// its AsyncAPI description (an `ActionDescriber`).
export { modelAction } from './lib/action.js'
export { modelOf, serializerOf, type MixinOptions } from './lib/mixins/common.js'
export type { ActionWire, ResolveWire, WiredAction, RouteShape, RouteInput, RouteObject, LookupArgs, VersionArg, Jsonified, FilterArg, FilterValue, Ordering } from './lib/wire.js'
export { integerArg, pageSchema, type ActionDescriber, type RouteDoc } from './lib/asyncapi/describe.js'
export type { ModelOptions } from './lib/generic.js'
export type { InputKind } from './lib/validation.js'
export { GenericModel } from './lib/generic.js'
export { action, type ActionContext, type ActionDefinition, type ActionHandler, type ActionOptions, type ActionResult, type EventHandler, type LifecycleHook, type ReplyOptions, type SubscriberEvent } from './lib/action.js'
export type { ComputedField, OutputFields, SourceField } from './lib/serializer.js'
export { httpAction, DEFAULT_FORWARD_HEADERS, type HttpActionOptions, type HttpActionMethod } from './lib/http-action.js'
export * as mixins from './lib/mixins/index.js'
export * as permissions from './lib/permissions.js'
export type { Permission } from './lib/permissions.js'
export type { PreActionHook } from './lib/hooks.js'
export type { CrossFieldCheck } from './lib/validation.js'
export * as errors from './lib/errors.js'
export { ValidationError, NotFound, PermissionDenied, Conflict, type FieldErrors } from './lib/errors.js'
export { LimitOffsetPaginator, type PaginationOptions } from './lib/pagination.js'
