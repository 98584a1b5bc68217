/**
 * Related primary keys in write input, as DRF's PrimaryKeyRelatedField takes them.
 *
 * A route's create / update schema may declare a relation of its entity by the related
 * object's primary key (`author: Type.Integer()`, a many-to-one or owning one-to-one) or keys
 * (`tags: Type.Array(Type.Integer())`, an owning many-to-many). Which input properties are
 * such relations, and how their keys are typed, is compiled once per schema from the entity
 * metadata. Per message, two steps around the schema:
 *
 * - `check` (sync, before the schema): takes what DRF takes ("5" for an integer key) and
 *   words what it refuses as DRF does ("Incorrect type. Expected pk value, received str.");
 *   a refused value never reaches the schema, so its own message is the only one.
 * - `verify` (async, after it): one query per relation field looks the keys up, so a missing
 *   object is a 400 keyed by the field ("Invalid pk "999" - object does not exist.") instead
 *   of a foreign-key failure at flush. A race that deletes the object after the check is
 *   still caught by the database and translated the same way (database-errors.ts).
 */
import { ReferenceKind, type EntityManager, type EntityMetadata, type EntityName, type EntityProperty, type FilterQuery } from '@mikro-orm/core'
import { Kind, type TSchema } from '@sinclair/typebox'
import type { Dialect } from './dialect.js'
import { ValidationError, type FieldErrors } from './errors.js'
import { pythonTypeName } from './validation.js'

/** DRF's text for a value that cannot be a primary key (PrimaryKeyRelatedField's `incorrect_type`). */
export function incorrectType (value: unknown): string {
  return `Incorrect type. Expected pk value, received ${pythonTypeName(value)}.`
}

/** DRF's text for a primary key naming no object (PrimaryKeyRelatedField's `does_not_exist`). */
export function doesNotExist (pk: string): string {
  return `Invalid pk "${pk}" - object does not exist.`
}

/** The same, where the database did not say which key it was (SQLite's foreign-key errors name nothing). */
export const DOES_NOT_EXIST = 'Invalid pk - object does not exist.'

const NOT_NULL = 'This field may not be null.'

/** DRF's text for a to-many value that is not a list (ManyRelatedField's `not_a_list`). */
function notAList (value: unknown): string {
  return `Expected a list of items but got type "${pythonTypeName(value)}".`
}

/** One key of the input, typed: the value to write, or why it cannot be one. */
type Coerced =
  | { error: string }
  /** `absent`: a well-typed key no row can hold (out of the column's range): missing without a query. */
  | { value: unknown, absent?: true }

/** A key that passed the type check, with the input as the client sent it (DRF prints that). */
interface Key { value: unknown, shown: string, absent: boolean }

/** One relation property of the input. */
interface RelationField {
  readonly name: string
  /** A list of keys (many-to-many) rather than one. */
  readonly many: boolean
  /** Whether `null` unsets it (a nullable to-one). */
  readonly nullable: boolean
  /** The related entity (its class: MikroORM 7 takes no class name) and its primary key property. */
  readonly target: EntityName<object>
  readonly pk: string
  readonly coerce: (value: unknown) => Coerced
}

