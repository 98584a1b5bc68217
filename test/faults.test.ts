/**
 * Faults of the server's dependencies under real actions, over real sockets.
 *
 * The database failing in the middle of an action — a unique violation (also at COMMIT,
 * with a deferred constraint), a row locked by another transaction, the connection
 * killed (`pg_terminate_backend`) while the action is held inside a perform* hook — must
 * give an error reply with nothing internal in it, roll the transaction back, publish
 * **no event**, and leave the socket usable. test/database-errors.test.ts pins the
 * replies; here a subscriber of the model and of the row proves that nothing was
 * published: the failed write happens first, then a successful one, and the subscriber's
 * next events must be the successful write's. (Events go out in commit order, so an
 * event of the failed write would have arrived first.)
 *
 * Redis going away: two app instances share a RedisLayer through a TCP proxy that the test
 * cuts. Meanwhile both answer their actions and their local subscribers get their local
 * events; once the proxy is back, a change through one reaches a subscriber on the other.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import type { SqlEntityManager } from '@mikro-orm/sqlite' // @mikro-orm/knex's, shared by both SQL drivers
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { buildApp } from '../example/app.js'
import { User } from '../example/user.js'
import wsRest, { action, groups, mixins, type ActionContext } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { deferred, eventually, gate, within, type Gate, type Teardown } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { createDatabase, dialect } from './helpers/database.js'
import { redisSkip } from './helpers/redis-optional.js'

const CONFLICT = ['Conflict: the object was changed by someone else.']
const INTERNAL = ['Internal server error']
const TAKEN = [{ name: ['slot with this name already exists.'] }]
const pgOnly = { skip: dialect === 'sqlite' ? 'needs PostgreSQL (a connection to kill, deferred constraints): set DATABASE_URL' : false }
/** Why the Redis test is skipped, if it is (a missing Redis fails the file under REQUIRE_SERVICES=1). */
const noRedis = await redisSkip()

/** A row with a unique column, so that a write can violate a constraint. */
const Slot = defineEntity({
  name: 'Slot',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string().unique()
  })
})
type Slot = InferEntity<typeof Slot>
const SlotInput = Type.Object({ name: Type.String({ minLength: 1 }) })
const SlotPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const slotModel = { entity: Slot, schema: { create: SlotInput, update: SlotInput, response: SlotPublic } }

/** A perform* hook held once at a gate, with the PostgreSQL backend its transaction runs on. */
interface Hold { gate: Gate, pid: Promise<number> }

interface Setup {
  /** The app's ORM. */
  orm: MikroORM
  /** A second, independent connection to the same database (another process, say). */
  other: MikroORM
  /** A socket on `/slots/`: the plain mixins (grouped writes) and the custom actions. */
  writer: TestClient
  /** A socket on `/held/`, whose performCreate / performUpdate can be held at a gate. */
  held: TestClient
  /** Subscribed on `/slots/` to the whole model (`list`) and to row 1 (`one`). */
  subscriber: TestClient
  /** Arm the next performCreate or performUpdate on `/held/` to stop at a gate. */
  hold: (kind: 'create' | 'update') => Hold
}

/** The PostgreSQL backend (pid) running `em`'s transaction. */
async function backendPid (em: ActionContext['em']): Promise<number> {
  const [row] = await (em as SqlEntityManager).execute<Array<{ pid: number }>>('select pg_backend_pid() as pid')
  return row.pid
}

/**
 * An app on a database of its own holding slots `one` (id 1) and `two` (id 2), a second
 * connection to that database, and the three sockets of {@link Setup}.
 */
