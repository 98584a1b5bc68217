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
 */
import { raw, type EntityMetadata, type FilterQuery, type Platform } from '@mikro-orm/core'
import { Type, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { dialectOf } from './dialect.js'
import { InvalidOption, ValidationError } from './errors.js'
import { NULL_CHARACTERS } from './validation.js'
import type { Row } from './observer/changes.js'
import { anyRow, compare, containsText, type RowPredicate } from './observer/matcher.js'

/** What a route lets clients filter, order and search by. */
export interface QueryOptions {
  /** Fields `filter` may name. */
  filterFields?: string[]
  /** Fields `ordering` may name (`"username"`, `"-id"`). */
  orderingFields?: string[]
  /** Fields `search` looks in (case-insensitive substring, any of them). */
  searchFields?: string[]
  /** The default ordering, as a client would send it. Default: the primary key, ascending. */
  ordering?: string | string[]
}

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
/** Longest `$in`/`$nin` list accepted, so one frame cannot build an unbounded SQL statement. */
const MAX_LIST = 1000

interface FieldInfo {
  name: string
  column: string
  check: TypeCheck<TSchema>
  typeName: string
  isString: boolean
  isDate: boolean
  nullable: boolean
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
  /** The route's default ordering, with the primary key tie-break. */
  readonly defaultOrder: OrderStep[]
  private readonly position: string
  private readonly dateFields = new Set<string>()

  constructor (
    private readonly meta: EntityMetadata,
    private readonly platform: Platform,
    options: QueryOptions
  ) {
    const field = (option: string, name: string): FieldInfo => {
      const prop = meta.properties[name]
      if (prop === undefined || typeof name !== 'string') {
        throw new InvalidOption(option, `"${String(name)}" is not a property of ${meta.className}`)
      }
      if (prop.kind !== 'scalar') throw new InvalidOption(option, `"${name}" is a relation; only scalar properties can be used`)
      const { schema, typeName } = valueSchema(prop.runtimeType, String(prop.columnTypes?.[0] ?? prop.type ?? ''))
      if (prop.runtimeType === 'Date') this.dateFields.add(name)
      return {
        name,
        column: prop.fieldNames[0],
        check: TypeCompiler.Compile(schema),
        typeName,
        isString: prop.runtimeType === 'string',
        isDate: prop.runtimeType === 'Date',
        nullable: prop.nullable === true
      }
    }
    for (const name of options.filterFields ?? []) this.filterable.set(name, field('filterFields', name))
    for (const name of options.orderingFields ?? []) this.orderable.set(name, field('orderingFields', name))
    for (const name of options.searchFields ?? []) {
      const info = field('searchFields', name)
      if (!info.isString) throw new InvalidOption('searchFields', `"${name}" is not a string property`)
      this.searchable.push(info)
    }
    this.position = dialectOf(platform).position
    const primaryKey = meta.primaryKeys[0]
    this.orderable.set(primaryKey, field('ordering', primaryKey))
    const defaults = this.parseOrdering(options.ordering ?? primaryKey)
    if (typeof defaults === 'string') throw new InvalidOption('ordering', defaults)
    this.defaultOrder = defaults
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
      else if (args.search.trim() !== '') {
        const needle = args.search
        conditions.push({
          build: () => ({ $or: this.searchable.map((f) => this.contains(f, needle)) }),
          test: (row) => this.searchable.some((f) => containsText(row[f.name], needle))
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
   * nullable field would silently skip rows, so it is refused (400 keyed `ordering`).
   */
  checkKeysetOrder (steps: OrderStep[]): void {
    const nullable = steps.find((s) => this.orderable.get(s.field)?.nullable === true)
    if (nullable !== undefined) {
      throw ValidationError.field('ordering', `Cannot page by cursor on "${nullable.field}": it may be null.`)
    }
  }

  /** A value of `field` as the database wants it (date fields: a Date from its ISO string). */
  fieldValue (field: string, value: unknown): unknown {
    return this.dateFields.has(field) && typeof value === 'string' ? new Date(value) : value
  }

  /** MikroORM's orderBy for `steps`. */
  orderBy (steps: OrderStep[]): Array<Record<string, 'asc' | 'desc'>> {
    return steps.map((s) => ({ [s.field]: s.desc ? 'desc' : 'asc' }))
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
        if (value !== INVALID) out.push({ build: () => ({ [name]: value }), test: (row) => compare('$eq', row[name], value, info.isDate) === true })
        continue
      }
      const operators = Object.entries(condition)
      if (operators.length === 0) messages.push(`Expected at least one operator for "${name}".`)
      const ops: Record<string, unknown> = {}
      for (const [op, operand] of operators) {
        if (!OPERATORS.has(op)) {
          messages.push(`Unknown operator "${op}" for field "${name}".`)
        } else if (op === '$contains') {
          if (!info.isString) messages.push(`Operator "$contains" needs a string field; "${name}" is not one.`)
          else if (typeof operand !== 'string') messages.push(`Invalid value for "${name}": $contains expects a string.`)
          else if (operand.includes('\u0000')) messages.push(`Invalid value for "${name}": ${NULL_CHARACTERS}`)
          else out.push({ build: () => this.contains(info, operand), test: (row) => containsText(row[name], operand) })
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
      if (Object.keys(ops).length > 0) {
        const entries = Object.entries(ops)
        out.push({
          build: () => ({ [name]: ops }),
          test: (row) => entries.every(([op, operand]) => compare(op, row[name], operand, info.isDate) === true)
        })
      }
    }
  }

  /** A checked scalar for `info` (a Date for date fields), or INVALID with a message added. */
  private value (info: FieldInfo, value: unknown, messages: string[]): unknown {
    if (value === null && info.nullable) return null
    if (typeof value === 'string' && value.includes('\u0000')) {
      messages.push(`Invalid value for "${info.name}": ${NULL_CHARACTERS}`)
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
   */
  private contains (info: FieldInfo, needle: string): FilterQuery<any> {
    const column = this.platform.quoteIdentifier(info.column)
    const fn = this.position
    return { [raw((alias: string) => `${fn}(lower(${alias === '' ? '' : `${alias}.`}${column}), lower(?))`, [needle])]: { $gt: 0 } }
  }
}

/** One part of a list's condition: built freshly for each query, and tested on a row in memory. */
interface Condition {
  build: () => FilterQuery<any>
  test: (row: Row) => boolean
}

/** Marks a value that failed its check (undefined and null are legitimate values). */
const INVALID = Symbol('invalid')
