/**
 * Reads without entities: where a reply shows only the row's own columns, retrieves and
 * lists read plain rows (the query builder's mapped results: property names, dates and
 * booleans converted) instead of hydrating entities into an identity map. Hydration —
 * creating each entity, registering it, keeping its snapshot for change tracking — was
 * most of MikroORM's cost of a coalesced read, and a reply shaped from its own columns never
 * needs any of it.
 *
 * Only where a plain row and an entity are sure to shape alike: every property the
 * response schema declares is a persisted column of a plain type (string, number,
 * boolean, Date; no custom type, no formula) or the key of a to-one relation the row holds;
 * the entity has no MikroORM filters (which `em.find` applies and a query builder would
 * not). Anything else — relations shown as objects, computed fields, getters — reads
 * entities as before.
 */
import { ReferenceKind, type EntityMetadata, type EntityName, type EntityProperty, type FilterQuery, type MikroORM } from '@mikro-orm/core'
import type { TSchema } from '@sinclair/typebox'
import type { Row } from './observer/changes.js'
import { metadataOf } from './orm-compat.js'

const PLAIN_RUNTIME_TYPES = new Set(['string', 'number', 'boolean', 'Date'])

/** A column whose mapped value is what the entity holds. */
function plainColumn (prop: EntityProperty): boolean {
  return prop.kind === ReferenceKind.SCALAR && prop.customType === undefined && prop.formula === undefined &&
    prop.persist !== false && prop.array !== true && PLAIN_RUNTIME_TYPES.has(prop.runtimeType)
}

/** A to-one relation whose key is a column of this row, and a single plain one (what a scalar-declared relation shows). */
function keyOnRow (prop: EntityProperty, orm: MikroORM): boolean {
  const owning = prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner === true)
  if (!owning || prop.persist === false || prop.fieldNames?.length !== 1) return false
  const target = metadataOf(orm.getMetadata(), prop.type)
  if (target === undefined || target.primaryKeys.length !== 1) return false
  const key = target.properties[target.primaryKeys[0]] as EntityProperty | undefined
  return key !== undefined && plainColumn(key) && (key.runtimeType === 'number' || key.runtimeType === 'string')
}

/** Whether entities of `meta` can be read as plain rows for a reply shaped by `schema` (see the module's comment). */
export function readsPlain (orm: MikroORM, meta: EntityMetadata, schema: TSchema): boolean {
  if (Object.keys(meta.filters ?? {}).length > 0 || Object.keys(orm.config.get('filters') ?? {}).length > 0) return false
  const properties = (schema as { type?: unknown, properties?: Record<string, unknown> }).properties
  if ((schema as { type?: unknown }).type !== 'object' || properties === undefined) return false
  return Object.keys(properties).every((name) => {
    const prop = (meta.properties as Record<string, EntityProperty | undefined>)[name]
    return prop !== undefined && (plainColumn(prop) || keyOnRow(prop, orm))
  })
}

interface QueryBuilder {
  select: (fields: string) => QueryBuilder
  where: (condition: object) => QueryBuilder
  orderBy: (order: object) => QueryBuilder
  limit: (n: number) => QueryBuilder
  offset: (n: number) => QueryBuilder
  execute: (method: 'all', options: unknown) => Promise<Row[]>
}

/** Plain rows of one entity, read in a fresh EntityManager (no identity map is filled). */
export class PlainRows {
  constructor (private readonly orm: MikroORM, private readonly entity: EntityName<any>) {}

  async find (where: FilterQuery<any>, options: { orderBy?: object, limit?: number, offset?: number } = {}): Promise<Row[]> {
    const em = this.orm.em.fork() as unknown as { createQueryBuilder: (entity: EntityName<any>) => QueryBuilder }
    let qb = em.createQueryBuilder(this.entity).select('*').where(where as object)
    if (options.orderBy !== undefined) qb = qb.orderBy(options.orderBy)
    if (options.limit !== undefined) qb = qb.limit(options.limit)
    if (options.offset !== undefined && options.offset > 0) qb = qb.offset(options.offset)
    // MikroORM 6 takes `mapResults` as a boolean, MikroORM 7 an options object with it; an object is true to 6.
    return await qb.execute('all', { mapResults: true })
  }

  /** Whether the ORM's EntityManager has a query builder (SQL drivers). */
  static available (orm: MikroORM): boolean {
    return typeof (orm.em as unknown as { createQueryBuilder?: unknown }).createQueryBuilder === 'function'
  }
}
