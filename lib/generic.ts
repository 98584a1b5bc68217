/**
 * The generic model layer — what DCRF's GenericAsyncAPIConsumer gives every action:
 * the queryset a connection may see, object lookup, serialization by the response
 * schema, input validation, and the perform-create/update/delete steps a route may
 * override. Everything schema- and metadata-related is resolved once, when the route
 * is declared.
 */
import { LockMode, type EntityData, type EntityManager, type EntityMetadata, type EntityName, type FilterQuery, type MikroORM } from '@mikro-orm/core'
import type { Static, TSchema } from '@sinclair/typebox'
import { Type } from '@sinclair/typebox'
import type { ActionContext } from './context.js'
import { uniqueMessage } from './database-errors.js'
import { dialectOf } from './dialect.js'
import { Conflict, InvalidOption, NotFound, ValidationError } from './errors.js'
import { QueryRules, type ListQuery, type OrderBy, type QueryOptions } from './filtering.js'
import { analyzeCondition, anyRow, type RowPredicate } from './observer/matcher.js'
import { Batcher, type Outcome } from './batching.js'
import { GroupWrites } from './group-writes.js'
import type { ModelView } from './observer/subscription.js'
import type { Page } from './pagination.js'
import { isLoaded, SerializerCompiler, type OutputFields, type Serializer } from './serializer.js'
import { removalPlan, type RemovalPlan } from './removal.js'
import { checkObjectPermissions, type Permission } from './permissions.js'
import { kPermissions } from './symbols.js'
import { compileValidator, type CrossFieldCheck, type InputKind, type InputValidator } from './validation.js'
import { RelationInput } from './relation-input.js'
import { emptyConditionsOf } from './orm-compat.js'
import { scopeKey } from './scope-key.js'
import { PlainRows, readsPlain } from './plain-reads.js'
import type { Row } from './observer/changes.js'


/** The refusal of a subscription whose scope events cannot be checked against exactly (see `GenericModel.view`). */
const SCOPE_NOT_LIVE = 'Live updates are not available for this route\'s scope.'
/** The model part of a route's options. */
export interface ModelOptions<
  E extends object = any,
  C extends TSchema = TSchema,
  U extends TSchema = TSchema,
  R extends TSchema = TSchema
> extends QueryOptions {
  /** The MikroORM entity (a `defineEntity` / `EntitySchema` result, or a class). */
  entity: EntityName<E>
  schema: {
    /** Validates `data` of create. */
    create?: C
    /** Validates `data` of update (whole object); patch validates its Partial. */
    update?: U
    /** Shapes every object in every reply and event: what it does not declare never leaves the server. */
    response: R
    /** Other response schemas by name, chosen per request by `responseFor`. */
    responses?: Record<string, TSchema>
  }
  /**
   * Output fields that are not stored as declared: taken from another property
   * (`{ source: 'author.username' }`) or computed (`{ get: (entity, ctx) => … }`). Each must
   * also be declared in `schema.response`, which types it for clients.
   */
  fields?: OutputFields<E>
  /**
   * The response schema per request (DCRF's `get_serializer_class`): the name of one of
   * `schema.responses`, or undefined for `schema.response` — e.g. staff see `email`. Every
   * variant is declared up front, so events can be rendered in each.
   */
  responseFor?: (ctx: ActionContext) => string | undefined
  /** Cross-field rules run after the schema, merged into the same 400 (e.g. password1 == password2). */
  validate?: {
    create?: CrossFieldCheck<Static<C>>
    update?: CrossFieldCheck<Static<U>>
  }
  /** The property detail actions look objects up by. Default: the primary key, sent as `pk`. */
  lookupField?: string
  /** The message argument carrying the lookup value. Default `pk` for the primary key, else `lookupField`. */
  lookupArg?: string
  /**
   * Scope what this connection may see; detail actions outside it answer 404. `args` are the
   * message's arguments (DCRF's `get_queryset(**kwargs)`: `{"action": "list", "room": 5}`).
   */
  getQueryset?: (ctx: ActionContext, args: Record<string, unknown>) => FilterQuery<E> | undefined | Promise<FilterQuery<E> | undefined>
  /**
   * Turn a create's validated input into the data the entity is created from: hash a
   * password, set the owner or tenant from the connection, ask another service. Runs once
   * per request, before the write and outside any transaction (it holds no database
   * connection while it waits), and may be async. The creates of many sockets are still
   * written together in one flush (group commit). What it returns goes to `em.create`, or
   * to `performCreate` when the route has one.
   */
  prepareCreate?: (ctx: ActionContext, data: Static<C>) => EntityData<E> | Promise<EntityData<E>>
  /**
   * The same for `update` and `patch`: runs once per request, after the row was looked up
   * and checked (scope, object permissions, `version`), before it is written; its result is
   * assigned to the row (`em.assign`), or given to `performUpdate`. Grouped writes run it
   * outside the write transaction; a write that runs alone (see docs/performance.md) runs it
   * inside its own.
   */
  prepareUpdate?: (ctx: ActionContext, entity: E, data: Partial<Static<U>>) => EntityData<E> | Promise<EntityData<E>>
  /**
   * Create the entity from validated data (default: `em.create` + flush) — full control,
   * at the cost of group commit: each create then runs in a transaction of its own. It
   * receives what `prepareCreate` returned, where the route has one.
   */
  performCreate?: (ctx: ActionContext, data: Static<C>) => E | Promise<E>
  /** Apply validated data to the entity (default: `em.assign` + flush); turns group commit off for update and patch. */
  performUpdate?: (ctx: ActionContext, entity: E, data: Partial<Static<U>>) => void | Promise<void>
  /** Delete the entity (default: `em.remove` + flush). */
  performDelete?: (ctx: ActionContext, entity: E) => void | Promise<void>
}

