/**
 * Checks of single option values, shared by the plugin's, a route's and resuming's
 * options: each fails fast with a coded error naming the option.
 */
import type { MikroORM } from '@mikro-orm/core'
import { InvalidOption } from './errors.js'

/** A positive integer option, or `fallback` when absent; anything else fails naming the option. */
export function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOption(name, 'must be a positive integer')
  }
  return value
}

/** Check that `orm` looks like an initialised MikroORM instance. */
export function checkOrm (name: string, orm: unknown): MikroORM | undefined {
  if (orm === undefined) return undefined
  const candidate = orm as Partial<MikroORM> | null
  if (candidate === null || typeof candidate !== 'object' || typeof candidate.em?.fork !== 'function' ||
      typeof candidate.getMetadata !== 'function') {
    throw new InvalidOption(name, 'must be an initialised MikroORM instance (await MikroORM.init(...))')
  }
  return orm as MikroORM
}
