/**
 * Realistic writes keep group commit: a route that maps its input (`prepareCreate` /
 * `prepareUpdate`: hash a password, set the owner from the connection), scopes each
 * connection (`getQueryset`) or checks versions still writes the requests of many sockets
 * in one flush. The app's per-request code runs exactly once per request, also when a
 * shared flush fails and the requests run alone; a slow preparation holds no database
 * connection. Real sockets, a spy on the ORM's query log.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins, type RouteOptions } from '../index.js'
import { gate } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { spyQueries } from './helpers/database.js'
import { startApp, type Running } from './helpers/server.js'

const Account = defineEntity({
  name: 'Account',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    login: p.string().unique(),
    secret: p.string().hidden(),
    owner: p.integer(),
    note: p.string().default(''),
    version: p.integer().version()
  })
})
type Account = InferEntity<typeof Account>

const AccountCreate = Type.Object({ login: Type.String({ minLength: 1 }), password: Type.String({ minLength: 1 }) })
const AccountUpdate = Type.Object({ login: Type.String({ minLength: 1 }), note: Type.String() })
const AccountPublic = Type.Object({ id: Type.Integer(), login: Type.String(), owner: Type.Integer(), note: Type.String(), version: Type.Integer() })

const SOCKETS = 30

/** The connection's owner: `?owner=N` on the upgrade URL (an app would take it from its auth). */
function ownerOf (ctx: { request: { query: unknown } }): number {
  return Number((ctx.request.query as { owner?: string }).owner ?? 0)
}

/** A stand-in for a password hash: async, as scrypt or bcrypt are. */
async function fakeHash (password: string): Promise<string> {
  return await Promise.resolve(`hashed:${password}`)
}

interface Accounts extends Running {
  clients: TestClient[]
  /** prepare* calls, by the login (create) or pk (update) they were for. */
  calls: { create: string[], update: number[] }
  sql: string[]
}

/**
 * `/accounts/` maps `password` to `secret` and sets `owner` from the connection before
 * the write, and sees only the connection's own accounts. Socket i connects as owner
 * `i % 2 + 1`.
 */
async function startAccounts (t: Test, extra: Partial<RouteOptions<Account, typeof AccountCreate, typeof AccountUpdate, typeof AccountPublic>> = {}): Promise<Accounts> {
  const calls = { create: [] as string[], update: [] as number[] }
  const running = await startApp(t, [Account], (app) => {
    app.wsRest.route('/accounts/', {
      entity: Account,
      schema: { create: AccountCreate, update: AccountUpdate, response: AccountPublic },
      getQueryset: (ctx) => ({ owner: ownerOf(ctx) }),
      async prepareCreate (ctx, data) {
        calls.create.push(data.login)
        return { login: data.login, secret: await fakeHash(data.password), owner: ownerOf(ctx) }
      },
      async prepareUpdate (ctx, entity, data) {
        calls.update.push(entity.id)
        await Promise.resolve()
        return { ...data, note: data.note === undefined ? undefined : `${data.note} (by ${ownerOf(ctx)})` }
      },
      actions: [mixins.create(), mixins.update(), mixins.patch(), mixins.delete(), mixins.retrieve(), mixins.list()],
      ...extra
    })
  })
  const clients = await Promise.all(Array.from({ length: SOCKETS }, async (_, i) => await openClient(t, `${running.base}/accounts/?owner=${i % 2 + 1}`)))
  return { ...running, clients, calls, sql: spyQueries(running.orm) }
}

/** Send one frame on each socket at once, then collect each socket's reply. */
async function together (clients: TestClient[], frame: (i: number) => Record<string, unknown>): Promise<WireReply[]> {
  clients.forEach((c, i) => c.send({ request_id: i, ...frame(i) }))
  return await Promise.all(clients.map(async (c) => await c.next()))
}

const transactions = (sql: string[]): number => sql.filter((q) => /^begin/i.test(q)).length

async function seedAccounts (running: Running, n: number): Promise<Account[]> {
  const em = running.orm.em.fork()
  const rows = Array.from({ length: n }, (_, i) => em.create(Account, { login: `seed-${i}`, secret: 'x', owner: i % 2 + 1 }))
  await em.flush()
  return rows
}

t.test('creates through prepareCreate are grouped: each row mapped from its own input and connection', async (t) => {
  const running = await startAccounts(t)
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { login: `user-${i}`, password: `pw-${i}` } }))
  replies.forEach((reply, i) => {
    t.strictSame([reply.response_status, reply.data], [201, { id: reply.data?.id, login: `user-${i}`, owner: i % 2 + 1, note: '', version: 1 }], `socket ${i}`)
  })
  const stored = await running.orm.em.fork().find(Account, {}, { orderBy: { id: 'asc' } })
  t.strictSame(stored.map((a) => [a.login, a.secret, a.owner]).sort(),
    replies.map((_, i) => [`user-${i}`, `hashed:pw-${i}`, i % 2 + 1]).sort(), 'each stored with its own hash and owner')
  t.equal(running.calls.create.length, SOCKETS, 'prepareCreate ran once per request')
  t.ok(transactions(running.sql) <= SOCKETS / 3, `${SOCKETS} creates ran ${transactions(running.sql)} transactions`)
})

