import { Note, openOrm } from '../bench/entity.js'
const orm = await openOrm(':memory:')
const meta = orm.getMetadata().find('Note')!
console.log(meta.props.map((p: any) => [p.name, p.kind, p.type, p.runtimeType, p.customType?.constructor?.name, p.lazy, p.formula, p.embedded]))
console.log(Object.keys(meta.filters), orm.config.get('filters'))
await orm.close()