/** A list query waiting to be run with those of other sockets. */
interface ListJob {
  query: ListQuery
  /** The page, for a paginated list; absent for a whole list. */
  page?: Page
  /** The connection's scope, and its key (scope-key.ts): only lists of the same scope share a query. */
  scope?: FilterQuery<any>
  scopeKey: string
}

/** Where shared reads take their rows from: entities, or plain rows (plain-reads.ts). */
interface RowSource<T> {
  find: (where: FilterQuery<any>, options?: { orderBy?: OrderBy, limit?: number, offset?: number }) => Promise<T[]>
  count: (where: FilterQuery<any>) => Promise<number>
}

/** A lookup waiting to be run with those of other sockets, within the connection's scope (keyed as for lists). */
interface LookupJob {
  value: unknown
  scope?: FilterQuery<any>
  scopeKey: string
}


/**
 * A condition on the model's entity as `em.find` / `count` take it. MikroORM 7 types that
 * parameter `FilterQuery<NoInfer<E>>`, which a `FilterQuery<E>` of the generic `E` here does
 * not satisfy (MikroORM 6 takes it as it is): the conditions are built and checked per entity.
 */
type AnyWhere = FilterQuery<any>

type LookupCoercer = (value: unknown) => unknown

/** A condition with no key at all, string or symbol. */
function isEmptyCondition (condition: object): boolean {
  return Object.keys(condition).length === 0 && Object.getOwnPropertySymbols(condition).length === 0
}

/**
 * Turn a client's lookup value into one of the property's type, or `undefined`.
 * Only scalars pass: an object such as `{"$like": "%"}` would act as a query operator
 * inside MikroORM, so it must never reach the ORM (docs/protocol.md → 404).
 */
function lookupCoercer (runtimeType: string | undefined): LookupCoercer {
  if (runtimeType === 'number') {
    return (v) => {
      if (typeof v === 'number') return Number.isSafeInteger(v) ? v : undefined
      if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v)
      return undefined
    }
  }
  if (runtimeType === 'bigint') {
    return (v) => (typeof v === 'number' && Number.isSafeInteger(v)) || (typeof v === 'string' && /^-?\d{1,19}$/.test(v)) ? String(v) : undefined
  }
  // A NUL character can be in no stored key, and the database would refuse the query: not found.
  return (v) => typeof v === 'string' ? (v.includes('\u0000') ? undefined : v) : typeof v === 'number' && Number.isFinite(v) ? String(v) : undefined
}

declare module './context.js' {
  interface ActionContext {
    /** The route's model layer (queryset, lookup, serialization, perform*); `undefined` on routes without an entity. */
    readonly model: GenericModel | undefined
  }
}

/** The model layer of one route. Mixins reach it as `ctx.model`. */
export class GenericModel<E extends object = any> {
  readonly entity: EntityName<E>
  readonly meta: EntityMetadata<E>
  readonly primaryKey: string
  readonly lookupField: string
  readonly lookupArg: string
  /** Shapes replies and events by the route's response schema. */
  readonly serializer: Serializer
  private readonly serializers: SerializerCompiler
  /** Mixins' own response schemas, compiled once each. */
  private readonly ownSerializers = new Map<TSchema, Serializer>()
  /** What a delete loads first, so cascaded removals and detached many-to-many owners publish their changes. */
  private readonly removal: RemovalPlan
  private readonly coerceLookup: LookupCoercer
  private readonly validators: Partial<Record<InputKind, InputValidator<any>>>
  /** The relations each input declares by related primary key(s): typed and looked up around the schema. */
  private readonly relationInputs: Partial<Record<InputKind, RelationInput>>
  private readonly options: ModelOptions<E>
  /** Whether the database locks rows (`SELECT … FOR UPDATE`). */
  private readonly rowLocks: boolean
  /** What lists may be filtered, ordered and searched by. */
  readonly query: QueryRules
  /** Properties with a single-column unique constraint. */
  private readonly uniqueProps: string[]
  private readonly orm: MikroORM
  /** Retrieves of many sockets coalesced into one `IN (…)` query per scope (where the lookup is unique). */
  private readonly lookups: Batcher<LookupJob, E | null> | undefined
  /** Identical list queries of many sockets of the same scope run once. */
  private readonly lists: Batcher<ListJob, { results: E[], count: number }>
  /** The same reads as plain rows, for replies that show only the row's own columns (plain-reads.ts). */
  private readonly plainRows: PlainRows | undefined
  private readonly plainLookups: Batcher<LookupJob, Row | null> | undefined
  private readonly plainLists: Batcher<ListJob, { results: Row[], count: number }> | undefined
  /** The serializers whose shape a plain row gives as an entity would. */
  private readonly plainSerializers = new WeakSet<Serializer>()
  /** Writes of many sockets in one flush; see group-writes.ts for when. */
  private readonly grouped: GroupWrites<E> | undefined
  /** Which writes may be grouped: those the route does not override. */
  private readonly groupable: { create: boolean, change: boolean, remove: boolean }