/** The input after {@link RelationInput.check}: what goes on to the schema, and what the check found. */
export interface CheckedInput {
  /** The input with keys coerced ("5" → 5) and refused relation values left out. */
  readonly data: unknown
  /** A message per relation field refused by its type. */
  readonly errors: FieldErrors
  /** The keys of each relation field that passed, to look up. */
  readonly keys: ReadonlyMap<string, Key[]>
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * The largest magnitude an integer column of `columnType` holds where the database enforces
 * widths: a larger key is sent to no query (PostgreSQL would refuse the parameter, a 500).
 */
function integerBound (columnType: string, dialect: Dialect): bigint {
  const int64 = 2n ** 63n
  if (!dialect.sizedIntegers) return int64
  if (/^(smallint|int2|smallserial|serial2)\b/.test(columnType)) return 2n ** 15n
  if (/^(bigint|int8|bigserial|serial8)\b/.test(columnType)) return int64
  if (/int|serial/.test(columnType)) return 2n ** 31n
  return int64
}

/** How a client's value becomes a key of the related entity's primary key `pk`. */
function keyCoercer (pk: EntityProperty, dialect: Dialect): (value: unknown) => Coerced {
  const column = (pk.columnTypes?.[0] ?? '').toLowerCase()
  const runtime = pk.runtimeType
  if (runtime === 'number' || runtime === 'bigint' || /int|serial/.test(column)) {
    const bound = integerBound(column, dialect)
    return (v) => {
      let n: bigint
      // Python's int() takes "5" and " 5 ", as DRF's lookup does; never a bool, float or container.
      if (typeof v === 'number' && Number.isInteger(v)) n = BigInt(v)
      else if (typeof v === 'string' && /^\s*[-+]?\d+\s*$/.test(v)) n = BigInt(v.trim())
      else return { error: incorrectType(v) }
      // A number key as a number; a bigint one as its decimal string, as lookups take it.
      const value = runtime === 'number' ? Number(n) : n.toString()
      const absent = n >= bound || n < -bound || (typeof value === 'number' && !Number.isSafeInteger(value))
      return absent ? { value, absent } : { value }
    }
  }
  if (/uuid/i.test(String(pk.type)) || column === 'uuid') {
    return (v) => {
      if (typeof v !== 'string') return { error: incorrectType(v) }
      const value = v.trim()
      // Django's UUIDField text; PostgreSQL would refuse the malformed parameter outright.
      return UUID.test(value) ? { value: value.toLowerCase() } : { error: `“${v}” is not a valid UUID.` }
    }
  }
  return (v) => {
    // Trimmed as the schema's strings are, so the key looked up is the key written.
    if (typeof v === 'string') return { value: v.trim() }
    if (typeof v === 'number' && Number.isFinite(v)) return { value: String(v) }
    return { error: incorrectType(v) }
  }
}

/** The properties an input schema declares: those of an object, or of each object of an intersection. */
function declaredProperties (schema: TSchema): string[] {
  if (schema[Kind] === 'Object') return Object.keys((schema as { properties?: object }).properties ?? {})
  if (schema[Kind] === 'Intersect') return ((schema as { allOf?: TSchema[] }).allOf ?? []).flatMap(declaredProperties)
  return []
}

/** Whether the entity holds the key of this relation itself: a many-to-one, or the owning side of a one-to-one or many-to-many. */
function ownsKeys (prop: EntityProperty): boolean {
  return prop.kind === ReferenceKind.MANY_TO_ONE ||
    ((prop.kind === ReferenceKind.ONE_TO_ONE || prop.kind === ReferenceKind.MANY_TO_MANY) && prop.owner)
}

/** The first message of a nested FieldErrors (a list's item-by-item failures), for a field reported as a whole. */
function firstMessage (errors: string[] | FieldErrors): string[] {
  if (Array.isArray(errors)) return errors.slice(0, 1)
  for (const nested of Object.values(errors)) {
    const found = firstMessage(nested)
    if (found.length > 0) return found
  }
  return []
}

/** The relation properties of one input schema, compiled. */
export class RelationInput {
  private constructor (private readonly fields: readonly RelationField[]) {}

  /**
   * The relation properties `schema` declares on the entity of `meta`, or `undefined` when it
   * declares none. A relation to an entity with a composite primary key is left to the schema.
   */
  static compile (meta: EntityMetadata, schema: TSchema, dialect: Dialect): RelationInput | undefined {
    const fields: RelationField[] = []
    for (const name of new Set(declaredProperties(schema))) {
      const prop = (meta.properties as Record<string, EntityProperty | undefined>)[name]
      const target = prop?.targetMeta
      if (prop === undefined || target === undefined || !ownsKeys(prop) || target.primaryKeys.length !== 1) continue
      const pk = target.properties[target.primaryKeys[0]] as EntityProperty
      fields.push({
        name,
        many: prop.kind === ReferenceKind.MANY_TO_MANY,
        nullable: prop.kind !== ReferenceKind.MANY_TO_MANY && prop.nullable === true,
        target: target.class,
        pk: pk.name,
        coerce: keyCoercer(pk, dialect)
      })
    }
    return fields.length === 0 ? undefined : new RelationInput(fields)
  }

