/**
 * Rendering committed changes for events, once per change, where they were committed.
 *
 * An event must be what `retrieve` would answer: nested relations, related keys and
 * computed fields included. A row snapshot holds only the entity's own columns, so for
 * every serializer that needs more (see Serializer.needsEntity) the changed rows are
 * loaded again after the commit — one query per entity and relation for a whole batch of
 * changes, never one per row or per subscriber — and each serializer's rendering travels
 * in the message (`views`), to this instance's subscribers and, through the broadcast
 * layer, to every other instance's.
 *
 * The same load gives the rows what filtered-list subscriptions decide on beyond their
 * own columns: the keys of to-many relations (`tags: [1, 4]`) and related scalars
 * (`'author.name': 'Alice'`), after the change and — from what the flush replaced — before it.
 */
import type { EntityMetadata, EntityProperty, MikroORM } from '@mikro-orm/core'
import type { FastifyBaseLogger } from 'fastify'
import { metadataOf } from '../orm-compat.js'
import { relatedKey, type Serializer } from '../serializer.js'
import { plain, type ModelMessage, type Row } from './changes.js'

/** A change on its way out, with what the flush replaced of its to-many relations (their keys before, if known). */
export interface PendingChange {
  message: ModelMessage
  replaced?: Map<string, unknown[] | undefined>
}

/** What events of one entity need beyond its own columns. */
interface Needs {
  meta: EntityMetadata
  serializers: Map<string, Serializer>
  /** To-many relations whose keys rows carry. */
  toMany: Set<string>
  /** To-one relation → the related scalars rows carry as `relation.property`. */
  related: Map<string, RelatedScalars>
  populate: Set<string>
}

/** The related entity of a to-one relation, and which of its scalars rows carry (each: whether it is a date). */
interface RelatedScalars {
  target: EntityMetadata
  props: Map<string, boolean>
}

function isDateProp (meta: EntityMetadata, name: string): boolean {
  return (meta.properties as Record<string, EntityProperty | undefined>)[name]?.runtimeType === 'Date'
}

/** The sorted keys of an initialized collection, else undefined (not known). */
function collectionKeys (collection: unknown): unknown[] | undefined {
  const c = collection as { isInitialized?: () => boolean, getItems?: () => unknown[] } | undefined
  if (c?.getItems === undefined || c.isInitialized?.() !== true) return undefined
  return c.getItems().map(relatedKey).sort((a, b) => typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b)))
}

/** An initialized related entity, else undefined (a bare reference knows only its key). */
function initialized (value: unknown): Record<string, unknown> | undefined {
  const target = typeof (value as { unwrap?: unknown } | null)?.unwrap === 'function' ? (value as { unwrap: () => unknown }).unwrap() : value
  const helper = (target as { __helper?: { __initialized?: boolean } } | null)?.__helper
  return helper !== undefined && helper.__initialized !== false ? target as Record<string, unknown> : undefined
}

/** Which serializers and relation paths the events of each entity need, and the loading that serves them. */
export class EventRendering {
  private readonly needs = new Map<string, Needs>()

  constructor (private readonly orm: MikroORM, private readonly log: FastifyBaseLogger) {}

  /**
   * Events of `className` are shown by `serializers` and decided on `paths` (`tags`,
   * `author.name`): declared by every route on the entity, on every instance alike.
   */
  describe (className: string, serializers: Serializer[], paths: readonly string[]): void {
    const meta = metadataOf(this.orm.getMetadata(), className)
    if (meta === undefined) return
    let needs = this.needs.get(className)
    if (needs === undefined) {
      needs = { meta, serializers: new Map(), toMany: new Set(), related: new Map(), populate: new Set() }
      this.needs.set(className, needs)
    }
    for (const serializer of serializers) {
      if (!serializer.needsEntity) continue
      needs.serializers.set(serializer.key, serializer)
      for (const hint of serializer.populate) needs.populate.add(hint)
    }
    for (const path of paths) {
      const [relation, property] = path.split('.')
      needs.populate.add(relation)
      if (property === undefined) {
        needs.toMany.add(relation)
        continue
      }
      let related = needs.related.get(relation)
      if (related === undefined) {
        const target = metadataOf(this.orm.getMetadata(), (meta.properties as Record<string, EntityProperty>)[relation].type) as EntityMetadata
        needs.related.set(relation, (related = { target, props: new Map() }))
      }
      related.props.set(property, isDateProp(related.target, property))
    }
  }

  /** The to-many relations of `className` whose keys before a flush matter. */
  tracked (className: string): ReadonlySet<string> | undefined {
    return this.needs.get(className)?.toMany
  }

  /** Whether changes of `className` are loaded again before they are published. */
  loads (className: string): boolean {
    const needs = this.needs.get(className)
    // A serializer may need the entity without any relation (a computed or renamed field, a getter).
    return needs !== undefined && (needs.populate.size > 0 || needs.serializers.size > 0)
  }

