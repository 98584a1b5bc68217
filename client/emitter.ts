/**
 * A minimal typed event emitter (no Node `events` in a browser bundle). A listener that
 * throws is reported through `onListenerError` instead of breaking the emit, so one bad
 * listener cannot stop the client's own bookkeeping.
 */

export type Listener = (...args: any[]) => void

export class Emitter<Events extends { [K in keyof Events]: Listener }> {
  private readonly listeners = new Map<keyof Events, Set<Listener>>()

  constructor (private readonly onListenerError: (error: unknown, event: keyof Events) => void) {}

  /** Add `listener`; returns the function that removes it. */
  on<K extends keyof Events> (event: K, listener: Events[K]): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) this.listeners.set(event, set = new Set())
    set.add(listener)
    return () => this.off(event, listener)
  }

  off<K extends keyof Events> (event: K, listener: Events[K]): void {
    this.listeners.get(event)?.delete(listener)
  }

  emit<K extends keyof Events> (event: K, ...args: Parameters<Events[K]>): void {
    const set = this.listeners.get(event)
    if (set === undefined) return
    for (const listener of [...set]) {
      try {
        listener(...args)
      } catch (error) {
        this.onListenerError(error, event)
      }
    }
  }
}
