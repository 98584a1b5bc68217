/**
 * The in-process broadcast layer (the default): groups live in this process only.
 *
 * One instance may be shared by several apps in one process (each sees the others'
 * events, as separate processes would through Redis).
 */
import type { FastifyBaseLogger } from 'fastify'
import type { BroadcastLayer, BroadcastMessage, GroupListener } from './layer.js'

/** Deliver `message` to each listener; one listener failing never stops the others. */
export function deliverTo (
  listeners: Iterable<GroupListener> | undefined,
  group: string,
  message: BroadcastMessage,
  log: FastifyBaseLogger | undefined
): void {
  if (listeners === undefined) return
  for (const listener of listeners) {
    try {
      listener(group, message)
    } catch (err) {
      log?.error({ err, group }, 'fastify-ws-rest: broadcast listener failed')
    }
  }
}

/** Listeners by group, dropping a group when its last listener leaves so groups never accumulate. */
export class ListenerRegistry {
  private readonly byGroup = new Map<string, Set<GroupListener>>()

  /** Add; true when this is the group's first listener. */
  add (group: string, listener: GroupListener): boolean {
    let set = this.byGroup.get(group)
    const first = set === undefined
    if (set === undefined) this.byGroup.set(group, (set = new Set()))
    set.add(listener)
    return first
  }

  /** Remove; true when the group has no listener left. */
  remove (group: string, listener: GroupListener): boolean {
    const set = this.byGroup.get(group)
    if (set === undefined || !set.delete(listener)) return false
    if (set.size > 0) return false
    this.byGroup.delete(group)
    return true
  }

  get (group: string): Set<GroupListener> | undefined {
    return this.byGroup.get(group)
  }

  groups (): string[] {
    return [...this.byGroup.keys()]
  }

  clear (): void {
    this.byGroup.clear()
  }
}

/** Groups in this process only. */
export class MemoryLayer implements BroadcastLayer {
  private readonly listeners = new ListenerRegistry()
  private log: FastifyBaseLogger | undefined

  init (log: FastifyBaseLogger): void {
    this.log ??= log
  }

  publish (group: string, message: BroadcastMessage): void {
    // A copy of the set: a listener that unsubscribes while being called does not skip its neighbour.
    const set = this.listeners.get(group)
    deliverTo(set === undefined ? undefined : [...set], group, message, this.log)
  }

  listen (group: string, listener: GroupListener): void {
    this.listeners.add(group, listener)
  }

  unlisten (group: string, listener: GroupListener): void {
    this.listeners.remove(group, listener)
  }

  groups (): string[] {
    return this.listeners.groups()
  }

  async close (): Promise<void> {
    // Nothing to release: hubs unlisten their own groups when their app closes, and a
    // layer shared by several apps must keep serving the ones still open.
  }
}
