/**
 * Database errors → protocol errors, the same way on SQLite and PostgreSQL.
 *
 * A unique violation is a 400 keyed by the field in DRF's wording ("user with this
 * username already exists."), never a 500; a stale version, deadlock or lock timeout is
 * a 409 (the client may retry). A lost connection or anything else is the caller's 500.
 * The driver's message (SQL, constraint names) never reaches the reply.
 */
import {
  DeadlockException,
  LockWaitTimeoutException,
  NotNullConstraintViolationException,
  OptimisticLockError,
  UniqueConstraintViolationException,
  type EntityMetadata
} from '@mikro-orm/core'
import { Conflict, ValidationError } from './errors.js'

/**
 * SQLSTATEs the client may cause, for PostgreSQL errors MikroORM leaves unconverted: those
 * raised at COMMIT (a deferred unique constraint, a serialization failure) reach us as the
 * driver's own error, and lock_not_available is never converted.
 */
const PG_UNIQUE = '23505'
const PG_NOT_NULL = '23502'
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
  if (err instanceof OptimisticLockError || err instanceof DeadlockException || err instanceof LockWaitTimeoutException ||
      // SQLite's "database is locked" arrives as LockWaitTimeoutException.
      (err instanceof Error && PG_RETRYABLE.has(code as string))) {
    return new Conflict()
  }
  return undefined
}
