/**
 * The plugin's shared state: one per registration, handed to every route it declares.
 */
import type { ConsumerEnvironment } from './consumer.js'
import type { Hub } from './observer/hub.js'
import type { ResumeRegistry } from './observer/resume.js'
import type { ResolvedOptions } from './options.js'
import type { CompiledRoute, DeclaredRoute } from './route.js'
import type { Serializer } from './serializer.js'
import type { OpenSockets, Session } from './session.js'
import type { SubscriptionBudget } from './subscription-budget.js'

/**
 * State shared by every route of one registration. Sessions and consumers see only their
 * part of it ({@link OpenSockets}, {@link ConsumerEnvironment}), so they never import this module.
 */
export interface PluginState extends OpenSockets, ConsumerEnvironment {
  readonly options: ResolvedOptions
  /** Open sockets, for graceful shutdown. */
  readonly sessions: Set<Session>
  /** Open sockets by client IP, for `maxConnectionsPerIp`. */
  readonly perIp: Map<string, number>
  /** Subscriptions by client and in all (subscription-budget.ts). */
  readonly subscriptionBudget: SubscriptionBudget
  /** Subscriptions, by group, on the broadcast layer. */
  readonly hub: Hub
  /** Resumable subscriptions' holders and claims; `undefined` when resuming is off. */
  readonly resume: ResumeRegistry | undefined
  /** Start publishing the changes of an entity (by class name). */
  observe: (className: string) => void
  /** The shapes and relation paths events of an entity (by class name) are rendered and decided by. */
  describeEvents: (className: string, serializers: Serializer[], paths: readonly string[]) => void
  /** `app.wsRest.observe`: publish an entity's changes, also to the groups `groups` names. */
  observeEntity: (entity: unknown, groups?: (change: any) => Iterable<string>, shape?: (row: any) => unknown) => void
  /** Declared routes, whose hook chains are fixed when the app is ready. */
  readonly routes: CompiledRoute[]
  /** Routes and multiplexed routes as declared, in order: what the AsyncAPI document describes. */
  readonly declared: DeclaredRoute[]
  /** Set once the app is ready: no more preAction hooks from then on. */
  ready: boolean
}
