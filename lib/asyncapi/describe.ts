/**
 * How an action describes itself to the AsyncAPI document: what it takes, answers and
 * sends as events on a given route. Every mixin (built in or an app's) carries such a
 * describer beside its handler and its wire types; the generator (document.ts) only
 * calls it, so an app's mixin is documented exactly like a built-in one.
 */
import { Type, type TProperties, type TSchema } from '@sinclair/typebox'
import type { InputKind } from '../validation.js'

/** One event a subscription brings, with the subscribing message's request_id. */
export interface EventDoc {
  /** The event's `action` (`update`, `delete`, …). */
  action: string
  /** Its `response_status`. */
  status: number
  /** Its `data`. */
  data: TSchema
  summary?: string
}

/** What an action takes and answers, for the document. Every field is optional. */
export interface ActionDoc {
  summary?: string
  description?: string
  /** The message's arguments (every key but `action` and `request_id`). Default: any. */
  args?: TSchema
  /** The reply's `response_status` when it succeeds. Default: any 1xx–3xx. */
  status?: number
  /** The reply's `data` when it succeeds. Default: any JSON. */
  data?: TSchema
  /** The action refuses a message without `request_id` (its events carry it). */
  requiresRequestId?: boolean
  /**
   * Events the action subscribes the socket to, arriving with its request_id; `true`
   * for events of any action and data (`ctx.subscribe` to the app's own groups).
   */
  events?: EventDoc[] | true
}

/** What a route offers its actions' describers: its schemas, as references into the document. */
export interface RouteDoc {
  /** An object as replies show it (`schema.response`). */
  readonly response: TSchema
  /** `data` of create, update (the whole object) or patch (any subset of update). */
  input: (kind: InputKind) => TSchema
  /** The lookup argument of detail actions (`pk`, or the route's `lookupArg`), required. */
  readonly lookup: TProperties
  /** The primary key as events carry it (`{"pk": …}` of a delete). */
  readonly pk: TSchema
  /** `version` (optional) when the entity has a version property; otherwise nothing. */
  readonly version: TProperties
  /** `filter` and `search` (optional), as far as the route declares fields for them. */
  readonly query: TProperties
  /** `ordering` (optional), over the route's orderable fields. */
  readonly ordering: TProperties
}

/** How a mixin tells the document what it takes and answers on a given route. */
export type ActionDescriber = (route: RouteDoc) => ActionDoc

/** An integer argument that may also come as a numeric string (`limit`, `offset`). */
export function integerArg (description: string): TSchema {
  return Type.Optional(Type.Union([Type.Integer(), Type.String({ pattern: '^\\s*[-+]?\\d+\\s*$' })], { description }))
}

/** A limit/offset page of `item`s, as paginated and streamed lists answer. */
export function pageSchema (item: TSchema): TSchema {
  return Type.Object({ count: Type.Integer(), results: Type.Array(item), limit: Type.Integer(), offset: Type.Integer() })
}
