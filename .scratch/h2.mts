import { Doc, Note, openOrm, seed } from '../bench/entity.js'
const orm = await openOrm(':memory:')
await seed(orm, 10)
const em = orm.em.fork() as any
console.log(await em.createQueryBuilder(Doc).select('*').limit(2).execute('all', true))
console.log(await em.createQueryBuilder(Note).select('*').limit(1).execute('all', true))
const meta = orm.getMetadata().find('Doc')!
console.log(meta.props.map((p: any) => [p.name, p.kind, p.runtimeType, p.customType?.constructor?.name, p.fieldNames]))
await orm.close()
