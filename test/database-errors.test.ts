/**
 * Database faults map to the protocol the same way on SQLite and PostgreSQL, with nothing
 * internal in the reply, the transaction rolled back and the socket usable afterwards:
 * a row locked by another connection → 409, a serialization failure → 409 (PostgreSQL),
 * a lost connection → 500 (PostgreSQL; SQLite has no connection to lose).
 * Unique violations (→ 400 keyed by the field) are covered in validation, mixins and concurrency tests.
 */
import { IsolationLevel, type MikroORM } from '@mikro-orm/core'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import type { SqlEntityManager } from '@mikro-orm/sqlite' // @mikro-orm/knex's, shared by both SQL drivers
import wsRest, { action, mixins, type ActionDefinition } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { gate, within, type Teardown } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { createDatabase, dialect } from './helpers/database.js'
import { Item, ItemCreate, ItemPublic } from './helpers/item.js'

const CONFLICT = ['Conflict: the object was changed by someone else.']
const INTERNAL = ['Internal server error']
const pgOnly = { skip: dialect === 'sqlite' ? 'needs concurrent connections (runs on PostgreSQL: set DATABASE_URL)' : false }

interface Setup {
  /** The app's ORM. */
  orm: MikroORM
  /** A second, independent connection to the same database (another process, say). */
  other: MikroORM
  client: TestClient
  /** What the server logged at error level. */
  logged: string[]
}

/**
 * An app on a database of its own with one item, and a second connection to that
 * database. `extra` adds actions to the `/items/` route (create, retrieve, update).
 */
async function setup (t: Teardown, extra: ActionDefinition[] = []): Promise<Setup> {
  const database = await createDatabase(t, { reopenable: true })
  const orm = await database.open([Item])
  await updateSchema(orm)
  await orm.em.fork().insert(Item, { name: 'first' })
  const other = await database.open([Item])

  const logged: string[] = []
  const app = Fastify({
    logger: { level: 'error', stream: { write: (line: string) => { logged.push(line) } } }
  })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { orm })
  app.wsRest.route('/items/', {
    entity: Item,
    schema: { create: ItemCreate, update: ItemCreate, response: ItemPublic },
    async performUpdate (ctx, entity, data) {
      // PostgreSQL waits for a row lock forever by default; give up quickly instead (SQLite never waits here).
      if (dialect === 'postgresql') await (ctx.em as SqlEntityManager).execute("set local lock_timeout = '200ms'")
      ctx.em.assign(entity, data)
    },
    actions: [mixins.create(), mixins.retrieve(), mixins.update(), ...extra]
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const client = await openClient(t, `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/items/`)
  return { orm, other, client, logged }
}

function nothingInternal (t: Test, reply: WireReply): void {
  t.notMatch(JSON.stringify(reply.errors), /select|update|insert|item|SQL|lock|terminat|at \w+ \(/i, 'no SQL, table name or stack in the reply')
}

async function nameOf (orm: MikroORM): Promise<string | undefined> {
  return (await orm.em.fork().findOne(Item, 1))?.name
}

t.test('a row locked by another connection → 409, nothing written, and the socket works on', async (t) => {
  const { orm, other, client } = await setup(t)
  // Another connection writes the row and keeps its transaction open.
  const holder = other.em.fork() as SqlEntityManager
  await holder.begin()
  await holder.execute("update item set name = 'held' where id = 1")

  const reply = await client.request('update', { pk: 1, data: { name: 'mine' } })
  t.strictSame([reply.response_status, reply.errors, reply.data], [409, CONFLICT, null])
  nothingInternal(t, reply)

  await holder.rollback()
  t.equal(await nameOf(orm), 'first', 'neither write is in the database')
  const retry = await client.request('update', { pk: 1, data: { name: 'mine' } })
  t.strictSame([retry.response_status, retry.data], [200, { id: 1, name: 'mine' }], 'the retry goes through')
  t.equal(await nameOf(orm), 'mine')
})

t.test('a serialization failure → 409 and the transaction rolled back', pgOnly, async (t) => {
  const held = gate()
  const { orm, other, client } = await setup(t, [
    action('rename_snapshot', async (ctx) => {
      await ctx.em.transactional(async (em) => {
        const item = await em.findOneOrFail(Item, 1) // the snapshot is taken here
        await held.wait()
        item.name = 'from snapshot'
        await em.flush() // the row changed since the snapshot: PostgreSQL refuses (40001)
      }, { isolationLevel: IsolationLevel.REPEATABLE_READ })
      return { data: 'renamed' }
    })
  ])
  client.send({ action: 'rename_snapshot', request_id: 's' })
  await held.entered
  await other.em.fork().nativeUpdate(Item, { id: 1 }, { name: 'committed meanwhile' })
  held.open()

  const reply = await client.next()
  t.strictSame([reply.request_id, reply.response_status, reply.errors, reply.data], ['s', 409, CONFLICT, null])
  nothingInternal(t, reply)
  t.equal(await nameOf(orm), 'committed meanwhile', 'the other write stands, the refused one is gone')
  t.equal((await client.request('retrieve', { pk: 1 })).response_status, 200, 'the socket works on')
})

/**
 * Kill every server connection of the app's database but `other`'s own, as a database
 * restart would, and return once each of those backends has exited (PostgreSQL 14+ waits
 * for it with a timeout; without one it only signals, and the app could take a connection
 * whose backend is still sending its farewell before the pool has heard of it).
 */
async function killConnections (other: MikroORM): Promise<number> {
  const rows = await (other.em.fork() as SqlEntityManager).execute(
    'select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()'
  )
  return rows.length
}

t.test('a connection lost in the middle of an action → 500 without internals, rolled back, logged; the next action works', pgOnly, async (t) => {
  const held = gate()
  const { orm, other, client, logged } = await setup(t, [
    action('slow_rename', { transaction: true }, async (ctx) => {
      const item = await ctx.em.findOneOrFail(Item, 1)
      item.name = 'half-done'
      await ctx.em.flush() // written inside the transaction, not committed
      await held.wait()
      await ctx.em.findOneOrFail(Item, 1, { refresh: true }) // the connection is gone by now
      return { data: 'renamed' }
    })
  ])
  client.send({ action: 'slow_rename', request_id: 'r' })
  await held.entered
  t.ok(await killConnections(other) >= 1, 'the app\'s connection was killed')
  held.open()

  const reply = await client.next()
  t.strictSame([reply.request_id, reply.response_status, reply.errors, reply.data], ['r', 500, INTERNAL, null])
  nothingInternal(t, reply)
  t.ok(logged.some((line) => /action failed/.test(line)), 'the cause is logged server-side')
  t.equal(await nameOf(orm), 'first', 'the uncommitted write died with its connection')
  const next = await client.request('retrieve', { pk: 1 })
  t.strictSame([next.response_status, next.data], [200, { id: 1, name: 'first' }], 'the pool reconnects for the next action')
  // The dead connection went back to the pool (which drops it): closing waits for none still held.
  await within(orm.close(true), 'orm.close() returns: the lost transaction holds no pool connection')
})

t.test('idle connections lost (a database restart) are replaced without the client noticing', pgOnly, async (t) => {
  const { other, client } = await setup(t)
  t.equal((await client.request('retrieve', { pk: 1 })).response_status, 200)
  t.ok(await killConnections(other) >= 1, 'the app\'s idle connections were killed')
  const reply = await client.request('update', { pk: 1, data: { name: 'after restart' } })
  t.strictSame([reply.response_status, reply.data], [200, { id: 1, name: 'after restart' }])
})
