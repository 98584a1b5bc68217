/**
 * Filtering, ordering and search of lists (DRF's filter backends, which DCRF lacks).
 *
 * A route declares which fields may be filtered, ordered and searched; the `filter`,
 * `ordering` and `search` arguments are checked against those declarations with TypeBox
 * checkers built from the entity's metadata, once at registration. Anything undeclared,
 * an unknown operator or a wrongly typed value is a 400 keyed `filter` / `ordering` /
 * `search`, and never reaches the database. The result is a MikroORM FilterQuery and
 * orderBy, used by plain, paginated, streamed and cursor lists alike, and an in-memory
 * predicate with the same meaning, which filtered-list subscriptions test each changed
 * row with.
 *
 * Besides the entity's own scalar properties, a route may declare relations:
 *
 * - a to-one relation (many-to-one, or the owning side of a one-to-one), e.g. `author`:
 *   filtered by the related primary key, with the comparison operators;
 * - a to-many relation (one-to-many, many-to-many), e.g. `tags`: filtered by membership
 *   ("has a related row whose key is …"), with a scalar, `$eq` or `$in` only;
 * - a path through one to-one relation to a scalar of the related entity, e.g.
 *   `author.name`: filtered, ordered and searched like an own scalar (MikroORM joins).
 *
 * The in-memory predicate reads a row snapshot by the same names (see `Row` keys in
 * `relationPaths`): a to-one relation under its name holds the related key, a to-many
 * relation an array of related keys, a path the related scalar (null when the relation is
 * null). A key missing from the row never matches.
 */
import { raw, Reference, ReferenceKind, wrap, type EntityMetadata, type EntityProperty, type FilterQuery, type Platform } from '@mikro-orm/core'
import { Type, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { dialectOf } from './dialect.js'
import { InvalidOption, ValidationError } from './errors.js'
import { NULL_CHARACTERS } from './validation.js'
import type { Row } from './observer/changes.js'
import { anyRow, compare, includesAny, type RowPredicate } from './observer/matcher.js'

/** What a route lets clients filter, order and search by. */
export interface QueryOptions {
  /**
   * Fields `filter` may name: scalar properties, to-one relations (by the related key),
   * to-many relations (by membership: a key or `$in` keys) and `relation.field` paths
   * through one to-one relation.
   */
  filterFields?: readonly string[]
  /** Fields `ordering` may name (`"username"`, `"-id"`, `"author.name"`): scalars and `relation.field` paths. */
  orderingFields?: readonly string[]
  /** Fields `search` looks in (case-insensitive substring, any of them): string scalars and `relation.field` paths to one. */
  searchFields?: readonly string[]
  /** The default ordering, as a client would send it. Default: the primary key, ascending. */
  ordering?: string | string[]
}

/** A MikroORM orderBy: `{ rank: 'asc' }` steps, or `{ author: { name: 'desc' } }` for a path. */
export type OrderBy = Array<Record<string, unknown>>

/** One ordering step: field and direction. */
export interface OrderStep {
  field: string
  desc: boolean
}

/** A parsed list query. */
export interface ListQuery {
  /**
   * A fresh MikroORM condition for one query, or undefined for no filter. A function, not
   * a value: MikroORM forgets a raw() fragment (used by `$contains` / `search`) once a
   * query has used it, so each query of a streamed or cursor list needs its own, and a
   * request refused by validation must not have registered any.
   */
  where: () => FilterQuery<any> | undefined
  order: OrderStep[]
  /** The same filter and search, decided on one row in memory (for subscriptions). */
  matches: RowPredicate
  /** Equal for queries that mean the same: identical lists of several sockets share one query. */
  key: string
}

const COMPARISON_OPERATORS = ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte'] as const
const LIST_OPERATORS = ['$in', '$nin'] as const
const OPERATORS = new Set<string>([...COMPARISON_OPERATORS, ...LIST_OPERATORS, '$contains'])
/** What "has a related row" can mean on a to-many field: that key, or one of those keys. */
const MEMBERSHIP_OPERATORS = new Set<string>(['$eq', '$in'])
/** Longest `$in`/`$nin` list accepted, so one frame cannot build an unbounded SQL statement. */
const MAX_LIST = 1000
/**
 * Longest string filter value or search needle for a field whose column declares no length
 * (text, or not a string column): a subscription tests its needle against every changed
 * row, so an unbounded one costs on every event.
 */
export const MAX_TEXT_VALUE = 1000
/** Longest accepted even where a column declares more: a needle is held for a subscription's lifetime. */
const MAX_DECLARED_VALUE = 10_000

/**
 * Where a declared field's value lives: an own column (`scalar`), the key a to-one
 * relation holds (`to-one`), the keys of a to-many relation's rows (`to-many`), or a
 * column of the row a to-one relation points to (`path`, `author.name`).
 */
type FieldKind = 'scalar' | 'to-one' | 'to-many' | 'path'

interface FieldInfo {
  /** As declared and as clients name it; also the field's key in a row snapshot. */
  name: string
  kind: FieldKind
  /** The to-one relation a path goes through (`author` of `author.name`). */
  via?: string
  /** The property a condition names (inside `via` for a path; the related key for a to-many field). */
  prop: string
  /** The column of the compared value (for `$contains` / search). */
  column: string
  check: TypeCheck<TSchema>
  typeName: string
  isString: boolean
  isDate: boolean
  /**
   * A date column that keeps fractions of a second finer than a JS Date's milliseconds
   * (PostgreSQL's default `timestamptz` keeps microseconds): a cursor position read into a
   * Date would lose them, so it cannot be a keyset key.
   */
  finerThanDate: boolean
  nullable: boolean
  /** Longest string value accepted for it: a longer one could never be stored in the column, so never match. */
  maxChars: number
}

/** A declared field resolved against the metadata, before its checker is compiled. */
interface Resolved {
  kind: FieldKind
  via?: string
  /** The property holding the compared values (the related primary key for relations). */
  leaf: EntityProperty
  /** The property a condition names at its level (see `FieldInfo.prop`). */
  prop: string
  nullable: boolean
}

/** A relation whose row holds the key: many-to-one, or the owning side of a one-to-one. */
function isToOne (prop: EntityProperty): boolean {
  return prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner)
}