  constructor (orm: MikroORM, options: ModelOptions<E>) {
    const meta = orm.getMetadata().find<E>(options.entity)
    if (meta === undefined) throw new InvalidOption('entity', 'is not an entity known to the MikroORM instance')
    if (options.schema?.response === undefined) throw new InvalidOption('schema.response', 'is required on a route with an entity')
    this.options = options
    this.entity = options.entity
    this.meta = meta
    this.primaryKey = meta.primaryKeys[0]
    this.lookupField = options.lookupField ?? this.primaryKey
    const lookupProp = (meta.properties as Record<string, { runtimeType?: string } | undefined>)[this.lookupField]
    if (lookupProp === undefined) {
      throw new InvalidOption('lookupField', `"${this.lookupField}" is not a property of ${meta.className}`)
    }
    this.lookupArg = options.lookupArg ?? (this.lookupField === this.primaryKey ? 'pk' : this.lookupField)
    this.coerceLookup = lookupCoercer(lookupProp.runtimeType)
    this.serializers = new SerializerCompiler(orm.getMetadata())
    this.serializer = this.serializers.compile(meta as EntityMetadata, options.schema.response, options.fields)
    this.query = new QueryRules(meta as EntityMetadata, orm.em.getPlatform(), options)
    this.rowLocks = dialectOf(orm.em.getPlatform()).rowLocks
    this.uniqueProps = meta.props.filter((p) => p.unique !== undefined && p.unique !== false).map((p) => p.name)
    this.orm = orm
    this.removal = removalPlan(orm.getMetadata(), meta as EntityMetadata, this.query.relationPaths)
    // Reads of many sockets share queries; where connections have scopes (getQueryset),
    // only those whose scopes are the same plain condition (scope-key.ts).
    const uniqueLookup = this.lookupField === this.primaryKey || this.uniqueProps.includes(this.lookupField)
    this.lookups = uniqueLookup ? new Batcher((jobs) => this.findMany(jobs, () => this.entities())) : undefined
    this.lists = new Batcher((jobs) => this.runLists(jobs, () => this.entities()))
    this.plainRows = PlainRows.available(orm) ? new PlainRows(orm, this.entity) : undefined
    if (this.plainRows !== undefined) {
      this.plainLookups = uniqueLookup ? new Batcher((jobs) => this.findMany(jobs, () => this.plainSource())) : undefined
      this.plainLists = new Batcher((jobs) => this.runLists(jobs, () => this.plainSource()))
      if (Object.keys(options.fields ?? {}).length === 0 && readsPlain(orm, meta as EntityMetadata, options.schema.response)) this.plainSerializers.add(this.serializer)
    }
    // Entity lifecycle hooks and perform* overrides are the app's code running per entity:
    // group commit, which may run a request twice when a shared flush fails, keeps off them.
    // prepare* hooks run once per request whatever happens to the batch, and a scope is
    // applied to each request's own lookup inside the batch: neither turns it off.
    const hooks = Object.values(meta.hooks ?? {}).some((list) => Array.isArray(list) && list.length > 0)
    this.groupable = {
      create: !hooks && options.performCreate === undefined,
      change: !hooks && uniqueLookup && options.performUpdate === undefined,
      remove: !hooks && uniqueLookup && options.performDelete === undefined
    }
    this.grouped = Object.values(this.groupable).some(Boolean) ? new GroupWrites(orm, this) : undefined
    const { create, update } = options.schema
    this.validators = {
      create: create && compileValidator(create, options.validate?.create),
      update: update && compileValidator(update, options.validate?.update),
      patch: update && compileValidator(Type.Partial(update), options.validate?.update)
    }
    const dialect = dialectOf(orm.em.getPlatform())
    const updateRelations = update && RelationInput.compile(meta as EntityMetadata, update, dialect)
    this.relationInputs = {
      create: create && RelationInput.compile(meta as EntityMetadata, create, dialect),
      // patch declares the same properties as update, only all optional: the same relations.
      update: updateRelations,
      patch: updateRelations
    }
  }

  /** The entity's class name: the name its changes are published under. */
  get entityName (): string {
    return this.meta.className
  }

  /**
   * The lookup value a detail message names, of the lookup property's type: 400 keyed by
   * the lookup argument if absent, 404 if it cannot be one (never an object reaching the ORM).
   */
  lookupValue (args: Record<string, unknown>): unknown {
    const raw = args[this.lookupArg]
    if (raw === undefined || raw === null) throw ValidationError.field(this.lookupArg, 'This field is required.')
    const value = this.coerceLookup(raw)
    if (value === undefined) throw new NotFound()
    return value
  }

  /**
   * How this connection sees changed rows, for a subscription: its scope (`getQueryset`,
   * evaluated now, at subscribe time) as a row predicate, and the given filter and shape.
   *
   * A scope the in-memory matcher cannot decide exactly as the database would is refused:
   * one naming a property row snapshots do not carry (a hidden `deleted` flag, a
   * non-persisted or inverse property), or one otherwise too rich (relation paths, raw
   * SQL, `$like`). Events could neither show the subscriber rows it cannot list (failing
   * open) nor silently show nothing (a subscription that never hears of a change). The
   * client gets a 400 keyed `non_field_errors`; the log says why (and names the property).
   */
  async view (ctx: ActionContext, options: { serializer?: Serializer, filter?: RowPredicate, creates?: boolean } = {}): Promise<ModelView> {
    const condition = await this.queryset(ctx)
    const analyzed = analyzeCondition(this.meta as EntityMetadata, condition, emptyConditionsOf(this.orm, this.entity))
    let scope: RowPredicate
    if ('predicate' in analyzed) {
      scope = analyzed.predicate
    } else if (analyzed.reason === 'property') {
      ctx.log.warn({ entity: this.entityName, property: analyzed.property },
        'fastify-ws-rest: getQueryset names a property events do not carry (hidden, not persisted, or not a column); live updates of this route are refused')
      throw ValidationError.field('non_field_errors', SCOPE_NOT_LIVE)
    } else {
      ctx.log.warn({ entity: this.entityName },
        'fastify-ws-rest: getQueryset returns a condition events cannot be checked against in memory (only $eq $ne $gt $gte $lt $lte $in $nin $and $or $not on the entity\'s own columns can); live updates of this route are refused')
      throw ValidationError.field('non_field_errors', SCOPE_NOT_LIVE)
    }
    return {
      entity: this.entityName,
      serializer: options.serializer ?? this.serializerOf(ctx),
      scope,
      filter: options.filter ?? anyRow,
      creates: options.creates ?? true
    }
  }

