/**
 * What each action takes and answers, at the type level only: how the typed client
 * (`fastify-ws-rest/client`) infers, from `typeof` a route definition, the arguments and
 * the reply data of every action — like tRPC, with no code generation.
 *
 * An action carries a phantom `~wire` type ({@link WiredAction}): a custom action its own
 * arguments (from its TypeBox schema) and reply data (from its handler), a {@link CustomWire};
 * a mixin an {@link ActionWire} of its own, declared in the mixin's file and computed from
 * the route it is used on. This file knows no mixin by name, so an app's mixin is typed
 * exactly like a built-in one.
 */
import type { Static, TSchema } from '@sinclair/typebox'

/** What the wire types read of an action: its name, and its phantom wire (see `ActionDefinition`). */
export interface WiredAction<Name extends string = string, Wire = unknown> {
  readonly name: Name
  /** Compile time only, never set: what the typed client infers this action's arguments and reply data from. */
  readonly '~wire'?: Wire
}

/** A custom action's wire: its arguments and its reply's data, fixed whatever the route. */
export interface CustomWire<Args, Data> {
  readonly args: Args
  readonly data: Data
}

/**
 * A mixin's wire: what the action takes (`args`), answers (`data`, as it arrives) and,
 * for a subscribing action, what its subscription delivers (`events`) — on the route it
 * is used on, which the wire reads as `this['route']`:
 *
 * ```ts
 * interface BulkCreateWire extends ActionWire {
 *   readonly args: Record<'data', Array<RouteInput<this['route'], 'create'>>>
 *   readonly data: Array<RouteObject<this['route']>>
 * }
 * ```
 *
 * A wire is a type function: {@link ResolveWire} applies it to a route by intersecting it
 * with `{ route }`, which is what `this['route']` then reads.
 */
export interface ActionWire {
  /**
   * The route's options, as typed (`typeof` a `defineRoute(...)`); only ever read, as
   * `this['route']`. `unknown` here, not `RouteShape`: resolving intersects it with the
   * route, and an intersection with the general shape makes every schema type a deep one.
   */
  readonly route: unknown
  /** The message's arguments (every key but `action` and `request_id`). */
  readonly args: unknown
  /** The reply's `data`, as it arrives (JSON: see {@link Jsonified}). */
  readonly data: unknown
  /** A subscribing action's events (`{action, data, status}`); declaring it makes the action a subscribing one for the client. */
  readonly events?: unknown
}

/** `Wire` applied to `Route`: its `args`, `data` and `events` as they are on that route. */
export type ResolveWire<Wire extends ActionWire, Route extends RouteShape> = Wire & { readonly route: Route }

/** The route options the wire types read: schemas, the lookup argument, the filterable fields. */
export interface RouteShape {
  readonly actions: readonly unknown[]
  readonly schema?: { readonly create?: TSchema, readonly update?: TSchema, readonly response?: TSchema }
  readonly lookupField?: string
  readonly lookupArg?: string
  /** Only read when typed as literals (`['id', 'author']`): then `filter` may name those keys only. */
  readonly filterFields?: readonly string[]
}

/** Every action of a route, nested arrays (mixins adding two actions) flattened. */
export type ActionsOf<Route extends RouteShape> = Flatten<Route['actions'][number]>
type Flatten<A> = A extends readonly unknown[] ? A[number] : A

/** The names of a route's actions. */
export type ActionName<Route extends RouteShape> = ActionsOf<Route> extends infer A
  ? A extends WiredAction<infer N, any> ? N : never
  : never

/** The wire of the action `Name` (a union when several actions share a name, which a route refuses). */
type WireOf<Route extends RouteShape, Name> = ActionsOf<Route> extends infer A
  ? A extends WiredAction<infer N, infer W> ? (N extends Name ? W : never) : never
  : never

/** The static type of the route's schema `K` (optional properties infer with `undefined`, hence NonNullable). */
type SchemaOf<Route, K extends 'create' | 'update' | 'response'> =
  Route extends { readonly schema?: infer S } ? StaticOr<S extends { readonly [P in K]?: infer X } ? X : undefined> : Record<string, unknown>

/** For a mixin's wire: the static type of the route's input schema `K` (`schema.create` or `schema.update`). */
export type RouteInput<Route, K extends 'create' | 'update'> = SchemaOf<Route, K>
type StaticOr<S> = [NonNullable<S>] extends [TSchema] ? Static<NonNullable<S>> : Record<string, unknown>

/**
 * A value as it arrives after JSON: what `JSON.stringify` makes of it. The server
 * serializes replies and events to JSON, so a `Type.Date()` (a `Date` in `Static<…>`)
 * reaches the client as its ISO string — typing it `Date` would let an app call
 * `.getTime()` on a string. Anything with a `toJSON()` becomes what that returns;
 * arrays and objects are mapped member by member. `any` and `unknown` stay as they are.
 */
