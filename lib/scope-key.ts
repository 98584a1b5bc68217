/**
 * When two connections' scopes (`getQueryset` results) are the same condition, their reads
 * can share one query: the lists of every socket of one tenant, say. A scope is keyed only
 * when it is plain data — objects, arrays, strings, numbers, booleans, null, dates — so
 * that equal keys mean equal SQL. Anything else (a raw() fragment, an entity or reference,
 * a symbol key, a class instance) gives no key, and that request reads alone. Keys equal
 * only for the same key order, which is what a `getQueryset` building its condition
 * the same way for every connection gives.
 */

/** Longest key kept: a scope larger than this reads alone rather than being held as a batch key. */
const MAX_KEY = 4096

/** A string equal for equal plain conditions (key order included), or undefined when the scope cannot be shared. */
export function scopeKey (scope: unknown): string | undefined {
  if (scope === undefined) return ''
  const parts: string[] = []
  return write(scope, parts, 0) && parts.join('').length <= MAX_KEY ? parts.join('') : undefined
}

function write (value: unknown, out: string[], depth: number): boolean {
  if (depth > 32) return false
  if (value === null || typeof value === 'string' || typeof value === 'boolean') {
    out.push(JSON.stringify(value))
    return true
  }
  if (typeof value === 'number') {
    // NaN and ±Infinity would all print as null: not the same condition.
    if (!Number.isFinite(value)) return false
    out.push(String(value))
    return true
  }
  if (typeof value === 'bigint') {
    out.push(`${value}n`)
    return true
  }
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) return false
    out.push(`D${value.toISOString()}`)
    return true
  }
  if (Array.isArray(value)) {
    out.push('[')
    for (const item of value) {
      if (!write(item, out, depth + 1)) return false
      out.push(',')
    }
    out.push(']')
    return true
  }
  if (typeof value !== 'object') return false
  const proto = Object.getPrototypeOf(value)
  if ((proto !== Object.prototype && proto !== null) || Object.getOwnPropertySymbols(value).length > 0) return false
  out.push('{')
  for (const [key, item] of Object.entries(value)) {
    // MikroORM's raw() used as a key is a string naming a fragment that one query consumes.
    if (key.startsWith('[raw]')) return false
    out.push(JSON.stringify(key), ':')
    if (!write(item, out, depth + 1)) return false
    out.push(',')
  }
  out.push('}')
  return true
}