  /** Whether an input schema exists for `kind` (mixins check at registration). */
  hasInput (kind: InputKind): boolean {
    return this.validators[kind] !== undefined
  }

  /**
   * Optimistic concurrency: when the entity has a version property and the message
   * carries `version` (the one the client read), a different current version is a 409
   * and nothing is written. A race between two writers that both pass this check is
   * caught by MikroORM at flush (`… where version = ?` updates no row → 409 as well).
   */
  checkVersion (entity: E, args: Record<string, unknown>): void {
    const property = this.meta.versionProperty as string | undefined
    if (property === undefined || args.version === undefined) return
    const current = (entity as Record<string, unknown>)[property]
    const given = args.version
    if (current instanceof Date) {
      if (typeof given !== 'string' || Number.isNaN(Date.parse(given))) throw ValidationError.field('version', 'Enter a valid date/time.')
      if (Date.parse(given) !== current.getTime()) throw new Conflict()
      return
    }
    const number = typeof given === 'string' && /^\d{1,15}$/.test(given) ? Number(given) : given
    if (typeof number !== 'number' || !Number.isSafeInteger(number)) throw ValidationError.field('version', 'A valid integer is required.')
    if (number !== Number(current)) throw new Conflict()
  }

  /**
   * DRF's object permissions: the message's permissions that define `hasObjectPermission`
   * decide on the object a detail action looked up; refused → 403. Free when none does.
   */
  async checkObject (ctx: ActionContext, entity: E): Promise<void> {
    const permissions = (ctx as { [kPermissions]?: readonly Permission[] })[kPermissions]
    if (permissions === undefined || !permissions.some((p) => p.hasObjectPermission !== undefined)) return
    await checkObjectPermissions(permissions, ctx, entity as Record<string, unknown>)
  }

  /** The connection's scope (`getQueryset`), or undefined for everything. */
  async queryset (ctx: ActionContext): Promise<FilterQuery<E> | undefined> {
    return this.options.getQueryset === undefined ? undefined : await this.options.getQueryset(ctx, ctx.args)
  }

  /**
   * `condition` narrowed by the connection's scope. A condition given as a function is
   * built only once the scope is known, so a scope that throws leaves no raw() fragment behind.
   */
  async where (ctx: ActionContext, condition?: FilterQuery<E> | (() => FilterQuery<E> | undefined)): Promise<FilterQuery<E>> {
    return this.scoped(await this.queryset(ctx), condition)
  }

  /**
   * `condition` narrowed by `scope`: a client's filter only ever narrows the scope, both must
   * hold. A condition is empty only without symbol keys too: MikroORM 7 keys a raw() fragment
   * by a symbol, and a scope made of one must never be taken for no scope.
   */
  private scoped (scope: FilterQuery<E> | undefined, condition?: FilterQuery<E> | (() => FilterQuery<E> | undefined)): FilterQuery<E> {
    const own = (typeof condition === 'function' ? (condition as () => FilterQuery<E> | undefined)() : condition) ?? {} as FilterQuery<E>
    if (scope === undefined || isEmptyCondition(scope)) return own
    if (isEmptyCondition(own)) return scope
    return { $and: [scope, own] } as FilterQuery<E>
  }

  /**
   * The object a detail action names, within the scope: 400 keyed by the lookup argument
   * if absent, 404 if not found.
   *
   * `forWrite` with a client `version` (optimistic concurrency) reads the row with
   * `SELECT … FOR UPDATE` where the database has row locks, so the version checked is the
   * one the write replaces: a concurrent writer waits for this transaction, and one that
   * committed first is seen (→ 409). Without it a delete, which MikroORM does not
   * version-check, could remove a row updated since the check.
   */
  async getObject (ctx: ActionContext, args: Record<string, unknown>, options: { forWrite?: boolean } = {}): Promise<E> {
    const value = this.lookupValue(args)
    const lock = options.forWrite === true && this.rowLocks && args.version !== undefined && this.meta.versionProperty !== undefined
    return await this.findObject(ctx, value, await this.queryset(ctx), lock)
  }

  /** {@link getObject} of a lookup value, within `scope` (the connection's, already evaluated). */
  private async findObject (ctx: ActionContext, value: unknown, scope: FilterQuery<E> | undefined, lock = false): Promise<E> {
    const where = this.scoped(scope, { [this.lookupField]: value } as FilterQuery<E>)
    const found = await ctx.em.findOne(this.entity, where as AnyWhere, lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {})
    if (found === null) throw new NotFound()
    await this.checkObject(ctx, found)
    return found
  }

