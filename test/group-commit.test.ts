/**
 * Group commit: creates, updates, patches and deletes of many sockets arriving together
 * are written in one flush — and every socket still gets its own answer: its own object,
 * its own 400 / 404, a unique violation failing only the request that caused it, events
 * published for every committed row. Routes whose writes run the app's code per entity
 * (perform* overrides, lifecycle hooks) are never grouped. Real sockets, a spy on the
 * ORM's query log.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type Permission, type RouteOptions } from '../index.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { spyQueries } from './helpers/database.js'
import { startApp, type Running } from './helpers/server.js'

const Tag = defineEntity({
  name: 'Tag',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    label: p.string().unique(),
    note: p.string().default('')
  })
})
type Tag = InferEntity<typeof Tag>

const TagCreate = Type.Object({ label: Type.String({ minLength: 1 }), note: Type.Optional(Type.String()) })
const TagUpdate = Type.Object({ label: Type.String({ minLength: 1 }), note: Type.String() })
const TagPublic = Type.Object({ id: Type.Integer(), label: Type.String(), note: Type.String() })
const tagModel = { entity: Tag, schema: { create: TagCreate, update: TagUpdate, response: TagPublic } }
const writes = [mixins.create(), mixins.update(), mixins.patch(), mixins.delete(), mixins.retrieve(), mixins.subscribeList()]

const SOCKETS = 30

async function startTags (t: Test, extra: Partial<RouteOptions<Tag>> = {}): Promise<Running & { clients: TestClient[] }> {
  const running = await startApp(t, [Tag], (app) => {
    app.wsRest.route('/tags/', { ...tagModel, actions: writes, ...extra })
  })
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async () => await openClient(t, `${running.base}/tags/`)))
  return { ...running, clients }
}

/** Send one frame on each socket at once, then collect each socket's reply. */
async function together (clients: TestClient[], frame: (i: number) => Record<string, unknown> | undefined): Promise<Array<WireReply | undefined>> {
  const sent = clients.map((c, i) => {
    const f = frame(i)
    if (f !== undefined) c.send({ request_id: i, ...f })
    return f !== undefined
  })
  return await Promise.all(clients.map(async (c, i) => sent[i] ? await c.next() : undefined))
}

const count = (sql: string[], pattern: RegExp): number => sql.filter((q) => pattern.test(q)).length

async function seedTags (running: Running, n: number): Promise<number[]> {
  const em = running.orm.em.fork()
  const tags = Array.from({ length: n }, (_, i) => em.create(Tag, { label: `seed-${i}` }))
  await em.flush()
  return tags.map((tag) => tag.id)
}

t.test('creates of many sockets at once: each gets its own object, in far fewer transactions', async (t) => {
  const running = await startTags(t)
  const sql = spyQueries(running.orm)
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { label: `tag-${i}`, note: `by ${i}` } }))
  const ids = new Set<number>()
  replies.forEach((reply, i) => {
    t.strictSame([reply?.response_status, reply?.data.label, reply?.data.note], [201, `tag-${i}`, `by ${i}`], `socket ${i}: its own tag`)
    ids.add(reply?.data.id)
  })
  t.equal(ids.size, SOCKETS, 'every tag its own id')
  const stored = await running.orm.em.fork().find(Tag, {}, { orderBy: { id: 'asc' } })
  t.strictSame(stored.map((tag) => [tag.id, tag.label]).sort(), replies.map((r) => [r?.data.id, r?.data.label]).sort(), 'the replies are what was stored')
  t.ok(count(sql, /^begin/i) <= SOCKETS / 3, `${SOCKETS} creates ran ${count(sql, /^begin/i)} transactions`)
})

