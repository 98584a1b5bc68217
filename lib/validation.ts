/**
 * Input validation: a TypeBox schema compiled once per route, with failures turned into
 * DRF-shaped errors (every failing field at once, DRF's wording).
 */
import { FormatRegistry, Kind, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { ValidationError, type FieldErrors } from './errors.js'
import { compileShaper } from './shape.js'

/**
 * Cross-field rule run after the schema: it sees the fields that passed their own
 * checks (so it is typed as a Partial) and returns more field errors, or nothing.
 * `(data) => data.password1 !== data.password2 ? { password2: ['Passwords do not match.'] } : undefined`
 */
export type CrossFieldCheck<T> = (data: Partial<T>) => FieldErrors | undefined | Promise<FieldErrors | undefined>

/** A compiled validator: resolves with the data stripped to declared fields, or throws ValidationError. */
export type InputValidator<T> = (value: unknown) => Promise<T>

// TypeBox only knows formats that are registered; register the common ones unless the
// app already did (the registry is process-wide, so an app's own definition wins).
const formats: Record<string, (value: string) => boolean> = {
  email: (v) => /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v),
  uuid: (v) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v),
  'date-time': (v) => !Number.isNaN(Date.parse(v)) && /^\d{4}-\d\d-\d\dT/.test(v),
  date: (v) => /^\d{4}-\d\d-\d\d$/.test(v) && !Number.isNaN(Date.parse(v)),
  uri: (v) => { try { return Boolean(new URL(v)) } catch { return false } }
}
for (const [name, check] of Object.entries(formats)) {
  if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, check)
}

/** Python's name for a JSON value's type, as DRF prints it in "Expected a dictionary, but got str." */
export function pythonTypeName (value: unknown): string {
  if (value === null) return 'NoneType'
  if (Array.isArray(value)) return 'list'
  switch (typeof value) {
    case 'string': return 'str'
    case 'boolean': return 'bool'
    case 'number': return Number.isInteger(value) ? 'int' : 'float'
    case 'object': return 'dict' // a JSON object arrives in Python as a dict
    default: return typeof value
  }
}

/** DRF's message for one TypeBox failure. */
function drfMessage (error: ValueError): string {
  const s = error.schema as Record<string, unknown>
  if (error.type === ValueErrorType.ObjectRequiredProperty) return 'This field is required.'
  if (error.value === null && error.path !== '') return 'This field may not be null.'
  // A schema may carry its own wording: Type.String({ pattern, errorMessage: 'Enter a valid email address.' })
  if (typeof s.errorMessage === 'string') return s.errorMessage
  switch (error.type) {
    case ValueErrorType.StringMinLength:
      return s.minLength === 1 ? 'This field may not be blank.' : `Ensure this field has at least ${String(s.minLength)} characters.`
    case ValueErrorType.StringMaxLength: return `Ensure this field has no more than ${String(s.maxLength)} characters.`
    case ValueErrorType.String: return 'Not a valid string.'
    case ValueErrorType.Integer: return 'A valid integer is required.'
    case ValueErrorType.Number: return 'A valid number is required.'
    case ValueErrorType.Boolean: return 'Must be a valid boolean.'
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum: return `Ensure this value is greater than or equal to ${String(s.minimum)}.`
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum: return `Ensure this value is less than or equal to ${String(s.maximum)}.`
    case ValueErrorType.StringFormat:
      return s.format === 'email' ? 'Enter a valid email address.' : `Enter a valid ${String(s.format)}.`
    case ValueErrorType.StringPattern: return 'This value does not match the required pattern.'
    case ValueErrorType.Array: return `Expected a list of items but got type "${pythonTypeName(error.value)}".`
    case ValueErrorType.Object: return `Invalid data. Expected a dictionary, but got ${pythonTypeName(error.value)}.`
    case ValueErrorType.Literal:
    case ValueErrorType.Union: return `"${String(error.value)}" is not a valid choice.`
    case ValueErrorType.ObjectAdditionalProperties: return 'Unknown field.'
    default: return error.message
  }
}

/** Put `message` at `path` ("/a/b") in a nested FieldErrors object, keeping only the first message per field. */
function setAt (fields: FieldErrors, path: string, message: string): void {
  const keys = path.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'))
  if (keys.length === 0) keys.push('non_field_errors')
  let node: FieldErrors = fields
  for (let i = 0; i < keys.length - 1; i++) {
    const next = node[keys[i]]
    if (Array.isArray(next)) return // a parent already failed as a whole
    node = (next ?? (node[keys[i]] = {})) as FieldErrors
  }
  const last = keys[keys.length - 1]
  if (node[last] === undefined) node[last] = [message]
}

function isObjectSchema (schema: TSchema): boolean {
  return schema[Kind] === 'Object'
}

/** DRF's text for a string holding U+0000, which no database column takes (ProhibitNullCharactersValidator). */
export const NULL_CHARACTERS = 'Null characters are not allowed.'

/**
 * Report every string in `value` holding a NUL character, at its path. SQLite cuts the
 * statement short at one and PostgreSQL refuses it: let through, it would be a 500.
 */
function findNullCharacters (value: unknown, path: string, fields: () => FieldErrors): void {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) setAt(fields(), path, NULL_CHARACTERS)
  } else if (Array.isArray(value)) {
    value.forEach((item, i) => findNullCharacters(item, `${path}/${i}`, fields))
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) findNullCharacters(item, `${path}/${key.replace(/~/g, '~0').replace(/\//g, '~1')}`, fields)
  }
}

/**
 * Compile `schema` into an {@link InputValidator}. Runs the schema, then `check` on the
 * fields that passed, and throws one ValidationError holding every failure.
 */
export function compileValidator<S extends TSchema> (
  schema: S,
  check?: CrossFieldCheck<Static<S>>
): InputValidator<Static<S>> {
  const compiled = TypeCompiler.Compile(schema)
  // Input strings are trimmed first, as DRF's CharField does (`trim: false` on a string schema opts out).
  const shape = compileShaper(schema, { trimStrings: true })
  const expectsObject = isObjectSchema(schema)

  return async (value) => {
    if (expectsObject && (typeof value !== 'object' || value === null || Array.isArray(value))) {
      throw new ValidationError({
        non_field_errors: [`Invalid data. Expected a dictionary, but got ${pythonTypeName(value)}.`]
      })
    }
    const data = shape(value) as Static<S>
    let fields: FieldErrors | undefined
    if (!compiled.Check(data)) {
      fields = {}
      for (const error of compiled.Errors(data)) setAt(fields, error.path, drfMessage(error))
    }
    findNullCharacters(data, '', () => (fields ??= {}))
    if (check !== undefined) {
      let valid = data as Record<string, unknown>
      if (fields !== undefined) {
        valid = { ...valid }
        for (const key of Object.keys(fields)) delete valid[key]
      }
      const more = await check(valid as Partial<Static<S>>)
      if (more !== undefined && Object.keys(more).length > 0) {
        fields ??= {}
        for (const [key, messages] of Object.entries(more)) fields[key] ??= messages
      }
    }
    if (fields !== undefined) throw new ValidationError(fields)
    return data
  }
}

/** Which input an action validates: the route's `schema.create`, `schema.update`, or any subset of it (patch). */
export type InputKind = 'create' | 'update' | 'patch'