  /** Put on `row` the relation values of `entity` that are loaded (a delete's row, read before it went). */
  readLoaded (className: string, entity: Record<string, unknown>, row: Row): void {
    const needs = this.needs.get(className)
    if (needs !== undefined) this.readRelations(needs, entity, row)
  }

  /** Load the changed rows of `changes` again and render their views; on failure they go without (no event rather than a wrong one). */
  async render (changes: PendingChange[]): Promise<void> {
    const byEntity = new Map<string, PendingChange[]>()
    for (const change of changes) {
      const { entity, after } = change.message
      if (after === null || !this.loads(entity)) continue
      let list = byEntity.get(entity)
      if (list === undefined) byEntity.set(entity, (list = []))
      list.push(change)
    }
    for (const [className, list] of byEntity) {
      try {
        await this.renderEntity(this.needs.get(className) as Needs, list)
      } catch (err) {
        this.log.error({ err, entity: className }, 'fastify-ws-rest: loading changed rows for their events failed; those events are not sent')
      }
    }
  }

  private async renderEntity (needs: Needs, changes: PendingChange[]): Promise<void> {
    const em = this.orm.em.fork()
    const primaryKey = needs.meta.primaryKeys[0]
    const pks = [...new Set(changes.map((c) => c.message.pk))]
    const rows = await em.find(needs.meta.class, { [primaryKey]: { $in: pks } }, { populate: [...needs.populate] as never })
    const byKey = new Map(rows.map((row) => [String(relatedKey(row)), row as Record<string, unknown>]))
    const oldRelated: Array<{ row: Row, relation: string, key: unknown }> = []
    for (const change of changes) {
      const entity = byKey.get(String(change.message.pk))
      // Deleted again since: its delete follows, and nothing true can be said of it now.
      if (entity === undefined) continue
      const after = change.message.after as Row
      this.readRelations(needs, entity, after)
      // Loaded after the commit, the row may point elsewhere by now (a later write moved it):
      // what subscriptions decide on is the related row this change left it pointing at.
      const moved = new Set<string>()
      for (const relation of needs.related.keys()) {
        const now = entity[relation]
        const key = after[relation]
        if (key === undefined || String(now === null || now === undefined ? null : relatedKey(now)) === String(key)) continue
        if (key === null) for (const prop of (needs.related.get(relation) as RelatedScalars).props.keys()) after[`${relation}.${prop}`] = null
        else { oldRelated.push({ row: after, relation, key }); moved.add(relation) }
      }
      const views: Record<string, unknown> = {}
      for (const serializer of needs.serializers.values()) views[serializer.key] = serializer.shape(entity)
      change.message.views = views
      const before = change.message.before
      if (before === null) continue
      for (const name of needs.toMany) {
        before[name] = change.replaced?.has(name) === true ? change.replaced.get(name) : after[name]
      }
      for (const [relation, { props }] of needs.related) {
        if (before[relation] === after[relation] && moved.has(relation)) {
          oldRelated.push({ row: before, relation, key: before[relation] })
        } else if (before[relation] === after[relation]) {
          for (const prop of props.keys()) before[`${relation}.${prop}`] = after[`${relation}.${prop}`]
        } else if (before[relation] !== null && before[relation] !== undefined) {
          oldRelated.push({ row: before, relation, key: before[relation] })
        } else {
          for (const prop of props.keys()) before[`${relation}.${prop}`] = null
        }
      }
    }
    await this.readOldRelated(em, needs, oldRelated)
  }

  /** Related scalars of rows pointing at another related row than the loaded entity (the change, or a later write, moved it): one query per relation. */
  private async readOldRelated (em: ReturnType<MikroORM['em']['fork']>, needs: Needs, pending: Array<{ row: Row, relation: string, key: unknown }>): Promise<void> {
    const relations = new Set(pending.map((p) => p.relation))
    for (const relation of relations) {
      const { target, props } = needs.related.get(relation) as RelatedScalars
      const mine = pending.filter((p) => p.relation === relation)
      const found = await em.find(target.class, { [target.primaryKeys[0]]: { $in: [...new Set(mine.map((p) => p.key))] } })
      const byKey = new Map(found.map((row) => [String(relatedKey(row)), row as Record<string, unknown>]))
      for (const { row, key } of mine) {
        const related = byKey.get(String(key))
        for (const [name, isDate] of props) row[`${relation}.${name}`] = related === undefined ? null : plain(related[name], isDate)
      }
    }
  }

  private readRelations (needs: Needs, entity: Record<string, unknown>, row: Row): void {
    for (const name of needs.toMany) {
      const keys = collectionKeys(entity[name])
      if (keys !== undefined) row[name] = keys
    }
    for (const [relation, { props }] of needs.related) {
      const value = entity[relation]
      if (value === null || value === undefined) {
        for (const prop of props.keys()) row[`${relation}.${prop}`] = null
        continue
      }
      const related = initialized(value)
      if (related === undefined) continue
      for (const [prop, isDate] of props) row[`${relation}.${prop}`] = plain(related[prop], isDate)
    }
  }
}

