/**
 * Broadcast layers: how a change made on one server instance reaches the subscribers
 * connected to every instance.
 *
 * A layer carries JSON-safe messages addressed to group names. The plugin's hub listens
 * to a group on the layer while at least one of its sockets is subscribed to it, and
 * publishes every event to the groups it maps to. Delivery is at most once and in
 * publish order per publisher; a layer never throws at its caller — a failure to reach
 * other instances is logged, and actions go on working.
 */
import type { FastifyBaseLogger } from 'fastify'

/** What travels through a layer: a JSON-safe object (it may cross a process boundary). */
export type BroadcastMessage = Record<string, unknown>

/** Receives the messages of the groups it listens to. */
export type GroupListener = (group: string, message: BroadcastMessage) => void

/** The interface every broadcast layer implements. */
export interface BroadcastLayer {
  /**
   * Called once by each plugin registration using the layer, with the app's logger,
   * before anything else. A layer logs its failures there.
   */
  init?: (log: FastifyBaseLogger) => void | Promise<void>
  /**
   * Send `message` to every listener of `group`: this process's at once, and other
   * instances' where the layer is shared between processes. Never throws.
   */
  publish: (group: string, message: BroadcastMessage) => void
  /** Start delivering `group`'s messages to `listener` (idempotent for the same pair). */
  listen: (group: string, listener: GroupListener) => void
  /** Stop delivering `group`'s messages to `listener`; the layer forgets a group with no listener left. */
  unlisten: (group: string, listener: GroupListener) => void
  /**
   * True when the layer reaches other processes (Redis): a resumed subscription may then
   * be held by another instance, and is claimed from it through the layer.
   */
  readonly remote?: boolean
  /**
   * Resolves once every `listen` and `unlisten` made so far is in effect (Redis: its
   * SUBSCRIBE acknowledged). Absent: in effect at once. A resumed subscription waits for
   * it before it claims its key, so no event falls between the old holder and itself.
   */
  settled?: () => Promise<void>
  /** The groups this process listens to (for tests and diagnostics). */
  groups: () => string[]
  /** Release connections and listeners. Safe to call more than once. */
  close: () => Promise<void>
}
