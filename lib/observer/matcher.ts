/**
 * Deciding in memory whether a row matches a condition — how an event is checked
 * against a subscriber's filter and scope without a query per subscriber.
 *
 * The comparisons follow SQL where JavaScript would differ: SQL's three-valued logic (a
 * comparison with NULL is UNKNOWN, which NOT keeps UNKNOWN, and a row is admitted only
 * when its condition is TRUE), dates compare as instants, strings by code point. A value
 * missing from the row (undefined) is UNKNOWN too: the row cannot tell, so it fails closed.
 */
import type { EntityMetadata } from '@mikro-orm/core'
import type { EmptyConditions } from '../orm-compat.js'
import type { Row } from './changes.js'

/** A compiled condition on a row. */
export type RowPredicate = (row: Row) => boolean

/** Always true: no condition. */
export const anyRow: RowPredicate = () => true

function comparable (value: unknown, isDate: boolean): unknown {
  if (value instanceof Date) return value.getTime()
  if (isDate && typeof value === 'string') return Date.parse(value)
  if (typeof value === 'bigint') return Number(value)
  return value
}

const FIELD_OPERATORS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin'])

/**
 * SQL's three truth values: `null` is UNKNOWN, what a comparison with NULL yields. A row
 * is admitted only when its whole condition is TRUE, so UNKNOWN excludes it — and, unlike
 * false, stays UNKNOWN under NOT (`NOT (category = 'secret')` excludes a NULL category).
 */
export type Truth = boolean | null

/**
 * Strings ordered by code point, as SQLite's default BINARY collation and PostgreSQL's
 * C / C.UTF-8 collations order them (JavaScript's `<` orders UTF-16 code units, which
 * disagrees for characters beyond U+FFFF against U+E000–U+FFFF). A database whose
 * collation is language-aware orders differently: see the note on `compileCondition`.
 */
function compareStrings (a: string, b: string): number {
  if (a === b) return 0
  const x = a[Symbol.iterator]()
  const y = b[Symbol.iterator]()
  for (;;) {
    const i = x.next()
    const j = y.next()
    if (i.done === true) return j.done === true ? 0 : -1
    if (j.done === true) return 1
    const d = (i.value.codePointAt(0) as number) - (j.value.codePointAt(0) as number)
    if (d !== 0) return d
  }
}

/** `v` against `o` for an ordering operator, or null when SQL could not order them here (NULL, or types that do not compare). */
function order (v: unknown, o: unknown): number | null {
  // Booleans order false < true in both databases (SQLite stores them as 0 / 1).
  const a = typeof v === 'boolean' ? Number(v) : v
  const b = typeof o === 'boolean' ? Number(o) : o
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) || Number.isNaN(b) ? null : a - b
  if (typeof a === 'string' && typeof b === 'string') return compareStrings(a, b)
  return null
}

/** `v = o` with SQL NULL semantics: UNKNOWN when either side is NULL. */
function equals (v: unknown, o: unknown): Truth {
  if (v === null || o === null) return null
  const d = order(v, o)
  if (d !== null) return d === 0
  // Values of different types (a bigint column's row value is a string, its operand perhaps a
  // number): the database may convert one to the other, so this cannot tell — UNKNOWN, never
  // a `$ne` that admits the row.
  return typeof v === typeof o ? v === o : null
}

/**
 * `value <op> operand` in SQL's three-valued logic, exactly as MikroORM writes it:
 * `$eq: null` is `IS NULL` and `$ne: null` `IS NOT NULL` (never UNKNOWN); any other
 * comparison involving NULL is UNKNOWN; `$in: [1, null]` is `IN (1, NULL)` (TRUE for 1,
 * else UNKNOWN), `$nin: [1, null]` is `NOT IN (1, NULL)` (never TRUE); an empty `$in` is
 * FALSE and an empty `$nin` TRUE (MikroORM writes `1 = 0` / `1 = 1`). A value missing
 * from the row (undefined) is UNKNOWN: the row cannot tell. Undefined for an operator it
 * does not know.
 */