  /**
   * The object `retrieve` answers with: as {@link getObject}, but coalesced with the
   * retrieves of other sockets arriving at the same time into one query — per scope, where
   * connections have scopes that can be shared (scope-key.ts).
   */
  async retrieve (ctx: ActionContext, args: Record<string, unknown>): Promise<E> {
    if (this.lookups === undefined) return await this.getObject(ctx, args)
    const value = this.lookupValue(args)
    const { scope, key } = await this.connectionScope(ctx)
    if (key === undefined) return await this.findObject(ctx, value, scope)
    const found = await this.lookups.submit({ value, scope, scopeKey: key })
    if (found === null) throw new NotFound()
    // Per socket, after the shared query: the batching stays, each answer is its own.
    await this.checkObject(ctx, found)
    return found
  }

  /**
   * One `WHERE lookup IN (…)` per scope for a batch of lookups, from `source`. Tried twice:
   * a failure of the shared query (a pooled connection found dead) must not fail every
   * request of the batch when a second connection would answer.
   */
  private async findMany<T> (jobs: LookupJob[], source: () => RowSource<T>): Promise<Array<Outcome<T | null>>> {
    const byScope = new Map<string, LookupJob[]>()
    for (const job of jobs) {
      const same = byScope.get(job.scopeKey)
      if (same === undefined) byScope.set(job.scopeKey, [job])
      else same.push(job)
    }
    const found = new Map<LookupJob, T>()
    for (const group of byScope.values()) {
      const distinct = [...new Map(group.map((job) => [String(job.value), job.value])).values()]
      const where = (): FilterQuery<E> => this.scoped(group[0].scope, { [this.lookupField]: { $in: distinct } } as FilterQuery<E>)
      const rows = await source().find(where()).catch(async () => await source().find(where()))
      const byValue = new Map(rows.map((row) => [String((row as Record<string, unknown>)[this.lookupField]), row]))
      for (const job of group) {
        const row = byValue.get(String(job.value))
        if (row !== undefined) found.set(job, row)
      }
    }
    return jobs.map((job) => ({ value: found.get(job) ?? null }))
  }

  /**
   * Entities in `em` (default: a fork of its own). `shared`: the answer serves many
   * sockets, so what the route's replies show of the rows is loaded once here rather than
   * once per socket when each renders them.
   */
  private entities (em: EntityManager = this.orm.em.fork(), shared = true): RowSource<E> {
    return {
      find: async (where, options = {}) => {
        const rows = await em.find(this.entity, where as AnyWhere, options as object)
        if (shared) await this.load(rows, this.serializer)
        return rows
      },
      count: async (where) => await em.count(this.entity, where as AnyWhere)
    }
  }

  /** Plain rows (plain-reads.ts), counted in a fork of their own. */
  private plainSource (): RowSource<Row> {
    const plain = this.plainRows as PlainRows
    return {
      find: async (where, options) => await plain.find(where, options),
      count: async (where) => await this.orm.em.fork().count(this.entity, where as AnyWhere)
    }
  }

  /**
   * The connection's scope, evaluated once for the request, and its key: reads of the same
   * key share queries; no key when the scope cannot be shared (the request reads alone).
   */
  private async connectionScope (ctx: ActionContext): Promise<{ scope?: FilterQuery<E>, key: string | undefined }> {
    if (this.options.getQueryset === undefined) return { key: '' }
    const scope = await this.queryset(ctx)
    return { scope, key: scopeKey(scope) }
  }

  /**
   * Each distinct list query of a batch once, all started together, each from a `source`
   * of its own; the jobs asking the same share the answer, and each is answered as soon as
   * its query is (a quick list never waits for a slow one of the same batch).
   */
  private runLists<T> (jobs: ListJob[], source: () => RowSource<T>): Array<Promise<{ results: T[], count: number }>> {
    const answers = new Map<string, Promise<{ results: T[], count: number }>>()
    const answer = async (job: ListJob): Promise<{ results: T[], count: number }> => {
      const orderBy = this.query.orderBy(job.query.order)
      const where = (): FilterQuery<E> => this.scoped(job.scope, job.query.where)
      return job.page === undefined
        ? await source().find(where(), { orderBy }).then((results) => ({ results, count: results.length }))
        : await this.findPage(source(), where, orderBy, job.page)
    }
    return jobs.map((job) => {
      const query = job.page === undefined ? job.query.key : `${job.query.key}|${job.page.limit}|${job.page.offset}`
      const key = `${job.scopeKey}\u0000${query}`
      let pending = answers.get(key)
      if (pending === undefined) answers.set(key, (pending = answer(job)))
      return pending
    })
  }

  /** The `filter` / `ordering` / `search` of a list message: 400 keyed by the argument when invalid. */
  listQuery (args: Record<string, unknown>): ListQuery {
    return this.query.parse(args)
  }

  /** Every object in scope that matches `query`, in its order. */
  async list (ctx: ActionContext, query: ListQuery): Promise<E[]> {
    const { scope, key } = await this.connectionScope(ctx)
    if (key !== undefined) return (await this.lists.submit({ query, scope, scopeKey: key })).results
    return await this.listAlone(ctx, query, scope)
  }

  /** A whole list read alone, in the request's EntityManager. */
  private async listAlone (ctx: ActionContext, query: ListQuery, scope: FilterQuery<E> | undefined): Promise<E[]> {
    return await ctx.em.find(this.entity, this.scoped(scope, query.where) as AnyWhere, {
      orderBy: this.query.orderBy(query.order)
    } as object)
  }

