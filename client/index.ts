/**
 * `fastify-ws-rest/client`: a client for fastify-ws-rest (and DCRF) servers that runs in
 * browsers and in Node. REST-style requests correlated by request_id, subscriptions
 * with callbacks, multiplexed streams, automatic reconnection with backoff, queued
 * requests, restored (and, where the server supports it, resumed) subscriptions.
 *
 * No dependencies and no Node modules: only standard web APIs (WebSocket,
 * crypto.getRandomValues, setTimeout). In Node 20, which has no global WebSocket, pass
 * `WebSocket` from the `ws` package:
 *
 * ```ts
 * import WebSocket from 'ws'
 * import { createClient, WsRestError } from 'fastify-ws-rest/client'
 *
 * const client = createClient('ws://127.0.0.1:8000/ws/', { WebSocket })
 * const alice = await client.request('create', { data: { username: 'alice', password1: 'pw', password2: 'pw' } })
 * const sub = await client.subscribe('subscribe_instance', { pk: 1 }, ({ action, data }) => console.log(action, data), {
 *   onRefetch: () => reload()   // events may have been missed while disconnected
 * })
 * await sub.unsubscribe()
 * await client.close()
 * ```
 */
export {
  createClient,
  WsRestClient,
  type ClientEvents,
  type ClientOptions,
  type ClientState,
  type CloseInfo,
  type ReconnectInfo,
  type RequestOptions
} from './client.js'
export { WsRestStream, type StreamRequestOptions, type StreamSubscribeOptions } from './stream.js'
export {
  Subscription,
  type SubscribeOptions,
  type SubscriptionEvent,
  type SubscriptionListener
} from './subscription.js'
export { WsRestClosedError, WsRestConnectionLostError, WsRestError, WsRestTakenOverError, WsRestTimeoutError, WsRestUpgradeRefusedError } from './errors.js'
export { looksIdempotent } from './idempotent.js'
export type { ClientFor, MultiplexClient, RouteClient, StreamClient, TypedRequests } from './typed.js'
export type { ActionName, ArgsOf, DataOf, EventOf, FilterValue, Jsonified, ModelEvent, Ordering, Page, CursorPage } from '../lib/wire.js'
export type { ReconnectOptions } from './backoff.js'
export type { Reply } from './wire.js'
export type { WebSocketConstructor, WebSocketLike } from './websocket.js'
