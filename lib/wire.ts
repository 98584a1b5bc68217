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

/** The route options the wire types read: schemas and the lookup argument. */
export interface RouteShape {
  readonly actions: readonly unknown[]
  readonly schema?: { readonly create?: TSchema, readonly update?: TSchema, readonly response?: TSchema }
  readonly lookupField?: string
  readonly lookupArg?: string
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

/** One object in replies: the mixin's own response schema, or the route's. */
type ObjectOf<Route extends RouteShape, Response> = [Response] extends [TSchema] ? Static<Response> : SchemaOf<Route, 'response'>

/** The argument carrying the lookup value: `lookupArg`, else `lookupField`, else `pk`. */
type LookupKey<Route extends RouteShape> =
  Route extends { readonly lookupArg: infer L extends string } ? L
    : Route extends { readonly lookupField: infer F extends string } ? F
      : 'pk'
type Lookup<Route extends RouteShape> = { [K in LookupKey<Route>]: string | number }

/** What list-like actions take. */
export interface ListArgs {
  /** `{field: value}` or `{field: {$gt: …}}`, on the route's `filterFields`. */
  filter?: Record<string, unknown>
  search?: string
  /** A field of `orderingFields`, `-` first for descending. */
  ordering?: string
}

export interface PageArgs extends ListArgs { limit?: number, offset?: number }
export interface Page<T> { count: number, results: T[], limit: number, offset: number }
export interface CursorArgs extends ListArgs { limit?: number, cursor?: string | null }
export interface CursorPage<T> { results: T[], next: string | null }

/** The event of a model subscription: the object for creates and updates, `{pk}` for deletes. */
export type ModelEvent<T> =
  | { action: 'create' | 'update', data: T, status: number }
  | { action: 'delete', data: { pk: string | number }, status: number }

type MixinArgs<Route extends RouteShape, K extends MixinKind> =
  K extends 'create' ? { data: SchemaOf<Route, 'create'> }
    : K extends 'update' ? Lookup<Route> & { data: SchemaOf<Route, 'update'> }
      : K extends 'patch' ? Lookup<Route> & { data: Partial<SchemaOf<Route, 'update'>> }
        : K extends 'retrieve' | 'delete' | 'subscribe_instance' ? Lookup<Route>
          : K extends 'unsubscribe_instance' ? Partial<Lookup<Route>>
            : K extends 'list' | 'subscribe_list' ? ListArgs
              : K extends 'paginated_list' | 'streamed_list' ? PageArgs
                : K extends 'cursor_list' ? CursorArgs
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

/** The `data` of action `Name`'s reply. */
export type DataOf<Route extends RouteShape, Name extends ActionName<Route>> =
  WireOf<Route, Name> extends infer W
    ? W extends MixinWire<infer K, infer Response> ? MixinData<Route, K, Response>
      : W extends CustomWire<any, infer D> ? D
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
