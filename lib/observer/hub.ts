/**
 * The hub: which of this app's subscriptions listen to which group, and the one place
 * where messages enter (publish) and leave (deliver) the broadcast layer.
 *
 * The hub listens to a group on the layer only while at least one local subscription
 * needs it, so a socket that closes leaves no group behind here or in Redis.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { BroadcastLayer, BroadcastMessage } from '../layers/layer.js'
import type { GroupMessage } from './changes.js'

/** A subscription as the hub sees it: the groups it listens to, and where their messages go. */
export interface Listening {
  readonly groups: readonly string[]
  deliver: (message: GroupMessage) => void
}

/** One app's subscriptions on a broadcast layer. */
export class Hub {
  /** Ids of this app's messages: an event reaching one subscriber twice (a resumed subscription) is recognised. */
  private readonly idPrefix = randomId() + ':'
  private published = 0
  private readonly byGroup = new Map<string, Set<Listening>>()
  private readonly listener = (group: string, message: BroadcastMessage): void => {
    const set = this.byGroup.get(group)
    if (set === undefined) return
    for (const subscription of set) {
      try {
        subscription.deliver(message as GroupMessage)
      } catch (err) {
        this.log.error({ err, group }, 'fastify-ws-rest: delivering an event failed')
      }
    }
  }

  constructor (readonly layer: BroadcastLayer, private readonly log: FastifyBaseLogger) {}

  /** Publish to `group` on the layer: this app's subscribers and, on a shared layer, other instances'. */
  publish (group: string, message: GroupMessage): void {
    // One message published to several groups keeps one id.
    message.id ??= this.idPrefix + String(++this.published)
    this.layer.publish(group, message)
  }

  add (subscription: Listening): void {
    for (const group of subscription.groups) {
      let set = this.byGroup.get(group)
      if (set === undefined) {
        this.byGroup.set(group, (set = new Set()))
        this.layer.listen(group, this.listener)
      }
      set.add(subscription)
    }
  }

  remove (subscription: Listening): void {
    for (const group of subscription.groups) {
      const set = this.byGroup.get(group)
      if (set === undefined || !set.delete(subscription) || set.size > 0) continue
      this.byGroup.delete(group)
      this.layer.unlisten(group, this.listener)
    }
  }

  /** Stop listening to everything (the app is closing). */
  clear (): void {
    for (const group of this.byGroup.keys()) this.layer.unlisten(group, this.listener)
    this.byGroup.clear()
  }
}

/** A random id, unique in the process: the prefix of an app's message ids, the name of its resume reply group. */
export function randomId (): string {
  return Math.random().toString(36).slice(2, 10) + Date.now().toString(36)
}