export function compareTruth (op: string, value: unknown, operand: unknown, isDate: boolean): Truth | undefined {
  if (!FIELD_OPERATORS.has(op)) return undefined
  if ((op === '$in' || op === '$nin') && !Array.isArray(operand)) return null
  if (value === undefined) return op === '$in' && (operand as unknown[]).length === 0 ? false : op === '$nin' && (operand as unknown[]).length === 0 ? true : null
  const v = comparable(value, isDate)
  switch (op) {
    case '$eq':
      return operand === null ? v === null : equals(v, comparable(operand, isDate))
    case '$ne': {
      if (operand === null) return v !== null
      const eq = equals(v, comparable(operand, isDate))
      return eq === null ? null : !eq
    }
    case '$in':
    case '$nin': {
      const list = operand as unknown[]
      if (list.length === 0) return op === '$nin'
      // x IN (a, b) is x = a OR x = b; x NOT IN (…) its negation.
      let found: Truth = false
      for (const o of list) {
        const eq = equals(v, comparable(o, isDate))
        if (eq === true) { found = true; break }
        if (eq === null) found = null
      }
      return op === '$in' ? found : found === null ? null : !found
    }
  }
  const o = comparable(operand, isDate)
  if (v === null || o === null) return null
  const d = order(v, o)
  if (d === null) return null
  switch (op) {
    case '$gt': return d > 0
    case '$gte': return d >= 0
    case '$lt': return d < 0
    default: return d <= 0
  }
}

/**
 * `value <op> operand` as a yes/no (UNKNOWN is no: the row is not admitted), for
 * conjunctions of comparisons such as a client's filter. Undefined for an operator it
 * does not know.
 */
export function compare (op: string, value: unknown, operand: unknown, isDate: boolean): boolean | undefined {
  const truth = compareTruth(op, value, operand, isDate)
  return truth === undefined ? undefined : truth === true
}

/**
 * A to-many relation has a related row whose key is one of `keys`: `value` is the array of
 * related keys a row snapshot carries. Anything else (missing, null) never matches, and
 * neither does a null key (SQL: `id in (…)` never matches NULL).
 */
export function includesAny (value: unknown, keys: unknown[], isDate: boolean): boolean {
  return Array.isArray(value) && value.some((v) => v !== null && compare('$in', v, keys, isDate) === true)
}