t.test('a unique violation in a grouped flush: the requests run alone, and prepareCreate still ran once each', async (t) => {
  const running = await startAccounts(t)
  const login = (i: number): string => i < 3 ? 'taken' : `fresh-${i}`
  const replies = await together(running.clients, (i) => ({ action: 'create', data: { login: login(i), password: 'pw' } }))
  t.equal(replies.filter((r) => r.response_status === 201).length, SOCKETS - 2, 'one of the three "taken" is created')
  t.strictSame(replies.filter((r) => r.response_status === 400).map((r) => r.errors),
    [[{ login: ['account with this login already exists.'] }], [{ login: ['account with this login already exists.'] }]])
  t.strictSame([...running.calls.create].sort(), replies.map((_, i) => login(i)).sort(), 'once per request, none twice')
})

t.test('a slow prepareCreate holds no database connection: other sockets write meanwhile', async (t) => {
  const held = gate()
  const running = await startAccounts(t, {
    async prepareCreate (ctx, data) {
      if (data.login === 'slow') await held.wait()
      return { login: data.login, secret: await fakeHash(data.password), owner: ownerOf(ctx) }
    }
  })
  const [slow, quick] = running.clients
  slow.send({ action: 'create', request_id: 'slow', data: { login: 'slow', password: 'pw' } })
  await held.entered
  const other = await quick.request('create', { data: { login: 'quick', password: 'pw' } })
  t.equal(other.response_status, 201, 'written while the slow one is still preparing')
  held.open()
  t.strictSame([(await slow.next()).response_status], [201])
  t.equal(await running.orm.em.fork().count(Account, {}), 2)
})

t.test('patches through prepareUpdate are grouped; a row outside the connection\'s scope is 404 and untouched', async (t) => {
  const running = await startAccounts(t)
  const rows = await seedAccounts(running, SOCKETS)
  running.sql.length = 0
  // Socket i (owner i % 2 + 1) patches row i (owner i % 2 + 1), except socket 5, which names row 6 (another owner's).
  const replies = await together(running.clients, (i) => ({ action: 'patch', pk: rows[i === 5 ? 6 : i].id, data: { note: `n${i}` } }))
  replies.forEach((reply, i) => {
    if (i === 5) t.strictSame([reply.response_status, reply.errors], [404, ['Not found']], 'another owner\'s row is not found')
    else t.strictSame([reply.response_status, reply.data.note, reply.data.version], [200, `n${i} (by ${i % 2 + 1})`, 2], `socket ${i}`)
  })
  const stored = await running.orm.em.fork().findOneOrFail(Account, rows[6].id)
  t.strictSame([stored.note, stored.version], [`n6 (by ${6 % 2 + 1})`, 2], 'row 6 has its own owner\'s patch only')
  t.strictSame([...running.calls.update].sort((a, b) => a - b), rows.filter((_, i) => i !== 5).map((r) => r.id).sort((a, b) => a - b),
    'prepareUpdate ran once per request that found its row')
  t.ok(transactions(running.sql) <= SOCKETS / 3, `${SOCKETS} patches ran ${transactions(running.sql)} transactions`)
})

t.test('a shared flush that fails: the batch runs alone, and prepareUpdate ran once per request', async (t) => {
  const running = await startAccounts(t)
  const rows = await seedAccounts(running, 10)
  // Sockets 0-8 rename rows 0-8; socket 4 to the login row 9 keeps: the batch's flush fails on it, every request runs alone.
  const clients = running.clients.slice(0, 9)
  const login = (i: number): string => i === 4 ? 'seed-9' : `renamed-${i}`
  const replies = await together(clients, (i) => ({ action: 'update', pk: rows[i].id, data: { login: login(i), note: 'u' } }))
  const stored = new Map((await running.orm.em.fork().find(Account, {})).map((row) => [row.id, row]))
  replies.forEach((reply, i) => {
    if (i === 4) t.strictSame([reply.response_status, reply.errors], [400, [{ login: ['account with this login already exists.'] }]])
    else t.strictSame([reply.response_status, reply.data], [200, { id: rows[i].id, login: login(i), owner: i % 2 + 1, note: `u (by ${i % 2 + 1})`, version: stored.get(rows[i].id)?.version }], `socket ${i}`)
  })
  t.equal(stored.get(rows[4].id)?.login, 'seed-4', 'the refused update wrote nothing')
  t.strictSame([...running.calls.update].sort((a, b) => a - b), rows.slice(0, 9).map((r) => r.id), 'prepareUpdate ran once per request, none again when it ran alone')
})

t.test('an update with a version runs alone (it locks its row): prepareUpdate runs, a stale one is 409', async (t) => {
  const running = await startAccounts(t)
  const rows = await seedAccounts(running, 2)
  running.sql.length = 0
  const current = await running.clients[0].request('update', { pk: rows[0].id, version: 1, data: { login: 'v', note: 'x' } })
  t.strictSame([current.response_status, current.data.note, current.data.version], [200, 'x (by 1)', 2])
  const stale = await running.clients[0].request('update', { pk: rows[0].id, version: 1, data: { login: 'w', note: 'y' } })
  t.strictSame([stale.response_status, stale.errors], [409, ['Conflict: the object was changed by someone else.']])
  t.equal(running.sql.filter((q) => /^begin/i.test(q)).length, 2, 'a transaction each')
})
