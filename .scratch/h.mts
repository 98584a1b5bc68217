import { Note, openOrm, seed } from '../bench/entity.js'
const orm = await openOrm(':memory:')
await seed(orm, 1000)
const ids = Array.from({ length: 20 }, (_, i) => i * 7 + 1)
async function timeit (name: string, fn: () => Promise<unknown>, n = 3000) {
  for (let i = 0; i < 300; i++) await fn()
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  const us = Number(process.hrtime.bigint() - t0) / 1000 / n
  console.log(name, us.toFixed(1), 'µs')
}
await timeit('find 20 by $in (hydrate)', async () => await orm.em.fork().find(Note, { id: { $in: ids } }))
await timeit('qb execute 20 by $in (plain)', async () => await (orm.em.fork() as any).createQueryBuilder(Note).select('*').where({ id: { $in: ids } }).execute('all', true))
await timeit('find 1 (hydrate)', async () => await orm.em.fork().find(Note, { id: { $in: [5] } }))
await timeit('qb execute 1 (plain)', async () => await (orm.em.fork() as any).createQueryBuilder(Note).select('*').where({ id: { $in: [5] } }).execute('all', true))
await timeit('page 20 find', async () => await orm.em.fork().find(Note, {}, { orderBy: { id: 'asc' }, limit: 20 }))
await timeit('page 20 qb', async () => await (orm.em.fork() as any).createQueryBuilder(Note).select('*').orderBy({ id: 'asc' }).limit(20).execute('all', true))
const row = await (orm.em.fork() as any).createQueryBuilder(Note).select('*').where({ id: 1 }).execute('get', true)
console.log(row, typeof row.createdAt, typeof row.done)
await orm.close()