/** Case-insensitive substring test, `%` and `_` literal (as `$contains` in SQL). */
export function containsText (value: unknown, needle: string): boolean {
  return typeof value === 'string' && value.toLowerCase().includes(needle.toLowerCase())
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

/**
 * A condition compiled to SQL truth values; EMPTY for one MikroORM drops (`{}`, `$and: []`;
 * MikroORM 6 also `$or: []` and `$not: {}`, which MikroORM 7 reads as false: see EmptyConditions).
 */
type TruthPredicate = (row: Row) => Truth
const EMPTY = Symbol('no condition')

/** Why a condition could not be compiled. */
export type Undecidable =
  /** Uses something this cannot decide in memory (relation traversal, raw SQL, `$like`, …). */
  | { reason: 'unsupported' }
  /**
   * Names a property row snapshots do not carry: hidden (never sent in events), not
   * persisted, or not a column of the row (inverse or to-many relations).
   */
  | { reason: 'property', property: string }

type Compiled = TruthPredicate | typeof EMPTY | Undecidable

interface PropertyInfo { kind: string, runtimeType?: string, owner?: boolean, hidden?: boolean, persist?: boolean }

/**
 * Whether row snapshots carry `prop` — the same rule as `RowReader` (lib/observer/changes.ts):
 * scalars and the owning side of to-one relations (by key) that are persisted and not hidden.
 * Embeddables are carried too, but as objects no condition here compares.
 */
function carried (prop: PropertyInfo): boolean {
  return (prop.kind === 'scalar' || prop.kind === 'm:1' || (prop.kind === '1:1' && prop.owner === true)) &&
    prop.persist !== false && prop.hidden !== true
}

function isUndecidable (c: Compiled): c is Undecidable {
  return typeof c === 'object'
}

/** Kleene AND: FALSE if any is FALSE, else UNKNOWN if any is UNKNOWN, else TRUE. */
function all (parts: TruthPredicate[]): TruthPredicate {
  if (parts.length === 1) return parts[0]
  return (row) => {
    let result: Truth = true
    for (const p of parts) {
      const t = p(row)
      if (t === false) return false
      if (t === null) result = null
    }
    return result
  }
}

/** Kleene OR: TRUE if any is TRUE, else UNKNOWN if any is UNKNOWN, else FALSE. */
function any (parts: TruthPredicate[]): TruthPredicate {
  if (parts.length === 1) return parts[0]
  return (row) => {
    let result: Truth = false
    for (const p of parts) {
      const t = p(row)
      if (t === true) return true
      if (t === null) result = null
    }
    return result
  }
}

/** Several compiled parts joined by `join`, dropping the empty ones as MikroORM does; empty when all are. */
function combine (subs: Compiled[], join: (parts: TruthPredicate[]) => TruthPredicate): Compiled {
  // A property snapshots lack is reported before anything else: that is what the caller must refuse.
  const bad = subs.find((s) => isUndecidable(s) && s.reason === 'property') ?? subs.find(isUndecidable)
  if (bad !== undefined) return bad
  const parts = subs.filter((s): s is TruthPredicate => s !== EMPTY)
  return parts.length === 0 ? EMPTY : join(parts)
}

/** `{key: value}` on one property: a value, an array (`$in`), or an object of comparison operators. */
function compileField (meta: EntityMetadata, key: string, value: unknown): Compiled {
  const prop = (meta.properties as Record<string, PropertyInfo | undefined>)[key]
  if (prop === undefined || key.startsWith('$')) return { reason: 'unsupported' }
  if (!carried(prop)) return { reason: 'property', property: key }
  const isDate = prop.runtimeType === 'Date'
  // A bare array is MikroORM's shorthand for `$in`.
  const operators: Array<readonly [string, unknown]> = isPlainObject(value) ? Object.entries(value) : [[Array.isArray(value) ? '$in' : '$eq', value] as const]
  if (operators.length === 0) return { reason: 'unsupported' }
  const parts: TruthPredicate[] = []
  for (const [op, operand] of operators) {
    if (!FIELD_OPERATORS.has(op) || isPlainObject(operand)) return { reason: 'unsupported' }
    if (Array.isArray(operand) !== (op === '$in' || op === '$nin')) return { reason: 'unsupported' }
    if (Array.isArray(operand) && operand.some((o) => isPlainObject(o) || Array.isArray(o))) return { reason: 'unsupported' }
    parts.push((row) => compareTruth(op, row[key], operand, isDate) as Truth)
  }
  return all(parts)
}

const never: TruthPredicate = () => false

function compileNode (meta: EntityMetadata, condition: unknown, empty: EmptyConditions): Compiled {
  if (!isPlainObject(condition) || Object.getOwnPropertySymbols(condition).length > 0) return { reason: 'unsupported' }
  const parts: Compiled[] = []
  for (const [key, value] of Object.entries(condition)) {
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(value)) return { reason: 'unsupported' }
      // MikroORM drops empty members, and an `$or` of none is no condition (not FALSE) on
      // MikroORM 6; MikroORM 7 renders an `$or` written with no member at all as FALSE.
      if (key === '$or' && value.length === 0 && empty.emptyOrIsFalse) {
        parts.push(never)
        continue
      }
      parts.push(combine(value.map((v) => compileNode(meta, v, empty)), key === '$and' ? all : any))
      continue
    }
    if (key === '$not') {
      const sub = compileNode(meta, value, empty)
      // `$not` of no condition: dropped by MikroORM 6, FALSE on MikroORM 7.
      if (sub === EMPTY && empty.notOfNothingIsFalse) {
        parts.push(never)
        continue
      }
      if (isUndecidable(sub) || sub === EMPTY) {
        parts.push(sub)
        continue
      }
      // NOT UNKNOWN is UNKNOWN: the row stays excluded.
      parts.push((row) => { const t = sub(row); return t === null ? null : !t })
      continue
    }
    parts.push(compileField(meta, key, value))
  }
  return combine(parts, all)
}

/**
 * Compile a MikroORM condition (a route's `getQueryset` result) into a row predicate
 * admitting exactly the rows the database would return for it, or say why it cannot.
 *
 * Supported: `{prop: value}`, `{prop: null}`, `{prop: [values]}`,
 * `{prop: {$eq|$ne|$gt|$gte|$lt|$lte|$in|$nin}}`, `$and`, `$or`, `$not`, over the
 * properties row snapshots carry (own columns, a to-one relation by its key), in SQL's
 * three-valued logic. Strings order by code point, as SQLite and PostgreSQL's C
 * collations do; a scope ordering strings on a database with a language-aware collation
 * would be decided differently here.
 */
export function analyzeCondition (meta: EntityMetadata, condition: unknown, empty: EmptyConditions): { predicate: RowPredicate } | Undecidable {
  if (condition === undefined || condition === null) return { predicate: anyRow }
  const compiled = compileNode(meta, condition, empty)
  if (isUndecidable(compiled)) return compiled
  if (compiled === EMPTY) return { predicate: anyRow }
  return { predicate: (row) => compiled(row) === true }
}

/**
 * `analyzeCondition`'s predicate, or `undefined` when the condition cannot be decided in
 * memory — the caller then fails closed.
 */
export function compileCondition (meta: EntityMetadata, condition: unknown, empty: EmptyConditions): RowPredicate | undefined {
  const result = analyzeCondition(meta, condition, empty)
  return 'predicate' in result ? result.predicate : undefined
}