  /** The relation properties, by name. */
  get names (): string[] {
    return this.fields.map((field) => field.name)
  }

  /**
   * Type the relation values of `data` (sync): coerce what DRF accepts, word what it refuses.
   * Anything but an object passes through untouched, for the schema to refuse.
   */
  check (data: unknown): CheckedInput {
    const errors: FieldErrors = {}
    const keys = new Map<string, Key[]>()
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return { data, errors, keys }
    const copy: Record<string, unknown> = { ...(data as Record<string, unknown>) }
    for (const field of this.fields) {
      if (!Object.hasOwn(copy, field.name)) continue // required or not: the schema's to say
      const value = copy[field.name]
      const refuse = (message: string): void => {
        errors[field.name] = [message]
        delete copy[field.name]
      }
      if (value === null) {
        if (!field.nullable) refuse(NOT_NULL)
        continue
      }
      if (field.many && !Array.isArray(value)) {
        refuse(notAList(value))
        continue
      }
      const items = field.many ? value as unknown[] : [value]
      const typed: Key[] = []
      let error: string | undefined
      for (const item of items) {
        const coerced = field.coerce(item)
        // ManyRelatedField stops at the first bad item: one message for the field as a whole.
        if ('error' in coerced) {
          error = coerced.error
          break
        }
        typed.push({ value: coerced.value, shown: String(item), absent: coerced.absent === true })
      }
      if (error !== undefined) {
        refuse(error)
        continue
      }
      copy[field.name] = field.many ? typed.map((key) => key.value) : typed[0].value
      keys.set(field.name, typed)
    }
    return { data: copy, errors, keys }
  }

  /**
   * Look up the keys that passed {@link check}, one query per relation field, on `em` (the
   * message's, inside its write transaction where there is one); fields already in `failed`
   * are skipped. The first missing key of each field, as DRF reports it, or nothing.
   */
  async verify (em: EntityManager, checked: CheckedInput, failed: FieldErrors = {}): Promise<FieldErrors | undefined> {
    let missing: FieldErrors | undefined
    for (const field of this.fields) {
      const keys = checked.keys.get(field.name)
      if (keys === undefined || keys.length === 0 || failed[field.name] !== undefined) continue
      const wanted = [...new Set(keys.filter((key) => !key.absent).map((key) => key.value))]
      const found = new Set<string>()
      if (wanted.length > 0) {
        // The primary key alone, kept out of the identity map: the rows are only counted here.
        const rows = await em.find(field.target, { [field.pk]: { $in: wanted } } as FilterQuery<object>, {
          fields: [field.pk] as never,
          disableIdentityMap: true
        })
        for (const row of rows) found.add(String((row as Record<string, unknown>)[field.pk]))
      }
      const first = keys.find((key) => key.absent || !found.has(String(key.value)))
      if (first !== undefined) (missing ??= {})[field.name] = [doesNotExist(first.shown)]
    }
    return missing
  }

  /**
   * `validate` with related keys around it: {@link check} before, {@link verify} after, and
   * one ValidationError with every failing field — the schema's, the types', the missing
   * objects' — or the validated data.
   */
  async validate<T> (em: EntityManager, data: unknown, validate: (data: unknown) => Promise<T>): Promise<T> {
    const checked = this.check(data)
    let valid: T | undefined
    let failure: ValidationError | undefined
    try {
      valid = await validate(checked.data)
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err
      failure = err
    }
    const fields: FieldErrors = failure?.fields ?? {}
    for (const name of this.names) {
      // A relation is reported as a whole, as DRF does: never item by item.
      const errors = fields[name]
      if (errors !== undefined && !Array.isArray(errors)) fields[name] = firstMessage(errors)
    }
    Object.assign(fields, checked.errors)
    const missing = await this.verify(em, checked, fields)
    if (missing !== undefined) Object.assign(fields, missing)
    if (failure !== undefined) throw failure
    if (Object.keys(fields).length > 0) throw new ValidationError(fields)
    return valid as T
  }
}
