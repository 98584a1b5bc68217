/**
 * What removing a row takes with it, made visible to the unit of work.
 *
 * The database can cascade a delete or drop a many-to-many link on its own, but then the
 * ORM — and so every subscriber — never hears of the rows that went with it. Loading the
 * relations the ORM cascades the removal to (`Cascade.Remove`, orphan removal; to-many and
 * to-one alike) turns each of those rows into a change of its own (a published `delete`,
 * with the row its filtered-list subscribers decide on), and taking the removed
 * row out of its many-to-many owners' collections turns each owner into a published
 * `update`. The plan is worked out once per entity, at route declaration.
 */
import { Cascade, ReferenceKind, type EntityManager, type EntityMetadata, type EntityProperty, type MetadataStorage } from '@mikro-orm/core'
import { metadataOf } from './orm-compat.js'

export interface RemovalPlan {
  /** The entity's owning many-to-many relations: what a change may replace as a whole. */
  readonly collections: readonly string[]
  /** Load what the removal of `entities` takes with it (one query per relation for all of them). */
  load: (em: EntityManager, entities: object[]) => Promise<void>
  /** Take loaded `entities` out of their many-to-many owners' collections: only for rows that are really removed. */
  detach: (entities: object[]) => void
}

const TO_MANY = new Set<string>([ReferenceKind.ONE_TO_MANY, ReferenceKind.MANY_TO_MANY])
const TO_ONE = new Set<string>([ReferenceKind.MANY_TO_ONE, ReferenceKind.ONE_TO_ONE])

function cascadesRemoval (prop: EntityProperty): boolean {
  const cascade = prop.cascade ?? []
  return prop.orphanRemoval === true || cascade.includes(Cascade.REMOVE) || cascade.includes(Cascade.ALL)
}

function ownedCollections (meta: EntityMetadata): string[] {
  return meta.props.filter((p) => p.kind === ReferenceKind.MANY_TO_MANY && p.owner === true).map((p) => p.name)
}

/**
 * The removal plan of `meta`'s entity. `relationPaths` are the related values the route's
 * filters read (`tags`, `author.name`): loaded too, so the delete's row still carries them
 * and a filtered-list subscriber learns that a row it had is gone.
 */
export function removalPlan (metadata: MetadataStorage, meta: EntityMetadata, relationPaths: readonly string[]): RemovalPlan {
  const populate = new Set<string>()
  const detach: Array<{ name: string, ownerSide: string }> = []
  for (const prop of meta.props) {
    // A to-one the removal cascades to is removed by the ORM even as a bare reference, but
    // then its delete's row has no columns: a filtered-list subscriber could not tell it had it.
    if ((TO_MANY.has(prop.kind) || TO_ONE.has(prop.kind)) && cascadesRemoval(prop)) {
      populate.add(prop.name)
      // The cascaded rows' own many-to-many keys, for their filtered subscribers.
      const target = metadataOf(metadata, prop.type)
      for (const name of target === undefined ? [] : ownedCollections(target)) populate.add(`${prop.name}.${name}`)
    } else if (prop.kind === ReferenceKind.MANY_TO_MANY && prop.owner !== true && typeof prop.mappedBy === 'string') {
      populate.add(`${prop.name}.${prop.mappedBy}`)
      detach.push({ name: prop.name, ownerSide: prop.mappedBy })
    }
  }
  for (const path of relationPaths) populate.add(path.split('.')[0])
  const hints = [...populate]
  return {
    collections: ownedCollections(meta),
    async load (em, entities) {
      if (hints.length === 0 || entities.length === 0) return
      await em.populate(entities, hints as never)
    },
    detach (entities) {
      for (const { name, ownerSide } of detach) {
        for (const entity of entities) {
          const owners = (entity as Record<string, { getItems: () => object[] }>)[name].getItems()
          for (const owner of owners) (owner as Record<string, { remove: (item: object) => void }>)[ownerSide].remove(entity)
        }
      }
    }
  }
}
