/**
 * Limit/offset pagination as DCRF/DRF's LimitOffsetPagination reads it: numbers or
 * numeric strings; a bad or non-positive limit falls back to the default, a bad or
 * negative offset to 0, and the limit is capped at the maximum.
 */
import { InvalidOption } from './errors.js'

/** Options of a paginated or streamed list. */
export interface PaginationOptions {
  /** Page size when the client sends none (or a bad one). Default 20. */
  defaultLimit?: number
  /** Largest page a client may ask for. Default 100. */
  maxLimit?: number
}

/** A resolved page window. */
export interface Page {
  limit: number
  offset: number
}

/** A page of results in the protocol's shape. */
export interface PageData<T> {
  count: number
  results: T[]
  limit: number
  offset: number
}

/**
 * An integer from a number or a numeric string, clamped to the safe range (a huge
 * offset still means "past the end", a huge limit still means "the maximum"); undefined
 * when the value is not an integer at all.
 */
function toInteger (value: unknown): number | undefined {
  let n: number
  if (typeof value === 'number') n = value
  else if (typeof value === 'string' && /^\s*[-+]?\d+\s*$/.test(value)) n = Number(value)
  else return undefined
  if (!Number.isInteger(n)) return undefined
  return Math.max(Number.MIN_SAFE_INTEGER, Math.min(n, Number.MAX_SAFE_INTEGER))
}

/** A paginator fixed at registration: checks its options once, then resolves pages per message. */
export class LimitOffsetPaginator {
  readonly defaultLimit: number
  readonly maxLimit: number

  constructor (options: PaginationOptions = {}) {
    const { defaultLimit = 20, maxLimit = Math.max(100, defaultLimit) } = options
    if (!Number.isSafeInteger(defaultLimit) || defaultLimit < 1) {
      throw new InvalidOption('defaultLimit', 'must be a positive integer')
    }
    if (!Number.isSafeInteger(maxLimit) || maxLimit < defaultLimit) {
      throw new InvalidOption('maxLimit', 'must be an integer no smaller than defaultLimit')
    }
    this.defaultLimit = defaultLimit
    this.maxLimit = maxLimit
  }

  /** The page a message asks for, from its `limit` and `offset` arguments. */
  page (args: Record<string, unknown>): Page {
    const limit = toInteger(args.limit)
    const offset = toInteger(args.offset)
    return {
      limit: limit === undefined || limit <= 0 ? this.defaultLimit : Math.min(limit, this.maxLimit),
      offset: offset === undefined || offset < 0 ? 0 : offset
    }
  }
}
