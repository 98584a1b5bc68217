/**
 * The smallest entity tests need when the example's User would get in the way:
 * `Item { id, name }` with its input and public schemas.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
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
