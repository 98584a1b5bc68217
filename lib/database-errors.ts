/**
 * Database errors → protocol errors, the same way on SQLite and PostgreSQL.
 *
 * A unique violation is a 400 keyed by the field in DRF's wording ("user with this
 * username already exists."), never a 500; so is a related key naming no row ("Invalid pk
 * "999" - object does not exist.", the text the input check gives before the write, for a
 * row deleted since the check or a write that skipped it); a stale version, deadlock or lock timeout is
 * a 409 (the client may retry). A lost connection or anything else is the caller's 500.
 * The driver's message (SQL, constraint names) never reaches the reply.
 */
import {
  DeadlockException,
  ForeignKeyConstraintViolationException,
  LockWaitTimeoutException,
  NotNullConstraintViolationException,
  OptimisticLockError,
  UniqueConstraintViolationException,
  type EntityMetadata,
  type EntityProperty
} from '@mikro-orm/core'
import { Conflict, ValidationError } from './errors.js'
import { DOES_NOT_EXIST, doesNotExist } from './relation-input.js'

/**
 * SQLSTATEs the client may cause, for PostgreSQL errors MikroORM leaves unconverted: those
 * raised at COMMIT (a deferred unique constraint, a serialization failure) reach us as the
 * driver's own error, and lock_not_available is never converted.
 */
const PG_UNIQUE = '23505'
const PG_NOT_NULL = '23502'
const PG_FOREIGN_KEY = '23503'
const PG_RETRYABLE = new Set(['55P03', '40001', '40P01']) // lock not available, serialization failure, deadlock

function sqlState (err: unknown): unknown {
  return err !== null && typeof err === 'object' ? (err as { code?: unknown }).code : undefined
}