t.test('a unique violation in a grouped flush fails only the requests that caused it, each with its own 400', async (t) => {
  const running = await startTags(t)
  await seedTags(running, 1) // seed-0 exists
  // Sockets 0-9 reuse a taken label or each other's; the rest are fresh.
  const label = (i: number): string => i === 0 ? 'seed-0' : i < 10 ? `dup-${i % 3}` : `fresh-${i}`
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { label: label(i) } }))
  const created = replies.filter((r) => r?.response_status === 201)
  const refused = replies.filter((r) => r?.response_status === 400)
  t.equal(created.length + refused.length, SOCKETS, 'every reply is a 201 or a 400, never a 500')
  t.strictSame(refused.map((r) => r?.errors), refused.map(() => [{ label: ['tag with this label already exists.'] }]))
  t.equal(replies[0]?.response_status, 400, 'the taken label is refused')
  for (let i = 10; i < SOCKETS; i++) t.equal(replies[i]?.response_status, 201, `fresh label ${i} created`)
  const dups = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => replies[i]?.response_status)
  t.equal(dups.filter((s) => s === 201).length, 3, 'each duplicated label created exactly once (dup-0, dup-1, dup-2)')
  t.equal(await running.orm.em.fork().count(Tag, {}), 1 + 3 + (SOCKETS - 10), 'nothing else stored')
})

t.test('patches and updates of many sockets at once: each reply shows its own write; one 400 and one 404 stay alone', async (t) => {
  const running = await startTags(t)
  const ids = await seedTags(running, SOCKETS)
  const sql = spyQueries(running.orm)
  const replies = await together(running.clients, (i) => {
    if (i === 3) return { action: 'patch', pk: ids[i], data: { label: '' } } // blank: 400
    if (i === 4) return { action: 'patch', pk: 999_999, data: { note: 'x' } } // missing: 404
    return i % 2 === 0
      ? { action: 'patch', pk: ids[i], data: { note: `patched ${i}` } }
      : { action: 'update', pk: ids[i], data: { label: `renamed-${i}`, note: `updated ${i}` } }
  })
  replies.forEach((reply, i) => {
    if (i === 3) t.strictSame([reply?.response_status, reply?.errors], [400, [{ label: ['This field may not be blank.'] }]])
    else if (i === 4) t.strictSame([reply?.response_status, reply?.errors], [404, ['Not found']])
    else if (i % 2 === 0) t.strictSame(reply?.data, { id: ids[i], label: `seed-${i}`, note: `patched ${i}` }, `socket ${i} patched`)
    else t.strictSame(reply?.data, { id: ids[i], label: `renamed-${i}`, note: `updated ${i}` }, `socket ${i} updated`)
  })
  const stored = new Map((await running.orm.em.fork().find(Tag, {})).map((tag) => [tag.id, tag]))
  t.equal(stored.get(ids[3])?.label, 'seed-3', 'the refused patch wrote nothing')
  t.equal(stored.get(ids[6])?.note, 'patched 6')
  t.equal(stored.get(ids[7])?.label, 'renamed-7')
  t.ok(count(sql, /^begin/i) <= SOCKETS / 3, `${SOCKETS} changes ran ${count(sql, /^begin/i)} transactions`)
})

t.test('with object permissions (hasObjectPermission) patches and deletes stay grouped; a refused one is a 403 that writes nothing', async (t) => {
  const notLocked: Permission = { hasObjectPermission: (_ctx, _action, object) => !String(object.label).startsWith('locked') }
  const running = await startTags(t, { permissions: [notLocked] })
  const em = running.orm.em.fork()
  const tags = Array.from({ length: SOCKETS }, (_, i) => em.create(Tag, { label: i % 4 === 1 ? `locked-${i}` : `open-${i}` }))
  await em.flush()
  const ids = tags.map((tag) => tag.id)
  const sql = spyQueries(running.orm)
  const replies = await together(running.clients, (i) => i % 3 === 2
    ? { action: 'delete', pk: ids[i] }
    : { action: 'patch', pk: ids[i], data: { note: `patched ${i}` } })
  replies.forEach((reply, i) => {
    if (i % 4 === 1) t.strictSame([reply?.response_status, reply?.errors], [403, ['You do not have permission to perform this action.']], `socket ${i}: refused`)
    else if (i % 3 === 2) t.equal(reply?.response_status, 204, `socket ${i}: deleted`)
    else t.strictSame(reply?.data, { id: ids[i], label: `open-${i}`, note: `patched ${i}` }, `socket ${i}: patched`)
  })
  const stored = new Map((await running.orm.em.fork().find(Tag, {})).map((tag) => [tag.id, tag]))
  ids.forEach((id, i) => {
    if (i % 4 === 1) t.equal(stored.get(id)?.note, '', `refused ${i}: untouched, still there`)
    else if (i % 3 === 2) t.notOk(stored.has(id), `${i}: gone`)
  })
  t.ok(count(sql, /^begin/i) <= SOCKETS / 3, `${SOCKETS} writes with object permissions ran ${count(sql, /^begin/i)} transactions`)
})

