/**
 * How long to wait before the next reconnection attempt: exponential backoff, capped,
 * with jitter so that many clients dropped by one server restart do not all come back
 * in the same millisecond.
 */

/** Reconnection delays (ms). */
export interface ReconnectOptions {
  /** The first delay. Default 250. */
  initialDelay?: number
  /** The largest delay. Default 10,000. */
  maxDelay?: number
  /** Each attempt's delay is the previous one times this. Default 2. */
  factor?: number
  /** Pick each delay at random between half and all of it. Default true. */
  jitter?: boolean
}

export type ReconnectSettings = Required<ReconnectOptions>

export const RECONNECT_DEFAULTS: ReconnectSettings = { initialDelay: 250, maxDelay: 10_000, factor: 2, jitter: true }

/** The options with defaults filled in (`false`: never reconnect); a bad number throws. */
export function reconnectSettings (options: ReconnectOptions | false | undefined): ReconnectSettings | false {
  if (options === false) return false
  const settings = { ...RECONNECT_DEFAULTS, ...withoutUndefined(options ?? {}) }
  for (const name of ['initialDelay', 'maxDelay', 'factor'] as const) {
    const value = settings[name]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new TypeError(`reconnect.${name} must be a finite number >= 0, got ${String(value)}`)
    }
  }
  return settings
}

/** The delay before attempt number `attempt` (0 for the first attempt after a drop). */
export function backoffDelay (attempt: number, settings: ReconnectSettings, random: () => number = Math.random): number {
  const full = Math.min(settings.maxDelay, settings.initialDelay * settings.factor ** attempt)
  // "Equal jitter": half the delay is kept, so retries never come back-to-back.
  return settings.jitter ? full / 2 + random() * full / 2 : full
}

function withoutUndefined<T extends object> (options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>
}
