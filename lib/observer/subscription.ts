/**
 * One subscription of one socket: the groups it listens to, how a message becomes the
 * event its subscriber sees (or nothing), and the permission check run on every delivery.
 */
import type { ActionContext } from '../context.js'
import type { Serializer } from '../serializer.js'
import type { GroupMessage, ModelMessage, Rendered, Row } from './changes.js'
import type { ResumeState } from './resume.js'
import type { Listening } from './hub.js'
import type { RowPredicate } from './matcher.js'

/** Turns a group message into the subscriber's event, or `undefined` for none. */
export type Renderer = (message: GroupMessage) => Rendered | undefined

/** Where a subscription's events go: the socket's consumer, which orders and sends them. */
export interface EventSink {
  deliverEvent: (subscription: Subscription, message: GroupMessage) => void
}

/**
 * The socket's consumer as the subscription mixins (mixins.ts) use it: reached from a
 * message's context (`ctx[kConnection]`), so they need not know the consumer itself.
 */
export interface SubscriptionHost extends EventSink {
  /** The re-check run before each event of a subscription `ctx`'s action makes; undefined when there is nothing to check. */
  permitFor (ctx: ActionContext, args: Record<string, unknown>): ((object?: Record<string, unknown>) => Promise<boolean>) | undefined
  /** Add a subscription (false: one with its key is there already); `replace` swaps that one out. */
  addSubscription (subscription: Subscription, replace?: boolean): boolean
  /** Remove the subscriptions `match` selects; how many were removed. */
  removeSubscriptions (match: (subscription: Subscription) => boolean): number
}

/** One subscription. Inactive once removed: a delivery already under way is then dropped. */
export class Subscription implements Listening {
  /** Cleared when unsubscribed or the socket closed; checked again just before sending. */
  active = true
  /** The request_id, encoded once for every event of this subscription. */
  readonly requestIdJson: string
  /** Numbering and recent events, when the client asked for a resumable subscription. */
  resume: ResumeState | undefined

  constructor (
    private readonly sink: EventSink,
    /** Identifies the subscription on its socket: subscribing again with the same key does not duplicate it. */
    readonly key: string,
    readonly groups: readonly string[],
    readonly requestId: unknown,
    readonly render: Renderer,
    /** Re-checks the subscriber's permissions before each event, object permissions on its row; absent = nothing to check. */
    readonly permit?: (object?: Record<string, unknown>) => Promise<boolean>,
    /** Decides what an event sends to this subscriber (`ctx.subscribe`'s `handler`); absent = the event as rendered. */
    readonly handler?: (rendered: Rendered, message: GroupMessage) => void | Promise<void>
  ) {
    this.requestIdJson = JSON.stringify(requestId) ?? 'null'
  }

  deliver (message: GroupMessage): void {
    if (this.active) this.sink.deliverEvent(this, message)
  }
}

/**
 * Encoded data by message and shaper: a change is shaped and encoded once, however many
 * subscribers (of however many routes sharing a response schema) receive it.
 */
const encoded = new WeakMap<object, Map<unknown, string>>()

function encodeOnce (message: object, by: unknown, make: () => unknown): string {
  let forMessage = encoded.get(message)
  if (forMessage === undefined) encoded.set(message, (forMessage = new Map()))
  let json = forMessage.get(by)
  if (json === undefined) forMessage.set(by, (json = JSON.stringify(make()) ?? 'null'))
  return json
}

const PK_ONLY = Symbol('pk only')
const AS_IS = Symbol('as is')
const GROUP_DATA = Symbol('group data')

/** How a model subscription sees rows. */
export interface ModelView {
  entity: string
  serializer: Serializer
  /** The subscriber's scope (`getQueryset`), decided on a row. */
  scope: RowPredicate
  /** The subscription's own filter (a filtered list), decided on a row. */
  filter: RowPredicate
  /** Whether rows that come into view arrive as `create` (lists) or as `update` (instances, which get no creates). */
  creates: boolean
}

/**
 * A model change as the subscriber sees it: a row that comes into view is a create
 * (201), one that stays in view an update (200), one that leaves it — deleted or changed
 * out of the filter or scope — a delete (204) with `{"pk": …}`; nothing for a row never in view.
 */
export function renderModel (view: ModelView, message: ModelMessage): Rendered | undefined {
  if (message.entity !== view.entity) return undefined
  const visible = (row: Row | null): boolean => row !== null && view.scope(row) && view.filter(row)
  // A row that entered an app's group was not in it before, one that left it is no longer (see groupChange).
  const before = message.groupChange !== 'create' && visible(message.before)
  const after = message.groupChange !== 'delete' && visible(message.after)
  if (after) {
    const dataJson = eventData(view.serializer, message)
    // Rendered where the change was committed, and that failed (the row was gone by then): no event rather than a wrong one.
    if (dataJson === undefined) return undefined
    if (before) return { action: 'update', status: 200, dataJson }
    if (view.creates) return { action: 'create', status: 201, dataJson }
    return message.change === 'create' ? undefined : { action: 'update', status: 200, dataJson }
  }
  if (before) return { action: 'delete', status: 204, dataJson: encodeOnce(message, PK_ONLY, () => ({ pk: message.pk })) }
  return undefined
}

/**
 * The encoded object of a change as `serializer` shows it — the same as a reply: a shape of
 * the row's own columns is taken from the row; one with relations or computed fields was
 * rendered from the entity where the change was committed (`message.views`).
 */
function eventData (serializer: Serializer, message: ModelMessage): string | undefined {
  if (!serializer.needsEntity) return encodeOnce(message, serializer.key, () => serializer.shape(message.after))
  const view = message.views?.[serializer.key]
  return view === undefined ? undefined : encodeOnce(message, serializer.key, () => view)
}

/** A model subscription's renderer: model changes only. */
export function modelRenderer (view: ModelView): Renderer {
  return (message) => message.kind === 'model' ? renderModel(view, message) : undefined
}

/**
 * A group subscription's renderer (`ctx.subscribe`): an app's own events as published;
 * changes of the route's entity as a list subscription sees them (scope applies);
 * changes of other entities as `{"pk": …}` only, since this route has no shape for them.
 */
export function groupRenderer (view: ModelView | undefined): Renderer {
  return (message) => {
    if (message.kind === 'custom') {
      return { action: message.action, status: message.status, dataJson: encodeOnce(message, AS_IS, () => message.data) }
    }
    const own = message.groupData
    if (view !== undefined && message.entity === view.entity) {
      const rendered = renderModel(view, message)
      // The observer's own shape, where it has one, instead of the route's (a delete stays {pk}).
      if (rendered === undefined || own === undefined || rendered.action === 'delete') return rendered
      return { ...rendered, dataJson: encodeOnce(message, GROUP_DATA, () => own) }
    }
    const change = message.groupChange ?? message.change
    const status = change === 'create' ? 201 : change === 'update' ? 200 : 204
    if (own !== undefined && change !== 'delete') return { action: change, status, dataJson: encodeOnce(message, GROUP_DATA, () => own) }
    return { action: change, status, dataJson: encodeOnce(message, PK_ONLY, () => ({ pk: message.pk })) }
  }
}