  /** One page of the objects in scope that match `query`, and how many match in all. */
  async page (ctx: ActionContext, query: ListQuery, page: Page): Promise<{ results: E[], count: number }> {
    const { scope, key } = await this.connectionScope(ctx)
    if (key !== undefined) return await this.lists.submit({ query, page, scope, scopeKey: key })
    return await this.pageAlone(ctx, query, page, scope)
  }

  /** A page read alone, in the request's EntityManager. */
  private async pageAlone (ctx: ActionContext, query: ListQuery, page: Page, scope: FilterQuery<E> | undefined): Promise<{ results: E[], count: number }> {
    return await this.findPage(this.entities(ctx.em, false), () => this.scoped(scope, query.where), this.query.orderBy(query.order), page)
  }

  /**
   * What `retrieve` replies: the object shaped by `serializer` — read as a plain row
   * where that shapes the same (plain-reads.ts) and no object permission needs the entity.
   */
  async retrieveData (ctx: ActionContext, args: Record<string, unknown>, serializer: Serializer): Promise<unknown> {
    if (this.plainLookups === undefined || !this.readsPlain(ctx, serializer)) return await this.render(ctx, await this.retrieve(ctx, args), serializer)
    const value = this.lookupValue(args)
    const { scope, key } = await this.connectionScope(ctx)
    if (key === undefined) return await this.render(ctx, await this.findObject(ctx, value, scope), serializer)
    const row = await this.plainLookups.submit({ value, scope, scopeKey: key })
    if (row === null) throw new NotFound()
    return serializer.shape(row, ctx)
  }

  /** What a whole `list` replies: as {@link retrieveData}, every object in scope that matches `query`. */
  async listData (ctx: ActionContext, query: ListQuery, serializer: Serializer): Promise<unknown> {
    if (this.plainLists === undefined || !this.readsPlain(ctx, serializer)) return await this.render(ctx, await this.list(ctx, query), serializer)
    const { scope, key } = await this.connectionScope(ctx)
    if (key === undefined) return await this.render(ctx, await this.listAlone(ctx, query, scope), serializer)
    const { results } = await this.plainLists.submit({ query, scope, scopeKey: key })
    return results.map((row) => serializer.shape(row, ctx))
  }

  /** What a paginated `list` replies: as {@link retrieveData}, one page and the count. */
  async pageData (ctx: ActionContext, query: ListQuery, page: Page, serializer: Serializer): Promise<{ results: unknown, count: number }> {
    if (this.plainLists === undefined || !this.readsPlain(ctx, serializer)) {
      const { results, count } = await this.page(ctx, query, page)
      return { results: await this.render(ctx, results, serializer), count }
    }
    const { scope, key } = await this.connectionScope(ctx)
    if (key === undefined) {
      const { results, count } = await this.pageAlone(ctx, query, page, scope)
      return { results: await this.render(ctx, results, serializer), count }
    }
    const { results, count } = await this.plainLists.submit({ query, page, scope, scopeKey: key })
    return { results: results.map((row) => serializer.shape(row, ctx)), count }
  }

  /** Whether this request's reply may be shaped from plain rows: `serializer` allows it, and no object permission wants entities. */
  private readsPlain (ctx: ActionContext, serializer: Serializer): boolean {
    if (!this.plainSerializers.has(serializer)) return false
    const permissions = (ctx as { [kPermissions]?: readonly Permission[] })[kPermissions]
    return permissions === undefined || !permissions.some((p) => p.hasObjectPermission !== undefined)
  }

  /**
   * A page and the total count, as two queries rather than MikroORM's `findAndCount`: that
   * one runs inside an AsyncLocalStorage, whose promise hooks then stay on for the whole
   * process and tax every promise of every request afterwards. `where` is called once per
   * query: a raw() fragment in it can be used only once.
   */
  private async findPage<T> (
    source: RowSource<T>,
    where: () => FilterQuery<E>,
    orderBy: OrderBy,
    page: Page
  ): Promise<{ results: T[], count: number }> {
    const results = await source.find(where(), { orderBy, limit: page.limit, offset: page.offset })
    // A short page that is not empty ends the rows: the count follows without a query.
    const count = results.length > 0 && results.length < page.limit ? page.offset + results.length : await source.count(where())
    return { results, count }
  }

  /**
   * Validate a message's `data` for `kind`: 400 keyed `data` if absent, DRF-shaped field
   * errors if invalid. Relations given by related primary key are typed before the schema
   * and looked up after it, on the message's EntityManager (relation-input.ts). `current` is
   * the object being updated, if any.
   */
  async validate (kind: InputKind, data: unknown, ctx: ActionContext, current?: E): Promise<any> {
    const validator = this.validators[kind]
    if (validator === undefined) throw new InvalidOption(`schema.${kind === 'create' ? 'create' : 'update'}`, `is required by the ${kind} action`)
    if (data === undefined) throw ValidationError.field('data', 'This field is required.')
    const relations = this.relationInputs[kind]
    try {
      return relations === undefined ? await validator(data) : await relations.validate(ctx.em, data, validator)
    } catch (err) {
      if (err instanceof ValidationError) await this.addUniqueErrors(err, data, ctx, current)
      throw err
    }
  }