function isToMany (prop: EntityProperty): boolean {
  return prop.kind === ReferenceKind.ONE_TO_MANY || prop.kind === ReferenceKind.MANY_TO_MANY
}

/** An own property of `meta` by name (never one inherited from Object.prototype, as `constructor`). */
function propertyOf (meta: EntityMetadata, name: string): EntityProperty | undefined {
  return Object.hasOwn(meta.properties, name) ? (meta.properties as Record<string, EntityProperty>)[name] : undefined
}

/** The single primary key property of a relation's target; composite keys cannot be filtered by one value. */
function relatedKey (option: string, name: string, relation: EntityProperty): EntityProperty {
  const target = relation.targetMeta as EntityMetadata
  if (target.primaryKeys.length !== 1) {
    throw new InvalidOption(option, `"${name}": ${target.className} has a composite primary key`)
  }
  return propertyOf(target, target.primaryKeys[0])!
}

/**
 * Resolve `relation.field`: one to-one relation, then a scalar of its target. Deeper
 * paths, paths through a to-many relation and paths to a relation are refused: each
 * would need a join (or a subquery) whose value a row snapshot cannot carry as one scalar.
 */
function resolvePath (meta: EntityMetadata, option: string, name: string): Resolved {
  const parts = name.split('.')
  if (parts.length !== 2) {
    throw new InvalidOption(option, `"${name}": a path may go through one relation only ("relation.field")`)
  }
  const [via, field] = parts
  const relation = propertyOf(meta, via)
  if (relation === undefined) throw new InvalidOption(option, `"${name}": "${via}" is not a property of ${meta.className}`)
  if (!isToOne(relation)) {
    throw new InvalidOption(option, `"${name}": "${via}" is not a to-one relation (many-to-one, or the owning side of a one-to-one); a path can only go through one`)
  }
  const target = relation.targetMeta as EntityMetadata
  const leaf = propertyOf(target, field)
  if (leaf === undefined) throw new InvalidOption(option, `"${name}": "${field}" is not a property of ${target.className}`)
  if (leaf.kind !== ReferenceKind.SCALAR) throw new InvalidOption(option, `"${name}": "${field}" of ${target.className} is not a scalar property`)
  // A null relation makes the joined value null too (MikroORM left-joins a nullable relation).
  return { kind: 'path', via, leaf, prop: field, nullable: relation.nullable === true || leaf.nullable === true }
}