/** Column names named by a unique-violation message of SQLite or PostgreSQL. */
function violatedColumns (err: Error & { detail?: string, column?: string }): string[] {
  // PostgreSQL: detail "Key (username)=(bob) already exists." / "Key (a, b)=(1, 2) …"
  const pg = /Key \(([^)]+)\)=/.exec(err.detail ?? err.message)
  if (pg !== null) return pg[1].split(',').map((c) => c.trim().replace(/^"|"$/g, ''))
  // SQLite: "UNIQUE constraint failed: user.username, user.email"
  const lite = /(?:UNIQUE|NOT NULL) constraint failed: ([\w.", ]+)/.exec(err.message)
  if (lite !== null) return lite[1].split(',').map((c) => c.trim().split('.').pop()!.replace(/"/g, ''))
  // PostgreSQL not-null: column attribute on the driver error
  if (typeof err.column === 'string') return [err.column]
  return []
}

/** The entity property stored in `column`, or the column name itself when no property maps to it. */
function propertyOf (meta: EntityMetadata | undefined, column: string): string {
  if (meta === undefined) return column
  for (const prop of meta.props) {
    if (prop.fieldNames?.includes(column)) return prop.name
  }
  return column
}

/** DRF's verbose name of a model: its class name, lower-cased. */
function verboseName (meta: EntityMetadata | undefined): string {
  return (meta?.className ?? 'object').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase()
}

/** DRF's text for a taken unique value: "user with this username already exists." */
export function uniqueMessage (meta: EntityMetadata | undefined, field: string): string {
  const fieldName = field.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/_/g, ' ').toLowerCase()
  return `${verboseName(meta)} with this ${fieldName} already exists.`
}

/** A table name without its schema, as PostgreSQL's error names it. */
function bareTable (name: string | undefined): string | undefined {
  return name?.split('.').pop()?.replace(/["`]/g, '')
}

const sameColumns = (a: string[] | undefined, b: string[]): boolean =>
  a !== undefined && a.length === b.length && a.every((column) => b.includes(column))

/** Relations whose foreign key the entity's own row holds (many-to-one, owning one-to-one). */
const toOneOwners = (meta: EntityMetadata): EntityProperty[] =>
  meta.props.filter((p) => p.kind === 'm:1' || (p.kind === '1:1' && p.owner))

/**
 * The relation of `meta` whose foreign key lives in `table`: by `columns` where the database
 * names them (PostgreSQL), else only where the table leaves no doubt (SQLite): the pivot
 * table of one many-to-many, or the entity's own table with one to-one relation.
 */
function relationOf (meta: EntityMetadata | undefined, table: string | undefined, columns?: string[]): string | undefined {
  if (meta === undefined || table === undefined) return undefined
  // The pivot row's other key is the row being written, which exists: the related key is the one missing.
  const pivots = meta.props.filter((p) => p.kind === 'm:n' && p.owner && bareTable(p.pivotTable) === table)
  const inPivot = columns === undefined ? pivots : pivots.filter((p) => sameColumns(p.inverseJoinColumns, columns))
  if (inPivot.length === 1) return inPivot[0].name
  if (table !== bareTable(meta.tableName)) return undefined
  const owners = toOneOwners(meta)
  const own = columns === undefined ? owners : owners.filter((p) => sameColumns(p.fieldNames, columns))
  return own.length === 1 ? own[0].name : undefined
}

/** 400 for a row deleted while others still refer to it: nothing the client could have checked before. */
export const STILL_REFERENCED = 'Cannot delete this object: other objects refer to it.'

/**
 * A foreign-key violation → 400 keyed by the relation, with the text of the input check.
 * PostgreSQL names the table, column and value; SQLite names nothing but the statement
 * (MikroORM's message starts with it), so there the key stays unknown and, unless the
 * table alone tells the relation, the field too (`non_field_errors`).
 */
function foreignKeyError (err: Error & { detail?: string, table?: string, sql?: unknown }, meta: EntityMetadata | undefined): ValidationError {
  const detail = err.detail ?? ''
  // PostgreSQL: "Key (author_id)=(999) is not present in table "author"." — the written row refers to no row.
  const missing = /^Key \((.+?)\)=\((.*)\) is not present in table/s.exec(detail)
  if (missing !== null) {
    const field = relationOf(meta, bareTable(err.table), missing[1].split(',').map((c) => c.trim().replace(/^"|"$/g, '')))
    return field === undefined ? ValidationError.field('non_field_errors', DOES_NOT_EXIST) : ValidationError.field(field, doesNotExist(missing[2]))
  }
  // PostgreSQL: "Key (id)=(1) is still referenced from table "book"."; SQLite: the statement was a delete
  // (MikroORM 6's message starts with it; on MikroORM 7 orm-compat.ts keeps it as `sql`).
  const statement = /^\s*(insert\s+into|update|delete\s+from)\s+([`"\w.]+)/i.exec(typeof err.sql === 'string' ? err.sql : err.message)
  if (/is still referenced from table/.test(detail) || /^delete/i.test(statement?.[1] ?? '')) {
    return ValidationError.field('non_field_errors', STILL_REFERENCED)
  }
  const field = detail === '' ? relationOf(meta, bareTable(statement?.[2])) : undefined
  return ValidationError.field(field ?? 'non_field_errors', DOES_NOT_EXIST)
}

/**
 * Translate a database error into the protocol error to reply with, or `undefined`
 * when it is not one the client caused (the caller then logs it and replies 500).
 */
export function translateDatabaseError (err: unknown, meta?: EntityMetadata): Error | undefined {
  const code = sqlState(err)
  if (err instanceof UniqueConstraintViolationException || (err instanceof Error && code === PG_UNIQUE)) {
    const fields = violatedColumns(err).map((c) => propertyOf(meta, c))
    const key = fields.length === 1 ? fields[0] : 'non_field_errors'
    const message = fields.length === 1
      ? uniqueMessage(meta, fields[0])
      : `The fields ${fields.join(', ')} must make a unique set.`
    return ValidationError.field(key, message)
  }
  if (err instanceof NotNullConstraintViolationException || (err instanceof Error && code === PG_NOT_NULL)) {
    const [column] = violatedColumns(err)
    return ValidationError.field(column === undefined ? 'non_field_errors' : propertyOf(meta, column), 'This field may not be null.')
  }
  if (err instanceof ForeignKeyConstraintViolationException ||
      // PostgreSQL's, raised at COMMIT (a deferred constraint); SQLite's, unconverted.
      (err instanceof Error && (code === PG_FOREIGN_KEY || /FOREIGN KEY constraint failed/.test(err.message)))) {
    return foreignKeyError(err, meta)
  }
  if (err instanceof OptimisticLockError || err instanceof DeadlockException || err instanceof LockWaitTimeoutException ||
      // SQLite's "database is locked" arrives as LockWaitTimeoutException.
      (err instanceof Error && PG_RETRYABLE.has(code as string))) {
    return new Conflict()
  }
  return undefined
}