export type Jsonified<T> =
  0 extends (1 & T) ? T
    : T extends { toJSON: (...args: any[]) => infer J } ? Jsonified<J>
      : T extends string | number | boolean | null | undefined ? T
        : T extends readonly unknown[] ? { [I in keyof T]: Jsonified<T[I]> }
          : T extends object ? { [K in keyof T]: Jsonified<T[K]> }
            : T

/** For a mixin's wire: one object in replies (as it arrives), by the mixin's own response schema, or else the route's. */
export type RouteObject<Route, Response = undefined> = Jsonified<[Response] extends [TSchema] ? Static<Response> : SchemaOf<Route, 'response'>>

/** The argument carrying the lookup value: `lookupArg`, else `lookupField`, else `pk`. */
type LookupKey<Route> =
  Route extends { readonly lookupArg: infer L extends string } ? L
    : Route extends { readonly lookupField: infer F extends string } ? F
      : 'pk'
/** For a mixin's wire: the argument a detail action finds its object by (`{pk}`, or the route's `lookupArg` / `lookupField`). */
export type LookupArgs<Route> = { [K in LookupKey<Route>]: string | number }

/** A value a filter compares with (dates as ISO strings, relations by the related key). */
export type FilterScalar = string | number | boolean | null

/** A filter on one field: a value (equality, or membership for a to-many relation), or operators. */
export type FilterValue = FilterScalar | {
  $eq?: FilterScalar
  $ne?: FilterScalar
  $gt?: FilterScalar
  $gte?: FilterScalar
  $lt?: FilterScalar
  $lte?: FilterScalar
  $in?: readonly FilterScalar[]
  $nin?: readonly FilterScalar[]
  /** Case-insensitive substring. */
  $contains?: string
}

/**
 * The keys `filter` may name: the route's `filterFields` when its type has them as
 * literals, else any string (a `string[]` says nothing about which; the server still
 * answers 400 for an undeclared one).
 */
export type FilterKey<Route> =
  Route extends { readonly filterFields?: infer L }
    ? NonNullable<L> extends readonly (infer F extends string)[] ? (string extends F ? string : F) : string
    : string

/** What `filter` takes: `{field: value}` or `{field: {$gt: …}}`. */
export type FilterArg<Route = RouteShape> =
  string extends FilterKey<Route> ? Record<string, FilterValue> : { [K in FilterKey<Route>]?: FilterValue }

/** `ordering`: a field of `orderingFields`, `-` first for descending; or a list of 1 to 8 of them (ties broken left to right). */
export type Ordering =
  | string
  | readonly [string]
  | readonly [string, string]
  | readonly [string, string, string]
  | readonly [string, string, string, string]
  | readonly [string, string, string, string, string]
  | readonly [string, string, string, string, string, string]
  | readonly [string, string, string, string, string, string, string]
  | readonly [string, string, string, string, string, string, string, string]

/** What list-like actions take. */
export interface ListArgs<Route = RouteShape> {
  /** `{field: value}` or `{field: {$gt: …}}`, on the route's `filterFields`. */
  filter?: FilterArg<Route>
  search?: string
  ordering?: Ordering
}

/**
 * Optimistic concurrency on update, patch and delete: the `version` the client read. When
 * the entity has a version property and it differs now, the server answers 409 (it is
 * ignored for an entity without one, which the wire types cannot see).
 */
export interface VersionArg { version?: number | string }

export interface PageArgs<Route = RouteShape> extends ListArgs<Route> { limit?: number, offset?: number }
export interface Page<T> { count: number, results: T[], limit: number, offset: number }
export interface CursorArgs<Route = RouteShape> extends ListArgs<Route> { limit?: number, cursor?: string | null }
export interface CursorPage<T> { results: T[], next: string | null }

/** The event of a model subscription: the object for creates and updates, `{pk}` for deletes. */
export type ModelEvent<T> =
  | { action: 'create' | 'update', data: T, status: number }
  | { action: 'delete', data: { pk: string | number }, status: number }

/** The arguments of action `Name` (everything but `action` and `request_id`). */
export type ArgsOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends ActionWire ? ResolveWire<W, Route>['args']
      : W extends CustomWire<infer A, any> ? A
        : Record<string, unknown>
    : never

/** The `data` of action `Name`'s reply, as it arrives (JSON: a handler's `Date` is a string by then). */
export type DataOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends ActionWire ? ResolveWire<W, Route>['data']
      : W extends CustomWire<any, infer D> ? Jsonified<D>
        : unknown
    : never

/** A wire that declares its events: a subscribing action's. */
type SubscribingWire = ActionWire & { readonly events: unknown }

/** The events a subscribing action `Name` delivers. */
export type EventOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends SubscribingWire ? ResolveWire<W, Route>['events']
      : { action: string, data: unknown, status: number }
    : never

/** The names of a route's subscribing actions: those whose wire declares events. */
export type SubscribingAction<Route extends RouteShape> = {
  [N in ActionName<Route>]: WireOf<Route, N> extends SubscribingWire ? N : never
}[ActionName<Route>]
