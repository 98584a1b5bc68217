/**
 * Cursor (keyset) pagination: pages are positions in the list's ordering, not offsets,
 * so rows inserted or deleted between requests never make a page skip or repeat a row.
 *
 * A cursor is opaque to the client: base64url JSON of the ordering, the position's
 * values and the direction, signed with an HMAC so a tampered or made-up cursor is a 400
 * (it could otherwise steer the query), never a 500.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { FilterQuery } from '@mikro-orm/core'
import { InvalidOption, ValidationError } from './errors.js'
import type { OrderStep } from './filtering.js'

/** Options of a cursor-paginated list. */
export interface CursorOptions {
  /** Page size when the client sends none (or a bad one). Default 20. */
  defaultLimit?: number
  /** Largest page a client may ask for. Default 100. */
  maxLimit?: number
  /**
   * Key that signs cursors. Default: random per process, so cursors do not survive a
   * restart and are not valid on another instance; set it when several instances serve one list.
   */
  secret?: string | Buffer
}

/** Where a page starts: after (or, going back, before) the row with these ordering values. */
export interface CursorPosition {
  order: OrderStep[]
  values: unknown[]
  /** Going back: the rows before the position, nearest last. */
  back: boolean
  /** The row at the position itself is part of the page (a page whose rows all went away points back at its own position). */
  inclusive: boolean
}

const SIGNATURE_BYTES = 16

function invalidCursor (): ValidationError {
  return ValidationError.field('cursor', 'Invalid cursor.')
}

function isScalar (value: unknown): boolean {
  return value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean'
}

/** Encodes, verifies and turns cursors into keyset conditions. */
export class CursorCodec {
  private readonly secret: Buffer

  constructor (secret: string | Buffer | undefined) {
    if (secret !== undefined && (typeof secret !== 'string' && !Buffer.isBuffer(secret))) {
      throw new InvalidOption('secret', 'must be a string or a Buffer')
    }
    this.secret = secret === undefined ? randomBytes(32) : Buffer.from(secret)
  }

  private sign (payload: string): Buffer {
    return createHmac('sha256', this.secret).update(payload).digest().subarray(0, SIGNATURE_BYTES)
  }

  /** The opaque string for `position`. */
  encode (position: CursorPosition): string {
    const payload = Buffer.from(JSON.stringify([
      position.order.map((s) => (s.desc ? '-' : '') + s.field),
      position.values.map((v) => (v instanceof Date ? v.toISOString() : v)),
      position.back ? 1 : 0,
      position.inclusive ? 1 : 0
    ])).toString('base64url')
    return `${payload}.${this.sign(payload).toString('base64url')}`
  }

  /** The position in a client's cursor; 400 keyed `cursor` if it is malformed or was not made here. */
  decode (cursor: unknown): CursorPosition {
    if (typeof cursor !== 'string' || cursor.length > 4096) throw invalidCursor()
    const [payload, signature, extra] = cursor.split('.')
    if (payload === undefined || signature === undefined || extra !== undefined) throw invalidCursor()
    const given = Buffer.from(signature, 'base64url')
    if (given.length !== SIGNATURE_BYTES || !timingSafeEqual(given, this.sign(payload))) throw invalidCursor()
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    } catch {
      throw invalidCursor()
    }
    if (!Array.isArray(parsed) || parsed.length !== 4) throw invalidCursor()
    const [order, values, back, inclusive] = parsed as unknown[]
    if (!Array.isArray(order) || !Array.isArray(values) || order.length === 0 || order.length !== values.length ||
        !order.every((o) => typeof o === 'string') || !values.every(isScalar)) {
      throw invalidCursor()
    }
    return {
      order: (order as string[]).map((o) => o.startsWith('-') ? { field: o.slice(1), desc: true } : { field: o, desc: false }),
      values,
      back: back === 1,
      inclusive: inclusive === 1
    }
  }
}

/** Where-part of one field: `{ field: condition }`, or nested for a path through a relation. */
export type FieldPlacer = (field: string, condition: unknown) => Record<string, unknown>

const flat: FieldPlacer = (field, condition) => ({ [field]: condition })

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
}

/**
 * Add `part` to `into`, merging the objects under a shared key: two fields of one
 * relation (`{ author: { name: … } }`, `{ author: { born: … } }`) make one nested
 * condition instead of the second replacing the first.
 */
function mergeInto (into: Record<string, unknown>, part: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(part)) {
    const existing = into[key]
    if (isPlainObject(existing) && isPlainObject(value)) mergeInto(existing, value)
    else into[key] = value
  }
}

/**
 * The keyset condition "after `position`" in its ordering (or "before", going back):
 * (a > va) OR (a = va AND b > vb) OR … with each comparison flipped for a descending step.
 * `place` puts a condition on a field (a path's goes under its relation).
 */
export function keysetCondition (
  position: CursorPosition,
  toValue: (field: string, value: unknown) => unknown,
  place: FieldPlacer = flat
): FilterQuery<any> {
  const { order, values, back, inclusive } = position
  const branches: Array<Record<string, unknown>> = []
  for (let k = 0; k < order.length; k++) {
    const branch: Record<string, unknown> = {}
    for (let i = 0; i < k; i++) mergeInto(branch, place(order[i].field, toValue(order[i].field, values[i])))
    // Greater-than when ascending and going forward, or descending and going back.
    const greater = order[k].desc === back
    const last = k === order.length - 1
    const op = greater ? (last && inclusive ? '$gte' : '$gt') : (last && inclusive ? '$lte' : '$lt')
    mergeInto(branch, place(order[k].field, { [op]: toValue(order[k].field, values[k]) }))
    branches.push(branch)
  }
  return branches.length === 1 ? branches[0] : { $or: branches }
}