t.test('the same row patched by several sockets at once: every patch lands, in order, each reply showing its own', async (t) => {
  const running = await startTags(t)
  const [id] = await seedTags(running, 1)
  const replies = await together(running.clients.slice(0, 5), (i) => ({ action: 'patch', pk: id, data: { note: `n${i}` } }))
  replies.forEach((reply, i) => t.equal(reply?.data.note, `n${i}`, `socket ${i} sees its own note`))
  const stored = await running.orm.em.fork().findOneOrFail(Tag, id)
  t.ok(/^n[0-4]$/.test(stored.note), 'one of them is the final state')
})

t.test('a patch making a label collide fails alone with its 400; the others of the batch are written', async (t) => {
  const running = await startTags(t)
  const ids = await seedTags(running, 10)
  const replies = await together(running.clients.slice(0, 10), (i) => ({
    action: 'patch', pk: ids[i], data: i === 5 ? { label: 'seed-0' } : { note: `ok ${i}` }
  }))
  replies.forEach((reply, i) => {
    if (i === 5) t.strictSame([reply?.response_status, reply?.errors], [400, [{ label: ['tag with this label already exists.'] }]])
    else t.strictSame([reply?.response_status, reply?.data.note], [200, `ok ${i}`])
  })
  t.equal((await running.orm.em.fork().findOneOrFail(Tag, ids[5])).label, 'seed-5')
})

t.test('deletes of many sockets at once: 204 each, a missing row 404 alone; rows gone', async (t) => {
  const running = await startTags(t)
  const ids = await seedTags(running, SOCKETS)
  const replies = await together(running.clients, (i) => ({ action: 'delete', pk: i === 7 ? 888_888 : ids[i] }))
  replies.forEach((reply, i) => t.equal(reply?.response_status, i === 7 ? 404 : 204, `socket ${i}`))
  t.strictSame((await running.orm.em.fork().find(Tag, {})).map((tag) => tag.id), [ids[7]], 'only the row nobody deleted is left')
})

t.test('grouped writes publish one event per committed row, after the commit', async (t) => {
  const running = await startTags(t)
  const watcher = await openClient(t, `${running.base}/tags/`)
  watcher.send({ action: 'subscribe_list', request_id: 'all' })
  t.equal((await watcher.next()).response_status, 201)
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { label: i === 0 ? 'same' : i === 1 ? 'same' : `t${i}` } }))
  const created = replies.filter((r) => r?.response_status === 201).map((r) => r?.data.id as number)
  t.equal(created.length, SOCKETS - 1)
  const events = await watcher.take(created.length)
  t.strictSame(events.map((e) => e.data.id as number).sort((a, b) => a - b), [...created].sort((a, b) => a - b),
    'exactly the committed rows, each once (the failed shared flush published nothing)')
})

t.test('routes running their own code per entity are not grouped: performCreate runs once per request', async (t) => {
  let calls = 0
  const running = await startTags(t, {
    performCreate: (ctx, data) => { calls++; return ctx.em.create(Tag, { ...(data as object), note: 'made by performCreate' } as never) }
  })
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { label: i < 2 ? 'clash' : `p${i}` } }))
  t.equal(calls, SOCKETS, 'once per request, even with a unique violation in the lot')
  t.equal(replies.filter((r) => r?.response_status === 201).length, SOCKETS - 1)
  t.ok(replies.every((r) => r?.response_status !== 201 || r.data.note === 'made by performCreate'))
})