/** Resolve a declared field name; `relations`: whether a relation itself may be named (filters only). */
function resolveField (meta: EntityMetadata, option: string, name: unknown, relations: boolean): Resolved {
  if (typeof name !== 'string') throw new InvalidOption(option, `"${String(name)}" is not a property of ${meta.className}`)
  if (name.includes('.')) return resolvePath(meta, option, name)
  const prop = propertyOf(meta, name)
  if (prop === undefined) throw new InvalidOption(option, `"${name}" is not a property of ${meta.className}`)
  if (prop.kind === ReferenceKind.SCALAR) return { kind: 'scalar', leaf: prop, prop: name, nullable: prop.nullable === true }
  if (!relations) {
    throw new InvalidOption(option, `"${name}" is a relation; name a field of it instead ("${name}.field", through a to-one relation)`)
  }
  if (isToOne(prop)) return { kind: 'to-one', leaf: relatedKey(option, name, prop), prop: name, nullable: prop.nullable === true }
  if (isToMany(prop)) {
    const key = relatedKey(option, name, prop)
    return { kind: 'to-many', leaf: key, prop: key.name, nullable: false }
  }
  // An embedded property, or the inverse side of a one-to-one (its row holds no key to compare).
  throw new InvalidOption(option, `"${name}" cannot be filtered by: only scalar properties, to-one relations (many-to-one, the owning side of a one-to-one) and to-many relations can`)
}