async function setup (t: Teardown): Promise<Setup> {
  const database = await createDatabase(t, { reopenable: true })
  const other = await database.open([Slot])
  await updateSchema(other)
  if (dialect === 'postgresql') {
    // PostgreSQL waits for a row lock forever by default; the app's sessions give up after
    // 300 ms instead (set before the app's ORM connects, so every connection of its pool has it).
    const [{ name }] = await (other.em.fork() as SqlEntityManager).execute<Array<{ name: string }>>('select current_database() as name')
    await (other.em.fork() as SqlEntityManager).execute(`alter database "${name}" set lock_timeout = '300ms'`)
  }
  const orm = await database.open([Slot])
  if (dialect === 'sqlite') {
    // SQLite: the app's writes give up on a locked database after 300 ms too. MikroORM 7's
    // better-sqlite3 would otherwise wait its default 5 s, and synchronously: the whole
    // process, the other transaction's holder included, stands still meanwhile.
    await (orm.em.fork() as SqlEntityManager).execute('pragma busy_timeout = 300')
  }
  const seed = orm.em.fork()
  seed.create(Slot, { name: 'one' })
  seed.create(Slot, { name: 'two' })
  await seed.flush()

  const armed: Partial<Record<'create' | 'update', { gate: Gate, pid: (pid: number) => void }>> = {}
  /** Stop at the armed gate, if any, after noting the transaction's backend. */
  const stopIfArmed = async (kind: 'create' | 'update', em: ActionContext['em']): Promise<void> => {
    const hold = armed[kind]
    if (hold === undefined) return
    delete armed[kind]
    hold.pid(dialect === 'postgresql' ? await backendPid(em) : 0)
    await hold.gate.wait()
  }

  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { orm })
  app.wsRest.route('/slots/', {
    ...slotModel,
    actions: [
      mixins.create(), mixins.patch(), mixins.subscribeList(), mixins.subscribeInstance(),
      // Two rows in one transaction, flushed one after the other: the first is written when the second fails.
      action('create_two', {
        transaction: true,
        schema: Type.Object({ first: Type.String(), second: Type.String() })
      }, async (ctx, { first, second }) => {
        const a = ctx.em.create(Slot, { name: first })
        await ctx.em.flush()
        const b = ctx.em.create(Slot, { name: second })
        await ctx.em.flush()
        return { status: 201, data: ctx.model!.serialize([a, b]) }
      }),
      // Rename two rows, one flush each: the first is written when the second's row is locked.
      action('rename_two', {
        transaction: true,
        schema: Type.Object({ a: Type.Integer(), b: Type.Integer(), suffix: Type.String() })
      }, async (ctx, { a, b, suffix }) => {
        const renamed: Slot[] = []
        for (const pk of [a, b]) {
          const slot = await ctx.em.findOneOrFail(Slot, pk)
          slot.name += suffix
          await ctx.em.flush()
          renamed.push(slot)
        }
        return { data: ctx.model!.serialize(renamed) }
      })
    ]
  })
  app.wsRest.route('/held/', {
    ...slotModel,
    async performCreate (ctx, data) {
      // Held before anything is written: the plugin's flush comes after the gate.
      await stopIfArmed('create', ctx.em)
      return ctx.em.create(Slot, data)
    },
    async performUpdate (ctx, entity, data) {
      ctx.em.assign(entity, data)
      // Held after the row is written inside the transaction: only the COMMIT is left.
      if (armed.update !== undefined) await ctx.em.flush()
      await stopIfArmed('update', ctx.em)
    },
    actions: [mixins.create(), mixins.patch()]
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const subscriber = await openClient(t, `${base}/slots/`)
  if ((await subscriber.ask({ action: 'subscribe_list', request_id: 'list' })).response_status !== 201) throw new Error('subscribe_list failed')
  if ((await subscriber.ask({ action: 'subscribe_instance', request_id: 'one', pk: 1 })).response_status !== 201) throw new Error('subscribe_instance failed')

  return {
    orm,
    other,
    writer: await openClient(t, `${base}/slots/`),
    held: await openClient(t, `${base}/held/`),
    subscriber,
    hold: (kind) => {
      const g = gate()
      const pid = deferred<number>()
      armed[kind] = { gate: g, pid: pid.resolve }
      return { gate: g, pid: pid.promise }
    }
  }
}

/** The names in the database, by id. */
async function names (orm: MikroORM): Promise<string[]> {
  return (await orm.em.fork().find(Slot, {}, { orderBy: { id: 'asc' } })).map((slot) => slot.name)
}

type Event = [requestId: unknown, action: unknown, data: unknown]

/** The subscriber's next `count` messages as [request_id, action, data], in a stable order. */
async function nextEvents (subscriber: TestClient, count: number): Promise<Event[]> {
  return sortEvents((await subscriber.take(count)).map((e) => [e.request_id, e.action, e.data]))
}

function sortEvents (events: Event[]): Event[] {
  return events.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)))
}

/** The events a successful patch of row 1 sends the subscriber: on its list and on its row. */
function row1Updated (name: string): Event[] {
  return sortEvents([['list', 'update', { id: 1, name }], ['one', 'update', { id: 1, name }]])
}

