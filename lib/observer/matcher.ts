/**
 * Deciding in memory whether a row matches a condition — how an event is checked
 * against a subscriber's filter and scope without a query per subscriber.
 *
 * The comparisons follow SQL where JavaScript would differ: a comparison with NULL never
 * matches (`$ne`, `$nin` included), dates compare as instants. A value missing from the
 * row (undefined) never matches either: the row cannot tell, so the condition fails closed.
 */
import type { EntityMetadata } from '@mikro-orm/core'
import type { Row } from './changes.js'

/** A compiled condition on a row. */
export type RowPredicate = (row: Row) => boolean

/** Always true: no condition. */
export const anyRow: RowPredicate = () => true

/** Always false: a condition that cannot be decided in memory fails closed. */
export const noRow: RowPredicate = () => false

function comparable (value: unknown, isDate: boolean): unknown {
  if (value instanceof Date) return value.getTime()
  if (isDate && typeof value === 'string') return Date.parse(value)
  if (typeof value === 'bigint') return Number(value)
  return value
}

const FIELD_OPERATORS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin'])

/**
 * `value <op> operand`, SQL-style (NULL never compares). False when `value` is undefined
 * (missing from the row: never taken for a value, so `$ne` / `$nin` do not match it).
 * Undefined for an operator it does not know.
 */
export function compare (op: string, value: unknown, operand: unknown, isDate: boolean): boolean | undefined {
  if (value === undefined) return FIELD_OPERATORS.has(op) ? false : undefined
  const v = comparable(value, isDate)
  switch (op) {
    case '$eq':
      return operand === null ? v === null : v !== null && v === comparable(operand, isDate)
    case '$ne':
      return operand === null ? v !== null : v !== null && v !== comparable(operand, isDate)
    case '$in':
      return Array.isArray(operand) && v !== null && operand.some((o) => comparable(o, isDate) === v)
    case '$nin':
      return Array.isArray(operand) && v !== null && !operand.some((o) => comparable(o, isDate) === v)
  }
  const o = comparable(operand, isDate)
  if (v === null || o === null || typeof v !== typeof o || (typeof v !== 'number' && typeof v !== 'string')) {
    return op === '$gt' || op === '$gte' || op === '$lt' || op === '$lte' ? false : undefined
  }
  switch (op) {
    case '$gt': return (v as number) > (o as number)
    case '$gte': return (v as number) >= (o as number)
    case '$lt': return (v as number) < (o as number)
    case '$lte': return (v as number) <= (o as number)
  }
  return undefined
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
 * Compile a MikroORM condition (a route's `getQueryset` result) into a row predicate,
 * or `undefined` when it uses something this cannot decide in memory (relations
 * traversal, raw SQL, `$like`, …) — the caller then fails closed.
 *
 * Supported: `{prop: value}`, `{prop: null}`, `{prop: {$eq|$ne|$gt|$gte|$lt|$lte|$in|$nin}}`,
 * `$and`, `$or`, `$not`, over the entity's own columns (a to-one relation by its key).
 */
export function compileCondition (meta: EntityMetadata, condition: unknown): RowPredicate | undefined {
  if (condition === undefined || condition === null) return anyRow
  if (!isPlainObject(condition) || Object.getOwnPropertySymbols(condition).length > 0) return undefined
  const parts: RowPredicate[] = []
  for (const [key, value] of Object.entries(condition)) {
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(value)) return undefined
      const subs = value.map((v) => compileCondition(meta, v))
      if (subs.some((s) => s === undefined)) return undefined
      const all = subs as RowPredicate[]
      parts.push(key === '$and' ? (row) => all.every((p) => p(row)) : (row) => all.some((p) => p(row)))
      continue
    }
    if (key === '$not') {
      const sub = compileCondition(meta, value)
      if (sub === undefined) return undefined
      parts.push((row) => !sub(row))
      continue
    }
    const prop = (meta.properties as Record<string, { kind: string, runtimeType?: string, owner?: boolean } | undefined>)[key]
    if (prop === undefined || !(prop.kind === 'scalar' || prop.kind === 'm:1' || (prop.kind === '1:1' && prop.owner === true))) return undefined
    const isDate = prop.runtimeType === 'Date'
    const operators = isPlainObject(value) ? Object.entries(value) : [['$eq', value] as const]
    for (const [op, operand] of operators) {
      if (!FIELD_OPERATORS.has(op)) return undefined
      if (isPlainObject(operand)) return undefined
      parts.push((row) => compare(op, row[key], operand, isDate) === true)
    }
  }
  if (parts.length === 0) return anyRow
  if (parts.length === 1) return parts[0]
  return (row) => parts.every((p) => p(row))
}
