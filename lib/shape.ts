/**
 * Shape a value by a TypeBox schema: keep exactly the properties the schema declares.
 *
 * One mechanism serves both directions: the response schema shapes what leaves the
 * server (a password hash on the entity never reaches a reply), and the input schema
 * strips undeclared keys from `data` before it is written (so `id`, `password` or a
 * `__proto__` key sent by a client is never assigned to an entity). The shaper is
 * compiled once per schema at route registration, not per message.
 */
import { Kind, type TSchema } from '@sinclair/typebox'

/** A compiled shaper: returns a new plain value holding only what the schema declares. */
export type Shaper = (value: unknown) => unknown

const identity: Shaper = (value) => value

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

/** How a shaper treats leaves. */
export interface ShapeOptions {
  /** Trim leading/trailing white space of strings whose schema does not say `trim: false` (input only). */
  trimStrings?: boolean
}

/** Compile a shaper for `schema`. Non-object, non-array schemas pass values through (Dates become ISO strings). */
export function compileShaper (schema: TSchema, options: ShapeOptions = {}): Shaper {
  const kind = schema[Kind]
  if (kind === 'Object' && isObject(schema.properties)) {
    const entries = Object.entries(schema.properties as Record<string, TSchema>)
      .map(([key, sub]) => [key, compileShaper(sub, options)] as const)
    return (value) => {
      if (!isObject(value)) return value
      const out: Record<string, unknown> = {}
      for (const [key, shape] of entries) {
        const v = value[key]
        // An absent optional property stays absent rather than becoming `null`.
        if (v !== undefined) out[key] = shape(v)
      }
      return out
    }
  }
  if (kind === 'Array' && schema.items !== undefined) {
    const item = compileShaper(schema.items as TSchema, options)
    return (value) => Array.isArray(value) ? value.map(item) : value
  }
  if (kind === 'Union' || kind === 'Intersect' || kind === 'Unsafe' || kind === 'Any' || kind === 'Unknown') {
    return identity
  }
  if (kind === 'String' && options.trimStrings === true && schema.trim !== false) {
    return (value) => typeof value === 'string' ? value.trim() : value
  }
  return (value) => value instanceof Date ? value.toISOString() : value
}
