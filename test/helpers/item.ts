/**
 * The smallest entity tests need when the example's User would get in the way:
 * `Item { id, name }` with its input and public schemas.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'

export const Item = defineEntity({
  name: 'Item',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string()
  })
})
export type Item = InferEntity<typeof Item>

export const ItemCreate = Type.Object({ name: Type.String({ minLength: 1 }) })
export const ItemPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

/** The Item model options tests declare routes with (create and update validate `{name}`). */
export const itemModel = { entity: Item, schema: { create: ItemCreate, update: ItemCreate, response: ItemPublic } }

/** Create items by other code of the app (a fork of its own, a plain flush); their ids in order. */
export async function seedItems (orm: MikroORM, ...names: string[]): Promise<number[]> {
  const em = orm.em.fork()
  const items = names.map((name) => em.create(Item, { name }))
  await em.flush()
  return items.map((i) => i.id)
}

/** Rename an item by other code of the app. */
export async function renameItem (orm: MikroORM, id: number, name: string): Promise<void> {
  const em = orm.em.fork()
  const item = await em.findOneOrFail(Item, id)
  item.name = name
  await em.flush()
}

/** Delete an item by other code of the app. */
export async function removeItem (orm: MikroORM, id: number): Promise<void> {
  const em = orm.em.fork()
  em.remove(await em.findOneOrFail(Item, id))
  await em.flush()
}