function nothingInternal (t: Test, reply: WireReply): void {
  t.notMatch(JSON.stringify(reply.errors), /select|update|insert|SQL|constraint|duplicate|lock|terminat|at \w+ \(/i, 'no SQL, constraint or stack in the reply')
}

/** Kill a backend of the app's pool, as a database restart or a network cut would. */
async function terminate (other: MikroORM, pid: number): Promise<void> {
  const [row] = await (other.em.fork() as SqlEntityManager).execute<Array<{ killed: boolean }>>('select pg_terminate_backend(?) as killed', [pid])
  if (row.killed !== true) throw new Error(`backend ${pid} was not terminated`)
}

t.test('a unique violation in the second write of a transactional action → 400; its first row rolled back, no event published, and the socket works on', async (t) => {
  const { orm, writer, subscriber } = await setup(t)
  const failed = await writer.request('create_two', { first: 'fresh', second: 'one' })
  t.strictSame([failed.response_status, failed.errors, failed.data], [400, TAKEN, null])
  t.strictSame(await names(orm), ['one', 'two'], 'the first row, inserted inside the transaction, is gone')

  const ok = await writer.request('create_two', { first: 'fresh', second: 'fresher' })
  t.equal(ok.response_status, 201, 'the same socket\'s next action goes through')
  const [fresh, fresher] = ok.data as Array<{ id: number, name: string }>
  t.strictSame(await nextEvents(subscriber, 2), sortEvents([['list', 'create', fresh], ['list', 'create', fresher]]),
    'the subscriber\'s next events are the successful action\'s: the failed one published nothing')
})

t.test('creates of several sockets with one taken name → only that one fails (400); each other row is published once, the failed flush published nothing', async (t) => {
  const { orm, writer, subscriber } = await setup(t)
  const writers = [writer, ...await Promise.all([1, 2, 3, 4].map(async () => await openClient(t, writer.socket.url)))]
  const wanted = ['a1', 'a2', 'one', 'a3', 'a4'] // 'one' is taken
  // Sent together, so that they can share one group-commit flush: that flush fails as a
  // whole and each request is run again alone.
  const replies = await Promise.all(writers.map(async (w, i) => await w.request('create', { data: { name: wanted[i] } })))
  t.strictSame(replies.map((r) => r.response_status), [201, 201, 400, 201, 201])
  t.strictSame(replies[2].errors, TAKEN, 'the culprit gets the field error, nothing internal')
  t.strictSame((await names(orm)).sort(), ['a1', 'a2', 'a3', 'a4', 'one', 'two'])

  const created = replies.filter((r) => r.response_status === 201).map((r) => r.data as { id: number, name: string })
  t.strictSame(await nextEvents(subscriber, 4), sortEvents(created.map((row) => ['list', 'create', row])),
    'one create event per written row')
  const ok = await writers[2].request('patch', { pk: 1, data: { name: 'after' } })
  t.equal(ok.response_status, 200, 'the culprit\'s socket works on')
  t.strictSame(await nextEvents(subscriber, 2), row1Updated('after'), 'no duplicate and no event of the refused row came in between')
})

t.test('a row locked by another transaction → 409 for a two-row action (its first write rolled back) and for a grouped patch; no event published, and the socket works on', async (t) => {
  const { orm, other, writer, subscriber } = await setup(t)
  // Another connection writes row 2 and keeps its transaction open (SQLite: the whole database is write-locked).
  const holder = other.em.fork() as SqlEntityManager
  await holder.begin()
  t.teardown(async () => { if (holder.isInTransaction()) await holder.rollback() })
  await holder.execute("update slot set name = 'held' where id = 2")

  const two = await writer.request('rename_two', { a: 1, b: 2, suffix: '-x' })
  t.strictSame([two.response_status, two.errors, two.data], [409, CONFLICT, null], 'the two-row action: 409')
  nothingInternal(t, two)
  const patch = await writer.request('patch', { pk: 2, data: { name: 'mine' } })
  t.strictSame([patch.response_status, patch.errors, patch.data], [409, CONFLICT, null], 'a patch of the locked row: 409')
  nothingInternal(t, patch)

  await holder.rollback()
  t.strictSame(await names(orm), ['one', 'two'], 'row 1 (on PostgreSQL, renamed before row 2 was reached) is as it was')
  const ok = await writer.request('patch', { pk: 1, data: { name: 'after' } })
  t.strictSame([ok.response_status, ok.data], [200, { id: 1, name: 'after' }], 'the same socket\'s next action goes through')
  t.strictSame(await nextEvents(subscriber, 2), row1Updated('after'),
    'the subscriber\'s next events are the successful patch\'s, not "one-x"')
})

t.test('a deferred unique constraint failing at COMMIT → an error reply without internals; nothing written, no event published', pgOnly, async (t) => {
  const { orm, other, writer, subscriber } = await setup(t)
  // The constraint is checked at COMMIT, after every flush of the transaction has succeeded
  // (and the observer holds their changes, waiting for the commit).
  await (other.em.fork() as SqlEntityManager).execute('alter table slot drop constraint slot_name_unique')
  await (other.em.fork() as SqlEntityManager).execute('alter table slot add constraint slot_name_unique unique (name) deferrable initially deferred')

  for (const [what, reply] of [
    ['a two-row action', await writer.request('create_two', { first: 'fresh', second: 'one' })],
    ['a create', await writer.request('create', { data: { name: 'two' } })]
  ] as const) {
    nothingInternal(t, reply)
    // A unique violation is the client's doing, also when COMMIT raises it (as the driver's
    // raw error, which MikroORM does not convert): a 400 keyed by the field, never a 500.
    t.strictSame([reply.response_status, reply.errors], [400, TAKEN], `${what}: 400 keyed by the field, as for an immediate violation`)
  }
  t.strictSame(await names(orm), ['one', 'two'], 'nothing of either was committed')

  const ok = await writer.request('patch', { pk: 1, data: { name: 'after' } })
  t.equal(ok.response_status, 200, 'the socket works on')
  t.strictSame(await nextEvents(subscriber, 2), row1Updated('after'), 'the refused commits published nothing')
})

t.test('the connection killed while a create waits in performCreate → 500 without internals; nothing written, no event; the socket works on', pgOnly, async (t) => {
  const { orm, other, held, subscriber, hold } = await setup(t)
  const { gate, pid } = hold('create')
  held.send({ action: 'create', request_id: 'c', data: { name: 'lost' } })
  await within(gate.entered, 'performCreate reached')
  await terminate(other, await pid)
  gate.open() // the plugin's flush now runs on a dead connection

  const reply = await held.next()
  t.strictSame([reply.request_id, reply.response_status, reply.errors, reply.data], ['c', 500, INTERNAL, null])
  nothingInternal(t, reply)
  t.strictSame(await names(orm), ['one', 'two'])

  const ok = await held.request('create', { data: { name: 'kept' } })
  t.equal(ok.response_status, 201, 'the pool replaces the connection for the same socket\'s next action')
  t.strictSame(await nextEvents(subscriber, 1), [['list', 'create', ok.data]], 'the next event is the successful create\'s')
})

t.test('the connection killed after a patch is written, before its COMMIT → 500 without internals; rolled back, no event; the socket works on', pgOnly, async (t) => {
  const { orm, other, held, subscriber, hold } = await setup(t)
  const { gate, pid } = hold('update')
  held.send({ action: 'patch', request_id: 'p', pk: 1, data: { name: 'lost' } })
  await within(gate.entered, 'performUpdate reached, its row written')
  await terminate(other, await pid)
  gate.open() // all that is left is the COMMIT, on a dead connection

  const reply = await held.next()
  t.strictSame([reply.request_id, reply.response_status, reply.errors, reply.data], ['p', 500, INTERNAL, null],
    'never a 200 for a write that was not committed')
  nothingInternal(t, reply)
  t.strictSame(await names(orm), ['one', 'two'], 'the uncommitted write died with its connection')

  const ok = await held.request('patch', { pk: 1, data: { name: 'after' } })
  t.strictSame([ok.response_status, ok.data], [200, { id: 1, name: 'after' }], 'the same socket\'s next patch goes through')
  t.strictSame(await nextEvents(subscriber, 2), row1Updated('after'), 'the subscriber\'s next events are that patch\'s, not "lost"')
})

t.test('Redis cut away from two instances: both keep answering and serving their local subscribers; once it is back, a change through A reaches a subscriber on B again', { skip: noRedis }, async (t) => {
  const { admin, recordingLogger, redisProxy, subscriberCount, uniquePrefix } = await import('./helpers/redis.js')
  const database = await createDatabase(t, { reopenable: true })
  const proxy = await redisProxy(t)
  const redis = await admin(t)
  const prefix = uniquePrefix()
  const logs = { a: recordingLogger(), b: recordingLogger() }

  /** One instance of the example app, reaching Redis through the proxy. */
  const instance = async (log: typeof logs.a): Promise<string> => {
    const { app } = await buildApp({ ...database.exampleOptions, redisUrl: proxy.url, redisPrefix: prefix, fastify: { loggerInstance: log.log } })
    t.teardown(async () => await app.close())
    await app.listen({ host: '127.0.0.1', port: 0 })
    return `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws/`
  }
  // One after the other: each creates or updates the schema at startup.
  const a = await instance(logs.a)
  const b = await instance(logs.b)
  const writerA = await openClient(t, a)
  const writerB = await openClient(t, b)
  const listOnA = await openClient(t, a)
  const rowOnB = await openClient(t, b)
  const user = async (writer: TestClient, username: string): Promise<{ id: number, username: string, email: string }> => {
    const reply = await writer.request('create', { data: { username, password1: 'pw', password2: 'pw' } })
    if (reply.response_status !== 201) throw new Error(`create ${username}: ${JSON.stringify(reply)}`)
    return reply.data
  }
  const alice = await user(writerA, 'alice')
  t.equal((await listOnA.ask({ action: 'subscribe_list', request_id: 'list' })).response_status, 201)
  t.equal((await rowOnB.ask({ action: 'subscribe_instance', request_id: 'alice', pk: alice.id })).response_status, 201)
  const aliceChannel = `${prefix}${groups.instance(User, alice.id)}`
  await eventually(async () => await subscriberCount(redis, aliceChannel) === 1, 'B subscribed to alice\'s channel in Redis')

  // Before the cut: A's change reaches B through Redis.
  await writerA.request('patch', { pk: alice.id, data: { email: 'before@example.com' } })
  t.strictSame((await rowOnB.next()).data, { ...alice, email: 'before@example.com' }, 'through Redis before the cut')
  t.strictSame((await listOnA.next()).data, { ...alice, email: 'before@example.com' })

  proxy.down()
  const lost = (line: { msg: string }): boolean => /Redis subscriber connection (lost|failed)/.test(line.msg)
  await within(Promise.all([logs.a.next(lost), logs.b.next(lost)]), 'both instances noticed the loss')

  // During the outage: every action answers as usual, and local subscribers get local events.
  const bob = await user(writerA, 'bob')
  t.strictSame(await listOnA.next(), { errors: [], data: bob, action: 'create', response_status: 201, request_id: 'list' },
    'A\'s list subscriber gets A\'s create')
  const duringA = await writerA.request('patch', { pk: alice.id, data: { email: 'during-a@example.com' } })
  t.equal(duringA.response_status, 200, 'a patch on A')
  t.strictSame((await listOnA.next()).data, { ...alice, email: 'during-a@example.com' })
  const duringB = await writerB.request('patch', { pk: alice.id, data: { email: 'during-b@example.com' } })
  t.strictSame([duringB.response_status, duringB.data], [200, { ...alice, email: 'during-b@example.com' }], 'a patch on B')
  t.strictSame(await rowOnB.next(), { errors: [], data: { ...alice, email: 'during-b@example.com' }, action: 'update', response_status: 200, request_id: 'alice' },
    'B\'s row subscriber gets B\'s patch (and nothing of A\'s: that one could not cross)')
  for (const [name, writer] of [['A', writerA], ['B', writerB]] as const) {
    const list = await writer.request('list')
    t.strictSame([list.response_status, list.data.map((u: { username: string }) => u.username)], [200, ['alice', 'bob']], `a list on ${name}`)
    t.equal((await writer.request('retrieve', { pk: bob.id })).response_status, 200, `a retrieve on ${name}`)
  }
  // A subscription made during the outage: answered at once, its SUBSCRIBE waits for Redis.
  const bobOnB = await openClient(t, b)
  t.equal((await bobOnB.ask({ action: 'subscribe_instance', request_id: 'bob', pk: bob.id })).response_status, 201)

  proxy.up()
  const back = (role: string) => (line: { msg: string }): boolean => line.msg.includes(`Redis ${role} reconnected`)
  await within(Promise.all([logs.a.next(back('publisher')), logs.b.next(back('subscriber'))]), 'A publishes and B listens again', 15_000)
  const bobChannel = `${prefix}${groups.instance(User, bob.id)}`
  await eventually(async () => await subscriberCount(redis, aliceChannel) === 1 && await subscriberCount(redis, bobChannel) === 1,
    'B subscribed again to alice\'s channel and, for the first time, to bob\'s', 15_000)

  await writerA.request('patch', { pk: alice.id, data: { email: 'after@example.com' } })
  t.strictSame(await rowOnB.next(), { errors: [], data: { ...alice, email: 'after@example.com' }, action: 'update', response_status: 200, request_id: 'alice' },
    'A\'s change reaches B again; what A published during the cut never arrives late')
  await writerA.request('patch', { pk: bob.id, data: { email: 'bob@example.com' } })
  t.strictSame((await bobOnB.next()).data, { ...bob, email: 'bob@example.com' }, 'and reaches the subscription made during the cut')
  t.strictSame((await listOnA.take(2)).map((e) => e.data.email), ['after@example.com', 'bob@example.com'], 'A\'s own subscriber got both, once')
})
