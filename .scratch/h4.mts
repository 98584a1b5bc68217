import { defineEntity, MikroORM } from '@mikro-orm/core'
import { SqliteDriver } from '@mikro-orm/sqlite'
const Owner = defineEntity({ name: 'PlainOwner', properties: (p) => ({ id: p.integer().primary().autoincrement(), name: p.string() }) })
const Thing = defineEntity({
  name: 'Thing',
  hooks: { onInit: [() => {}] },
  properties: (p) => ({
    id: p.integer().primary().autoincrement(), title: p.string(), body: p.text(), score: p.float(), count: p.integer(), done: p.boolean(),
    note: p.string().nullable(), archived: p.boolean().default(false), at: p.datetime().length(3), owner: () => p.manyToOne(Owner).nullable()
  })
})
const orm = await MikroORM.init({ driver: SqliteDriver, dbName: ':memory:', entities: [Owner, Thing] })
const meta = orm.getMetadata().find('Thing')!
console.log(meta.props.map((p: any) => [p.name, p.kind, p.type, p.runtimeType, p.customType?.constructor?.name, p.formula, p.persist, p.array]))
console.log(meta.filters)
await orm.close()