  /**
   * On a request that already fails, also report unique fields whose value is taken, so
   * the client sees every failing field at once (DRF's UniqueValidator). A valid request
   * skips this query: the database's unique constraint catches it at flush instead.
   */
  private async addUniqueErrors (err: ValidationError, data: unknown, ctx: ActionContext, current?: E): Promise<void> {
    if (typeof data !== 'object' || data === null) return
    for (const prop of this.uniqueProps) {
      const value = (data as Record<string, unknown>)[prop]
      if (err.fields[prop] !== undefined || (typeof value !== 'string' && typeof value !== 'number')) continue
      const where: Record<string, unknown> = { [prop]: typeof value === 'string' ? value.trim() : value }
      if (current !== undefined) where[this.primaryKey] = { $ne: (current as Record<string, unknown>)[this.primaryKey] }
      if (await ctx.em.count(this.entity, where as AnyWhere) > 0) {
        err.fields[prop] = [uniqueMessage(this.meta as EntityMetadata, prop)]
      }
    }
  }

  /**
   * A write with a `version` locks and checks its own row, in its own transaction: never
   * grouped. (MikroORM's delete does not compare versions; and its batched UPDATE of
   * versioned rows, when it changes a unique property too, increments the version twice.)
   */
  private versioned (args: Record<string, unknown>): boolean {
    return args.version !== undefined && this.meta.versionProperty !== undefined
  }

  /**
   * `create`: validated `data` prepared (`prepareCreate`, outside any transaction) and
   * written — with other sockets' creates in one flush where it can be.
   */
  async createOne (ctx: ActionContext, data: unknown): Promise<E> {
    const prepared = this.options.prepareCreate === undefined ? data : await this.options.prepareCreate(ctx, data as never)
    if (this.grouped !== undefined && this.groupable.create) return await this.grouped.create(ctx, prepared)
    return await this.createAlone(ctx, prepared)
  }

  /** `update` / `patch`: the object looked up, checked, validated, prepared and changed — grouped where it can be. */
  async changeOne (ctx: ActionContext, kind: 'update' | 'patch', args: Record<string, unknown>): Promise<E> {
    if (this.grouped !== undefined && this.groupable.change && !this.versioned(args)) {
      this.lookupValue(args) // a missing or invalid lookup argument fails before joining a batch
      return await this.grouped.change(ctx, kind, args)
    }
    return await this.changeAlone(ctx, kind, args)
  }

  /**
   * What an update or patch writes to `entity`: the message's `data` validated, then
   * prepared (`prepareUpdate`). Object permissions and `version` were checked on it before.
   */
  async changeData (ctx: ActionContext, kind: 'update' | 'patch', entity: E, data: unknown): Promise<unknown> {
    const valid = await this.validate(kind, data, ctx, entity)
    return this.options.prepareUpdate === undefined ? valid : await this.options.prepareUpdate(ctx, entity, valid)
  }

  /**
   * The row a request of a grouped write names, within its connection's scope, read
   * through the batch's EntityManager; null when there is none (404). Only for routes with
   * `getQueryset` (the others read a batch's rows in one query).
   */
  async findInScope (em: EntityManager, ctx: ActionContext, args: Record<string, unknown>): Promise<E | null> {
    const where = await this.where(ctx, { [this.lookupField]: this.lookupValue(args) } as FilterQuery<E>)
    return await em.findOne(this.entity, where as AnyWhere)
  }

  /** Whether each connection has a scope of its own (`getQueryset`). */
  get scopedPerConnection (): boolean {
    return this.options.getQueryset !== undefined
  }

  /** `delete`: the object looked up, checked and removed — grouped where it can be. */
  async removeOne (ctx: ActionContext, args: Record<string, unknown>): Promise<void> {
    if (this.grouped !== undefined && this.groupable.remove && !this.versioned(args)) {
      this.lookupValue(args)
      await this.grouped.remove(ctx, args)
      return
    }
    await this.removeAlone(ctx, args)
  }

  /** A create alone, in a transaction of its own. */
  async createAlone (ctx: ActionContext, data: unknown): Promise<E> {
    return await ctx.transactional(async () => await this.create(ctx, data))
  }

  /**
   * An update or patch alone, in a transaction of its own (a stale `version` → 409).
   * `prepared`: the data a grouped attempt of this request already validated and prepared
   * (its batch failed as a whole), so `prepareUpdate` runs once per request.
   */
  async changeAlone (ctx: ActionContext, kind: 'update' | 'patch', args: Record<string, unknown>, prepared?: { data: unknown }): Promise<E> {
    return await ctx.transactional(async () => {
      const entity = await this.getObject(ctx, args, { forWrite: true })
      this.checkVersion(entity, args)
      const data = prepared !== undefined ? prepared.data : await this.changeData(ctx, kind, entity, args.data)
      await this.update(ctx, entity, data)
      return entity
    })
  }

  /** A delete alone, in a transaction of its own (a stale `version` → 409). */
  async removeAlone (ctx: ActionContext, args: Record<string, unknown>): Promise<void> {
    await ctx.transactional(async () => {
      const entity = await this.getObject(ctx, args, { forWrite: true })
      this.checkVersion(entity, args)
      await this.delete(ctx, entity)
    })
  }

  /** Create and flush (or the route's performCreate). */
  async create (ctx: ActionContext, data: any): Promise<E> {
    if (this.options.performCreate !== undefined) {
      const entity = await this.options.performCreate(ctx, data)
      await ctx.em.flush()
      return entity
    }
    const entity = ctx.em.create(this.entity, data)
    await ctx.em.flush()
    return entity
  }

