/**
 * What each action takes and answers, at the type level only: how the typed client
 * (`fastify-ws-rest/client`) infers, from `typeof` a route definition, the arguments and
 * the reply data of every action — like tRPC, with no code generation.
 *
 * An action carries a phantom `~wire` type: a custom action its own arguments (from its
 * TypeBox schema) and reply data (from its handler); a mixin the name of its kind, which
 * is resolved against the route's schemas here.
 */
import type { Static, TSchema } from '@sinclair/typebox'
import type { ActionDefinition } from './action.js'

/** A custom action's wire: its arguments and its reply's data. */
export interface CustomWire<Args, Data> {
  readonly args: Args
  readonly data: Data
}

/** The mixins, by the shape of what they take and answer. */
export type MixinKind =
  | 'create' | 'list' | 'retrieve' | 'update' | 'patch' | 'delete'
  | 'paginated_list' | 'cursor_list' | 'streamed_list' | 'list_cancel'
  | 'subscribe_instance' | 'unsubscribe_instance' | 'subscribe_list' | 'unsubscribe_list'

/** A mixin's wire: its kind, and the response schema it was given in place of the route's (if any). */
export interface MixinWire<K extends MixinKind, Response extends TSchema | undefined = undefined> {
  readonly mixin: K
  readonly response: Response
}

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
  ? A extends ActionDefinition<infer N, any> ? N : never
  : never

/** The wire of the action `Name` (a union when several actions share a name, which a route refuses). */
type WireOf<Route extends RouteShape, Name> = ActionsOf<Route> extends infer A
  ? A extends ActionDefinition<infer N, infer W> ? (N extends Name ? W : never) : never
  : never

/** The static type of the route's schema `K` (optional properties infer with `undefined`, hence NonNullable). */
type SchemaOf<Route extends RouteShape, K extends 'create' | 'update' | 'response'> =
  StaticOr<NonNullable<Route['schema']>[K]>
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

/** One object in replies (as it arrives): the mixin's own response schema, or the route's. */
type ObjectOf<Route extends RouteShape, Response> = Jsonified<[Response] extends [TSchema] ? Static<Response> : SchemaOf<Route, 'response'>>

/** The argument carrying the lookup value: `lookupArg`, else `lookupField`, else `pk`. */
type LookupKey<Route extends RouteShape> =
  Route extends { readonly lookupArg: infer L extends string } ? L
    : Route extends { readonly lookupField: infer F extends string } ? F
      : 'pk'
type Lookup<Route extends RouteShape> = { [K in LookupKey<Route>]: string | number }

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
export type FilterKey<Route extends RouteShape> =
  Route extends { readonly filterFields?: infer L }
    ? NonNullable<L> extends readonly (infer F extends string)[] ? (string extends F ? string : F) : string
    : string

/** What `filter` takes: `{field: value}` or `{field: {$gt: …}}`. */
export type FilterArg<Route extends RouteShape = RouteShape> =
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
export interface ListArgs<Route extends RouteShape = RouteShape> {
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

export interface PageArgs<Route extends RouteShape = RouteShape> extends ListArgs<Route> { limit?: number, offset?: number }
export interface Page<T> { count: number, results: T[], limit: number, offset: number }
export interface CursorArgs<Route extends RouteShape = RouteShape> extends ListArgs<Route> { limit?: number, cursor?: string | null }
export interface CursorPage<T> { results: T[], next: string | null }

/** The event of a model subscription: the object for creates and updates, `{pk}` for deletes. */
export type ModelEvent<T> =
  | { action: 'create' | 'update', data: T, status: number }
  | { action: 'delete', data: { pk: string | number }, status: number }

type MixinArgs<Route extends RouteShape, K extends MixinKind> =
  K extends 'create' ? { data: SchemaOf<Route, 'create'> }
    : K extends 'update' ? Lookup<Route> & VersionArg & { data: SchemaOf<Route, 'update'> }
      : K extends 'patch' ? Lookup<Route> & VersionArg & { data: Partial<SchemaOf<Route, 'update'>> }
        : K extends 'delete' ? Lookup<Route> & VersionArg
          : K extends 'retrieve' | 'subscribe_instance' ? Lookup<Route>
            : K extends 'unsubscribe_instance' ? Partial<Lookup<Route>>
              : K extends 'list' | 'subscribe_list' ? ListArgs<Route>
                : K extends 'paginated_list' | 'streamed_list' ? PageArgs<Route>
                  : K extends 'cursor_list' ? CursorArgs<Route>
                  : Record<string, never>

type MixinData<Route extends RouteShape, K extends MixinKind, Response> =
  K extends 'create' | 'retrieve' | 'update' | 'patch' ? ObjectOf<Route, Response>
    : K extends 'list' ? Array<ObjectOf<Route, Response>>
      : K extends 'paginated_list' | 'streamed_list' ? Page<ObjectOf<Route, Response>>
        : K extends 'cursor_list' ? CursorPage<ObjectOf<Route, Response>>
          : null

/** The arguments of action `Name` (everything but `action` and `request_id`). */
export type ArgsOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends MixinWire<infer K, any> ? MixinArgs<Route, K>
      : W extends CustomWire<infer A, any> ? A
        : Record<string, unknown>
    : never

/** The `data` of action `Name`'s reply, as it arrives (JSON: a handler's `Date` is a string by then). */
export type DataOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends MixinWire<infer K, infer Response> ? MixinData<Route, K, Response>
      : W extends CustomWire<any, infer D> ? Jsonified<D>
        : unknown
    : never

/** The events a subscribing action `Name` delivers. */
export type EventOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends MixinWire<'subscribe_instance' | 'subscribe_list', infer Response> ? ModelEvent<ObjectOf<Route, Response>>
      : { action: string, data: unknown, status: number }
    : never

/** The names of a route's subscribing actions. */
export type SubscribingAction<Route extends RouteShape> = {
  [N in ActionName<Route>]: WireOf<Route, N> extends MixinWire<'subscribe_instance' | 'subscribe_list', any> ? N : never
}[ActionName<Route>]