/** A TypeBox schema for one property's values, from its MikroORM metadata. */
function valueSchema (runtimeType: string, columnType: string): { schema: TSchema, typeName: string } {
  switch (runtimeType) {
    case 'number':
      return /int|serial/i.test(columnType)
        ? { schema: Type.Integer(), typeName: 'integer' }
        : { schema: Type.Number(), typeName: 'number' }
    case 'boolean': return { schema: Type.Boolean(), typeName: 'boolean' }
    case 'Date': return { schema: Type.String({ format: 'date-time' }), typeName: 'date-time string' }
    case 'bigint': return { schema: Type.Union([Type.Integer(), Type.String({ pattern: '^-?\\d+$' })]), typeName: 'integer' }
    default: return { schema: Type.String(), typeName: 'string' }
  }
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The compiled query rules of one route. */
export class QueryRules {
  private readonly filterable = new Map<string, FieldInfo>()
  /** Orderable fields with their value checkers (cursor positions are checked against them). */
  private readonly orderable = new Map<string, FieldInfo>()
  private readonly searchable: FieldInfo[] = []
  /** Longest search needle: the longest searchable column's; a longer one could match no row. */
  private get maxNeedle (): number { return Math.max(...this.searchable.map((f) => f.maxChars)) }
  /** The route's default ordering, with the primary key tie-break. */
  readonly defaultOrder: OrderStep[]
  /**
   * What a row snapshot must carry beyond the entity's own columns and to-one keys for
   * `ListQuery.matches` to decide it: every to-many relation (an array of related keys
   * under its name) and every `relation.field` path (the related scalar under the dotted
   * name, null when the relation is null) named by `filterFields` or `searchFields`.
   * Orderings need none: a subscription never orders rows in memory.
   */
  readonly relationPaths: string[]
  private readonly position: string
  /** The database's lower(): `$contains` and search decide in memory exactly as in SQL. */
  private readonly lower: (text: string) => string
  private readonly dateFields = new Set<string>()

  constructor (
    private readonly meta: EntityMetadata,
    private readonly platform: Platform,
    options: QueryOptions
  ) {
    for (const name of options.filterFields ?? []) this.filterable.set(name, this.field('filterFields', name, true))
    for (const name of options.orderingFields ?? []) this.orderable.set(name, this.field('orderingFields', name, false))
    for (const name of options.searchFields ?? []) {
      const info = this.field('searchFields', name, false)
      if (!info.isString) throw new InvalidOption('searchFields', `"${name}" is not a string property`)
      this.searchable.push(info)
    }
    this.relationPaths = [...new Set([...this.filterable.values(), ...this.searchable]
      .filter((f) => f.kind === 'to-many' || f.kind === 'path')
      .map((f) => f.name))]
    this.position = dialectOf(platform).position
    this.lower = dialectOf(platform).lower
    const primaryKey = meta.primaryKeys[0]
    this.orderable.set(primaryKey, this.field('ordering', primaryKey, false))
    const defaults = this.parseOrdering(options.ordering ?? primaryKey)
    if (typeof defaults === 'string') throw new InvalidOption('ordering', defaults)
    this.defaultOrder = defaults
  }

  /** A declared field with its value checker, compiled once; InvalidOption naming `option` if it cannot be used. */
  private field (option: string, name: string, relations: boolean): FieldInfo {
    const { kind, via, leaf, prop, nullable } = resolveField(this.meta, option, name, relations)
    const { schema, typeName } = valueSchema(leaf.runtimeType, String(leaf.columnTypes?.[0] ?? leaf.type ?? ''))
    const own = kind === 'scalar' || kind === 'path'
    const isDate = leaf.runtimeType === 'Date'
    if (isDate) this.dateFields.add(name)
    return {
      name,
      kind,
      via,
      prop,
      column: leaf.fieldNames[0],
      check: TypeCompiler.Compile(schema),
      typeName,
      // A relation's key is compared by value, never searched as text.
      isString: own && leaf.runtimeType === 'string',
      isDate,
      finerThanDate: isDate && this.finerThanMilliseconds(leaf),
      nullable,
      maxChars: declaredLength(leaf)
    }
  }

  /**
   * Whether the date column of `leaf` keeps more than 3 fractional digits: its declared
   * precision (`length`, or the `(n)` of its column type), else the platform's default for a
   * datetime (PostgreSQL: 6). SQLite stores a Date as it is, to the millisecond.
   */
  private finerThanMilliseconds (leaf: EntityProperty): boolean {
    if (/sqlite/i.test(this.platform.constructor.name)) return false
    const declared = /\((\d+)\)/.exec(String(leaf.columnTypes?.[0] ?? ''))?.[1]
    const digits = leaf.length ?? (declared === undefined ? this.platform.getDefaultDateTimeLength() : Number(declared))
    return digits > 3
  }

  /** The entity's primary key, the final tie-break of every ordering. */
  get primaryKey (): string { return this.meta.primaryKeys[0] }

  /** Parse `filter`, `ordering` and `search` from a message's arguments; one 400 with every problem. */
  parse (args: Record<string, unknown>): ListQuery {
    const errors: Record<string, string[]> = {}
    const conditions: Condition[] = []

    if (args.filter !== undefined) {
      const messages: string[] = []
      this.parseFilter(args.filter, conditions, messages)
      if (messages.length > 0) errors.filter = messages
    }
    if (args.search !== undefined) {
      if (typeof args.search !== 'string') errors.search = ['Expected a string.']
      else if (args.search.includes('\u0000')) errors.search = [NULL_CHARACTERS]
      else if (this.searchable.length === 0) errors.search = ['Search is not available on this route.']
      else if (args.search.length > this.maxNeedle) errors.search = [tooLong(this.maxNeedle)]
      else if (args.search.trim() !== '') {
        const needle = args.search
        // Lower-cased once here, not for every field of every changed row.
        const lowered = this.lower(needle)
        conditions.push({
          build: () => ({ $or: this.searchable.map((f) => this.contains(f, needle)) }),
          test: (row) => this.searchable.some((f) => includesLowered(row[f.name], lowered, this.lower))
        })
      }
    }
    let order = this.defaultOrder
    if (args.ordering !== undefined) {
      const parsed = this.parseOrdering(args.ordering)
      if (typeof parsed === 'string') errors.ordering = [parsed]
      else order = parsed
    }
    if (Object.keys(errors).length > 0) throw new ValidationError(errors)
    const where = (): FilterQuery<any> | undefined =>
      conditions.length === 0 ? undefined : conditions.length === 1 ? conditions[0].build() : { $and: conditions.map((c) => c.build()) }
    const matches: RowPredicate = conditions.length === 0 ? anyRow : (row) => conditions.every((c) => c.test(row))
    const key = JSON.stringify([args.filter ?? null, typeof args.search === 'string' ? args.search : null, order])
    return { where, order, matches, key }
  }

  /** `"username"`, `"-id"` or an array of such → steps ending with the primary key; or an error message. */
  parseOrdering (ordering: unknown): OrderStep[] | string {
    const items = Array.isArray(ordering) ? ordering : [ordering]
    if (items.length === 0 || items.length > 8) return 'Expected a field name or a list of 1 to 8 field names.'
    const steps: OrderStep[] = []
    for (const item of items) {
      if (typeof item !== 'string') return 'Expected a field name or a list of field names.'
      const desc = item.startsWith('-')
      const name = desc ? item.slice(1) : item
      if (!this.orderable.has(name)) return `Unknown ordering field "${name}".`
      if (!steps.some((s) => s.field === name)) steps.push({ field: name, desc })
    }
    // Ties broken by primary key, so every ordering is total (pages never overlap).
    if (!steps.some((s) => s.field === this.primaryKey)) steps.push({ field: this.primaryKey, desc: false })
    return steps
  }

  /**
   * Check a cursor's ordering and position: every field orderable, the primary key last,
   * each value of its field's type; else 400 keyed `cursor`. The cursor is signed, but a
   * cursor of another route sharing the secret must still not reach the database as a
   * wrongly typed value.
   */
  checkCursor (steps: OrderStep[], values: unknown[]): OrderStep[] {
    const fits = steps.every((s, i) => {
      const info = this.orderable.get(s.field)
      return info !== undefined && (values[i] === null ? info.nullable : info.check.Check(values[i]))
    })
    if (!fits || steps[steps.length - 1]?.field !== this.primaryKey) throw ValidationError.field('cursor', 'Invalid cursor.')
    return steps
  }

  /**
   * Keyset pages compare with `<` / `>`, which never match NULL: ordering a cursor list by a
   * nullable field (or a path through a nullable relation) would silently skip rows, so it
   * is refused (400 keyed `ordering`). So is a date column finer than a millisecond: its
   * position, read into a JS Date, would fall before the row it was read from, and going
   * forward would bring the same rows back forever.
   */
  checkKeysetOrder (steps: OrderStep[]): void {
    const nullable = steps.find((s) => this.orderable.get(s.field)?.nullable === true)
    if (nullable !== undefined) {
      throw ValidationError.field('ordering', `Cannot page by cursor on "${nullable.field}": it may be null.`)
    }
    const fine = steps.find((s) => this.orderable.get(s.field)?.finerThanDate === true)
    if (fine !== undefined) {
      throw ValidationError.field('ordering',
        `Cannot page by cursor on "${fine.field}": the database keeps it finer than a millisecond; declare it with millisecond precision (length 3).`)
    }
  }

  /** A value of `field` as the database wants it (date fields: a Date from its ISO string). */
  fieldValue (field: string, value: unknown): unknown {
    return this.dateFields.has(field) && typeof value === 'string' ? new Date(value) : value
  }

  /** MikroORM's orderBy for `steps`; a path orders by the joined column, nested as `{ author: { name: 'asc' } }`. */
  orderBy (steps: OrderStep[]): OrderBy {
    return steps.map((s) => this.onField(s.field, s.desc ? 'desc' : 'asc'))
  }

  /**
   * `condition` on orderable `field`, as a MikroORM where (or orderBy) part: `{ rank: c }`,
   * or `{ author: { name: c } }` for a path. What keyset conditions are made of.
   */
  onField (field: string, condition: unknown): Record<string, unknown> {
    const info = this.orderable.get(field)
    return info === undefined ? { [field]: condition } : this.place(info, condition)
  }

  /**
   * The relations to populate when `steps` must be read back from the loaded entities
   * (a cursor's position): a path's value is on the related entity, which a join for
   * ordering alone does not load.
   */
  populate (steps: OrderStep[]): string[] {
    return [...new Set(steps.map((s) => this.orderable.get(s.field)?.via).filter((v) => v !== undefined))]
  }

  /** The value of orderable `field` on a loaded entity; a path's relation must have been populated (see `populate`). */
  valueOf (entity: object, field: string): unknown {
    const info = this.orderable.get(field)
    const own = entity as Record<string, unknown>
    if (info?.via === undefined) return own[field]
    const related = own[info.via] === null || own[info.via] === undefined ? null : Reference.unwrapReference(own[info.via] as object)
    if (related === null) return null
    // An unloaded reference would read as undefined, silently turning a position into null.
    if (!wrap(related).isInitialized()) throw new Error(`"${info.via}" was not populated, so "${field}" cannot be read`)
    return (related as Record<string, unknown>)[info.prop]
  }

  private parseFilter (filter: unknown, out: Condition[], messages: string[]): void {
    if (!isPlainObject(filter)) {
      messages.push('Expected an object of field filters.')
      return
    }
    for (const [name, condition] of Object.entries(filter)) {
      const info = this.filterable.get(name)
      if (info === undefined) {
        messages.push(`Unknown field "${name}".`)
        continue
      }
      if (!isPlainObject(condition)) {
        const value = this.value(info, condition, messages)
        if (value !== INVALID) out.push(info.kind === 'to-many' ? this.membership(info, '$eq', value) : this.comparison(info, value, [['$eq', value]]))
        continue
      }
      const operators = Object.entries(condition)
      if (operators.length === 0) messages.push(`Expected at least one operator for "${name}".`)
      const ops: Record<string, unknown> = {}
      for (const [op, operand] of operators) {
        if (!OPERATORS.has(op)) {
          messages.push(`Unknown operator "${op}" for field "${name}".`)
        } else if (info.kind === 'to-many' && !MEMBERSHIP_OPERATORS.has(op)) {
          messages.push(`Operator "${op}" is not available for "${name}".`)
        } else if (op === '$contains') {
          if (!info.isString) messages.push(`Operator "$contains" needs a string field; "${name}" is not one.`)
          else if (typeof operand !== 'string') messages.push(`Invalid value for "${name}": $contains expects a string.`)
          else if (operand.includes('\u0000')) messages.push(`Invalid value for "${name}": ${NULL_CHARACTERS}`)
          else if (operand.length > info.maxChars) messages.push(`Invalid value for "${name}": ${tooLong(info.maxChars)}`)
          else {
            const lowered = this.lower(operand)
            out.push({ build: () => this.contains(info, operand), test: (row) => includesLowered(row[name], lowered, this.lower) })
          }
        } else if (op === '$in' || op === '$nin') {
          if (!Array.isArray(operand) || operand.length > MAX_LIST) {
            messages.push(`Invalid value for "${name}": ${op} expects a list of at most ${MAX_LIST} values.`)
            continue
          }
          const values = operand.map((v) => this.value(info, v, messages))
          if (!values.includes(INVALID)) ops[op] = values
        } else {
          const value = this.value(info, operand, messages)
          if (value !== INVALID) ops[op] = value
        }
      }
      if (Object.keys(ops).length === 0) continue
      if (info.kind === 'to-many') {
        // Each operator is a membership of its own: {$eq: 1, $in: [2, 3]} has 1 and has 2 or 3.
        for (const [op, operand] of Object.entries(ops)) out.push(this.membership(info, op as '$eq' | '$in', operand))
      } else {
        out.push(this.comparison(info, ops, Object.entries(ops)))
      }
    }
  }

  /** `info`'s value satisfies `ops` (every one): `sql` is the MikroORM condition on it, a value or an operator object. */
  private comparison (info: FieldInfo, sql: unknown, ops: Array<[string, unknown]>): Condition {
    return {
      build: () => this.place(info, sql),
      test: (row) => ops.every(([op, operand]) => compare(op, row[info.name], operand, info.isDate) === true)
    }
  }

  /**
   * A to-many field has a related row whose key is `operand` (`$eq`) or one of `operand`
   * (`$in`). In SQL a `$some` subquery (`id in (select …)`), so a row with several
   * matching related rows is listed and counted once.
   */
  private membership (info: FieldInfo, op: '$eq' | '$in', operand: unknown): Condition {
    const keys = op === '$in' ? operand as unknown[] : [operand]
    return {
      build: () => this.place(info, op === '$in' ? { $in: operand } : operand),
      test: (row) => includesAny(row[info.name], keys, info.isDate)
    }
  }

  /** `condition` on `info`'s value as a MikroORM where part: on its column, through its relation, or in a `$some`. */
  private place (info: FieldInfo, condition: unknown): Record<string, unknown> {
    if (info.kind === 'to-many') return { [info.name]: { $some: { [info.prop]: condition } } }
    return this.within(info, { [info.prop]: condition })
  }

  /** `part` where `info`'s property lives: as is for the entity's own, nested under the relation for a path (MikroORM joins). */
  private within (info: FieldInfo, part: Record<string, unknown>): Record<string, unknown> {
    return info.via === undefined ? part : { [info.via]: part }
  }

  /** A checked scalar for `info` (a Date for date fields), or INVALID with a message added. */
  private value (info: FieldInfo, value: unknown, messages: string[]): unknown {
    if (value === null && info.nullable) return null
    if (typeof value === 'string' && value.includes('\u0000')) {
      messages.push(`Invalid value for "${info.name}": ${NULL_CHARACTERS}`)
      return INVALID
    }
    if (typeof value === 'string' && value.length > info.maxChars) {
      messages.push(`Invalid value for "${info.name}": ${tooLong(info.maxChars)}`)
      return INVALID
    }
    if (!info.check.Check(value)) {
      messages.push(`Invalid value for "${info.name}": expected ${info.typeName}.`)
      return INVALID
    }
    return info.isDate ? new Date(value as string) : value
  }

  /**
   * Case-insensitive substring test with `%` and `_` taken literally: a position search
   * (instr / strpos) instead of LIKE, so there are no wildcards to escape on any database.
   * Nested under a path's relation, MikroORM hands the callback the joined table's alias.
   */
  private contains (info: FieldInfo, needle: string): FilterQuery<any> {
    const column = this.platform.quoteIdentifier(info.column)
    const fn = this.position
    return this.within(info, { [raw((alias: string) => `${fn}(lower(${alias === '' ? '' : `${alias}.`}${column}), lower(?))`, [needle])]: { $gt: 0 } })
  }
}

/** One part of a list's condition: built freshly for each query, and tested on a row in memory. */
interface Condition {
  build: () => FilterQuery<any>
  test: (row: Row) => boolean
}

/**
 * The longest value a column can hold: its declared length (`length`, or `varchar(n)`),
 * else {@link MAX_TEXT_VALUE}; never more than {@link MAX_DECLARED_VALUE}.
 */
function declaredLength (prop: EntityProperty): number {
  const declared = prop.runtimeType === 'string'
    ? prop.length ?? Number(/^\s*(?:national\s+)?(?:var)?char(?:acter)?(?:\s+varying)?\s*\((\d+)\)/i.exec(String(prop.columnTypes?.[0] ?? ''))?.[1])
    : undefined
  return typeof declared === 'number' && Number.isSafeInteger(declared) && declared > 0 ? Math.min(declared, MAX_DECLARED_VALUE) : MAX_TEXT_VALUE
}

function tooLong (max: number): string {
  return `Ensure this value has at most ${max} characters.`
}

/** A case-insensitive substring test (as the matcher's containsText) with the needle lower-cased beforehand (once per query, not per row and field). */
function includesLowered (value: unknown, lowered: string, lower: (text: string) => string): boolean {
  return typeof value === 'string' && lower(value).includes(lowered)
}

/** Marks a value that failed its check (undefined and null are legitimate values). */
const INVALID = Symbol('invalid')
