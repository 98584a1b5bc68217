/**
 * What a model observer publishes: one message per committed change of an observed
 * entity, carrying the row as it was and as it is, in JSON-safe form so it can cross
 * to other server instances. Also the names of the groups model changes go to.
 */
import { ReferenceKind, type EntityMetadata, type EntityName, type MikroORM } from '@mikro-orm/core'

/** A row as plain JSON values, keyed by property name: dates as ISO strings, bigints as strings, relations as their primary key. */
export type Row = Record<string, unknown>

/** The kind of a change. */
export type ChangeKind = 'create' | 'update' | 'delete'

/** A committed change of one row. */
export interface ModelMessage {
  [key: string]: unknown
  kind: 'model'
  /** The entity's class name. */
  entity: string
  change: ChangeKind
  /** The primary key value. */
  pk: unknown
  /** The row before the change (`null` for a create). */
  before: Row | null
  /** The row after the change (`null` for a delete). */
  after: Row | null
  /**
   * The changed object as each serializer with relations or computed fields shows it, by
   * serializer key: rendered once, where the change was committed, for every instance.
   */
  views?: Record<string, unknown>
  /**
   * In an app's own group (`app.wsRest.observe(entity, { groups })`): the row entered the
   * group with this change (`create`) or left it (`delete`), whatever the change itself was,
   * as DCRF's model observer tells the groups of the old and the new row apart.
   */
  groupChange?: 'create' | 'delete'
  /** In an app's own group: the object as that observer's `serializer` shapes it, rendered once per change. */
  groupData?: unknown
}

/** An event an app publishes itself (`app.wsRest.publish`). */
export interface CustomMessage {
  [key: string]: unknown
  kind: 'custom'
  action: string
  status: number
  data: unknown
}

/** Everything a subscription can receive. */
export type GroupMessage = ModelMessage | CustomMessage

/** The row a model event is about (as it is, or as it was for a delete), for object permissions; none for an app's own events. */
export function rowOf (message: GroupMessage): Record<string, unknown> | undefined {
  return message.kind === 'model' ? (message.after ?? message.before ?? undefined) : undefined
}

/** One property value in JSON-safe form. */
export function plain (value: unknown, isDate: boolean): unknown {
  if (value === undefined || value === null) return null
  if (isDate) {
    const date = value instanceof Date ? value : new Date(value as string | number)
    return Number.isNaN(date.getTime()) ? null : date.toISOString()
  }
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Date) return value.toISOString()
  if (typeof value === 'object') {
    // A relation: its primary key (an entity or reference carries it in its metadata helper).
    const helper = (value as { __helper?: { getPrimaryKey: () => unknown } }).__helper
    if (helper !== undefined) return plain(helper.getPrimaryKey(), false)
    return JSON.parse(JSON.stringify(value)) as unknown
  }
  return value
}

/** The properties a row snapshot keeps: scalars, embeddables, and the owning side of to-one relations; never hidden ones. */
function snapshotProps (meta: EntityMetadata): Array<{ name: string, isDate: boolean }> {
  return meta.props
    .filter((p) => p.kind === ReferenceKind.SCALAR || p.kind === ReferenceKind.EMBEDDED ||
      p.kind === ReferenceKind.MANY_TO_ONE || (p.kind === ReferenceKind.ONE_TO_ONE && p.owner === true))
    // Hidden properties (a password hash) never travel in events, not even between servers through Redis.
    .filter((p) => p.persist !== false && p.hidden !== true)
    .map((p) => ({ name: p.name, isDate: p.runtimeType === 'Date' }))
}

/** Builds row snapshots of one entity; its property list is worked out once. */
export class RowReader {
  private readonly props: Array<{ name: string, isDate: boolean }>

  constructor (meta: EntityMetadata) {
    this.props = snapshotProps(meta)
  }

  /** A snapshot of `source` (an entity, or MikroORM's original entity data). */
  read (source: Record<string, unknown>): Row {
    const row: Row = {}
    for (const { name, isDate } of this.props) row[name] = plain(source[name], isDate)
    return row
  }
}

const PREFIX = 'wsrest:'

/** An entity's class name from a `defineEntity` / `EntitySchema` result, a class, or the name itself. */
function nameOf (entity: EntityName<any> | string): string {
  if (typeof entity === 'string') return entity
  if (typeof entity === 'function') return entity.name
  const schema = entity as { meta?: { className?: string }, name?: string }
  const name = schema.meta?.className ?? schema.name
  if (typeof name !== 'string') throw new TypeError('not an entity')
  return name
}

/**
 * Group names of model changes, shared by the observer that publishes and the
 * subscriptions that listen — and by custom actions (`ctx.subscribe(groups.instance(User, 1))`).
 */
export const groups = {
  /** Every change of `entity` (what filtered-list subscriptions listen to). */
  model (entity: EntityName<any> | string): string {
    return `${PREFIX}${nameOf(entity)}`
  },
  /** Changes of one row of `entity` (what instance subscriptions listen to). */
  instance (entity: EntityName<any> | string, pk: unknown): string {
    return `${PREFIX}${nameOf(entity)}:${JSON.stringify(typeof pk === 'bigint' ? pk.toString() : pk)}`
  }
}

/** The class name MikroORM knows `entity` by. */
export function entityName (orm: MikroORM, entity: EntityName<any>): string {
  const meta = orm.getMetadata().find(entity)
  if (meta === undefined) throw new TypeError('not an entity known to the MikroORM instance')
  return meta.className
}

/** An event ready to send: its action, status and already-encoded data. */
export interface Rendered {
  action: string
  status: number
  dataJson: string
}
