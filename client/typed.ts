/**
 * The client typed from the server's route definitions, like tRPC: no code generation,
 * only an `import type` of the route (`defineRoute(...)` on the server).
 *
 * ```ts
 * import type { users } from '../server/routes.js'
 * const client = createClient<typeof users>('ws://localhost:8000/ws/', { WebSocket })
 * const alice = await client.actions.create({ data: { username: 'alice', password1: 'pw', password2: 'pw' } })
 * alice.username              // string — from the route's response schema
 * client.actions.create({ data: { usrname: 'x' } })   // compile error: not in the create schema
 * ```
 *
 * Types only, apart from {@link actionHelpers}: the runtime is the untyped client.
 */
import type { ActionName, ArgsOf, DataOf, EventOf, RouteShape, SubscribingAction } from '../lib/wire.js'
import type { RequestOptions, WsRestClient } from './client.js'
import type { StreamRequestOptions, StreamSubscribeOptions, WsRestStream } from './stream.js'
import type { SubscribeOptions, Subscription } from './subscription.js'

/** An action's arguments as a parameter: optional when it requires none. */
type ArgsParam<Route extends RouteShape, N extends ActionName<Route>> =
  Record<string, never> extends ArgsOf<Route, N> ? [args?: ArgsOf<Route, N>] : [args: ArgsOf<Route, N>]

/**
 * `subscribe`'s options: optional for the mixins' subscribing actions; for a custom one,
 * required with `unsubscribeAction` (the runtime rejects without it: see SubscribeOptions).
 */
type SubscribeOptionsParam<Route extends RouteShape, N extends ActionName<Route>, SO> =
  [N] extends [SubscribingAction<Route>] ? [options?: SO] : [options: SO & { unsubscribeAction: string | null }]

/** `request` and `subscribe`, typed by action. */
export interface TypedRequests<Route extends RouteShape, RO, SO> {
  /** Send the action and resolve with its reply's data, typed from the route. */
  request: <N extends ActionName<Route>>(action: N, ...rest: [...ArgsParam<Route, N>, options?: RO]) => Promise<DataOf<Route, N>>
  /** Subscribe with a subscribing action (`subscribe_instance`, `subscribe_list`, or a custom one); events typed from the route. */
  subscribe: <N extends ActionName<Route>>(
    action: N,
    args: ArgsOf<Route, N>,
    onEvent: (event: EventOf<Route, N>) => void,
    ...options: SubscribeOptionsParam<Route, N, SO>
  ) => Promise<Subscription>
  /** One function per action: `actions.create(args)` is `request('create', args)`. */
  readonly actions: { readonly [N in ActionName<Route>]: (...rest: [...ArgsParam<Route, N>, options?: RO]) => Promise<DataOf<Route, N>> }
}

/** A client of one route. */
export type RouteClient<Route extends RouteShape> =
  Omit<WsRestClient, 'request' | 'subscribe' | 'actions' | 'stream'> & TypedRequests<Route, RequestOptions, SubscribeOptions>

/** A stream of a multiplexed client, typed by its route. */
export type StreamClient<Route extends RouteShape> =
  Omit<WsRestStream, 'request' | 'subscribe' | 'actions'> & TypedRequests<Route, StreamRequestOptions, StreamSubscribeOptions>

/** A multiplexed client: `stream(name)` typed by the route each stream serves. */
export type MultiplexClient<Streams extends Record<string, RouteShape>> =
  Omit<WsRestClient, 'stream'> & { stream: <S extends keyof Streams & string>(name: S) => StreamClient<Streams[S]> }

/**
 * What `createClient<T>` returns: `T` a route definition (`typeof users`) → a typed route
 * client; `T` an object of them (`{ users: typeof users }`, with `multiplex: true`) → a
 * multiplexed client typed per stream; no `T` → the untyped client.
 */
export type ClientFor<T> =
  [T] extends [undefined] ? WsRestClient
    : T extends RouteShape ? RouteClient<T>
      : T extends Record<string, RouteShape> ? MultiplexClient<T>
        : WsRestClient

/** `actions.name(args, options)` → `request('name', args, options)`, for any name. */
export function actionHelpers<O> (
  request: (action: string, args?: Record<string, unknown>, options?: O) => Promise<unknown>
): Record<string, (args?: Record<string, unknown>, options?: O) => Promise<unknown>> {
  return new Proxy({}, {
    // Not `then`: the object must not look like a promise to `await`.
    get: (_target, name) => typeof name === 'string' && name !== 'then'
      ? async (args?: Record<string, unknown>, options?: O) => await request(name, args, options)
      : undefined
  })
}
