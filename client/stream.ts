/**
 * One stream of a multiplexed socket: the client's `request` and `subscribe`, with the
 * stream filled in. It holds no state of its own — the client routes replies by
 * request_id and checks they came on the stream that was asked.
 */
import type { RequestOptions, WsRestClient } from './client.js'
import { actionHelpers } from './typed.js'
import type { SubscribeOptions, Subscription, SubscriptionListener } from './subscription.js'

/** `RequestOptions` without `stream`: the stream is the one the handle was made for. */
export type StreamRequestOptions = Omit<RequestOptions, 'stream'>

/** `SubscribeOptions` without `stream`. */
export type StreamSubscribeOptions = Omit<SubscribeOptions, 'stream'>

/** `client.stream(name)`: request and subscribe on one stream of a multiplexed client. */
export class WsRestStream {
  /** Made by `client.stream(name)`. */
  constructor (readonly client: WsRestClient, readonly name: string) {}

  /** One function per action of the stream: `actions.create(args)` is `request('create', args)`. */
  readonly actions = actionHelpers<StreamRequestOptions>(async (action, args, options) => await this.request(action, args, options))

  /** `client.request(action, args, { ...options, stream: name })`. */
  async request (action: string, args: Record<string, unknown> = {}, options: StreamRequestOptions = {}): Promise<unknown> {
    return await this.client.request(action, args, { ...options, stream: this.name })
  }

  /** `client.subscribe(action, args, onEvent, { ...options, stream: name })`. */
  async subscribe (
    action: string,
    args: Record<string, unknown>,
    onEvent: SubscriptionListener,
    options: StreamSubscribeOptions = {}
  ): Promise<Subscription> {
    return await this.client.subscribe(action, args, onEvent, { ...options, stream: this.name })
  }
}