  /** Apply and flush (or the route's performUpdate). */
  async update (ctx: ActionContext, entity: E, data: any): Promise<void> {
    await this.beforeChange(ctx.em, [entity], data)
    if (this.options.performUpdate !== undefined) await this.options.performUpdate(ctx, entity, data)
    else ctx.em.assign(entity, data)
    await ctx.em.flush()
  }

  /**
   * Load the to-many collections `data` replaces, before it does: the change then knows
   * which related rows the entity had, so a list subscription filtered by them sees the
   * row leave (an unloaded collection is replaced without MikroORM knowing its old items).
   */
  async beforeChange (em: EntityManager, entities: E[], data: unknown): Promise<void> {
    if (typeof data !== 'object' || data === null || entities.length === 0) return
    const replaced = this.removal.collections.filter((name) => (data as Record<string, unknown>)[name] !== undefined)
    if (replaced.length > 0) await em.populate(entities, replaced as never)
  }

  /** Remove and flush (or the route's performDelete). */
  async delete (ctx: ActionContext, entity: E): Promise<void> {
    await this.beforeRemove(ctx.em, [entity])
    if (this.options.performDelete !== undefined) await this.options.performDelete(ctx, entity)
    else ctx.em.remove(entity)
    await ctx.em.flush()
  }

  /**
   * Before rows are removed: load what the ORM cascades the removal to (so every removed
   * row is a change of its own, published as a delete), and take the rows out of the
   * many-to-many collections of their owners (so each owner publishes an update instead
   * of losing the link silently in the database).
   */
  async beforeRemove (em: EntityManager, entities: E[]): Promise<void> {
    await this.removal.load(em, entities)
    this.removal.detach(entities)
  }

  /** {@link beforeRemove} in two steps, for a batch: load for every row at once, then detach each row actually removed. */
  async loadForRemoval (em: EntityManager, entities: E[]): Promise<void> {
    await this.removal.load(em, entities)
  }

  detachForRemoval (entity: E): void {
    this.removal.detach([entity])
  }

  /** Shape an entity, or a list of them, by `serializer` (default: the route's response schema); relations must be loaded. */
  serialize (value: E | E[] | null, serializer: Serializer = this.serializer, ctx?: ActionContext): unknown {
    if (value === null) return null
    return Array.isArray(value) ? value.map((entity) => serializer.shape(entity, ctx)) : serializer.shape(value, ctx)
  }

  /**
   * What a reply sends for `value`: the relations `serializer` needs loaded (one query per
   * relation for the whole list, never one per row), then shaped; a promise only when something is loaded.
   */
  render (ctx: ActionContext, value: E | E[] | null, serializer: Serializer = this.serializer): unknown {
    if (value === null) return null
    // A shape of the row's own columns has nothing to load: no promise on the reply's path.
    if (serializer.populate.length === 0) return this.serialize(value, serializer, ctx)
    return this.load(Array.isArray(value) ? value : [value], serializer).then(() => this.serialize(value, serializer, ctx))
  }

  /** Load what `serializer` shows of `entities`, each batch through the EntityManager that loaded it. */
  async load (entities: E[], serializer: Serializer): Promise<void> {
    if (serializer.populate.length === 0 || entities.length === 0) return
    const byManager = new Map<EntityManager | undefined, E[]>()
    for (const entity of entities) {
      if (isLoaded(entity, serializer.populate)) continue
      const em = (entity as { __helper?: { __em?: EntityManager } }).__helper?.__em
      const list = byManager.get(em)
      if (list === undefined) byManager.set(em, [entity])
      else list.push(entity)
    }
    for (const [em, list] of byManager) await (em ?? this.orm.em.fork()).populate(list, serializer.populate as never)
  }

  /** The route's serializer for this request: `responseFor`'s variant, or the route's own. An unknown name is the app's bug (500). */
  serializerOf (ctx: ActionContext): Serializer {
    const pick = this.options.responseFor
    if (pick === undefined) return this.serializer
    const name = pick(ctx)
    if (name === undefined) return this.serializer
    const schema = Object.hasOwn(this.options.schema.responses ?? {}, name) ? this.options.schema.responses?.[name] : undefined
    if (schema === undefined) throw new InvalidOption('responseFor', `names "${name}", which schema.responses does not declare`)
    return this.serializerFor(schema)
  }

  /** Every response schema of the route, its own and its variants: what events of it may be rendered in. */
  get responseSerializers (): Serializer[] {
    return [this.serializer, ...Object.values(this.options.schema.responses ?? {}).map((schema) => this.serializerFor(schema))]
  }

  /** Load what the route's own serializer shows of `entities` (group commit, for a whole batch's replies at once). */
  async loadForReplies (entities: E[]): Promise<void> {
    await this.load(entities, this.serializer)
  }

  /** The serializer of a mixin's own response schema (the route's `fields` apply where it declares them), compiled once. */
  serializerFor (schema: TSchema | undefined): Serializer {
    if (schema === undefined) return this.serializer
    let serializer = this.ownSerializers.get(schema)
    if (serializer === undefined) {
      const declared = (schema as { properties?: Record<string, unknown> }).properties ?? {}
      const fields = Object.fromEntries(Object.entries(this.options.fields ?? {}).filter(([name]) => declared[name] !== undefined))
      this.ownSerializers.set(schema, (serializer = this.serializers.compile(this.meta as EntityMetadata, schema, fields)))
      if (this.plainRows !== undefined && Object.keys(fields).length === 0 && readsPlain(this.orm, this.meta as EntityMetadata, schema)) this.plainSerializers.add(serializer)
    }
    return serializer
  }
}
