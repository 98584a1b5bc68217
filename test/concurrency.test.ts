/**
 * Optimistic concurrency and write races: a `version` argument (the version the client
 * read) on update / patch / delete — current → the write goes through and the version
 * increments; stale → 409 and nothing is written; wrong type → 400 keyed `version`;
 * absent → last writer wins. Two connections racing on one version: exactly one wins.
 * Two connections racing to create one unique value: one 201, one 400 keyed by the field.
 *
 * Races send both frames before awaiting either reply, and the expectations hold whichever
 * write the database serializes first — on the single in-memory SQLite connection or on
 * PostgreSQL with a connection pool, where both transactions really run at once.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import type { MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t, { type Test } from 'tap'
import { mixins } from '../index.js'
import { gate, type Gate } from './helpers/async.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { dialect } from './helpers/database.js'
import { startApp, startExample } from './helpers/server.js'

const Doc = defineEntity({
  name: 'Doc',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    code: p.string().unique(),
    title: p.string(),
    body: p.string().default(''),
    version: p.integer().version()
  })
})
type Doc = InferEntity<typeof Doc>

const DocCreate = Type.Object({ code: Type.String({ minLength: 1 }), title: Type.String(), body: Type.Optional(Type.String()) })
const DocUpdate = Type.Object({ title: Type.String(), body: Type.String() })
const DocPublic = Type.Object({ id: Type.Integer(), code: Type.String(), title: Type.String(), body: Type.String(), version: Type.Integer() })

const CONFLICT = ['Conflict: the object was changed by someone else.']

interface Started {
  orm: MikroORM
  /** A connected client on `/docs/`, closed in teardown. */
  open: () => Promise<TestClient>
}

/**
 * A gate a write can be held at: `entered` resolves when the write reaches it (after its
 * lookup and version check, before it writes), and the write waits there until `open()`.
 */
/**
 * A bare app with `/docs/`: create, retrieve, update, patch, delete on the versioned Doc.
 * A write whose request_id is a key of `gates` is held at that gate (in performUpdate /
 * performDelete, i.e. after the lookup and the version check, inside the transaction).
 */
async function start (t: Test, gates = new Map<unknown, Gate>()): Promise<Started> {
  const { orm, base } = await startApp(t, [Doc], (app) => {
    app.wsRest.route('/docs/', {
      entity: Doc,
      schema: { create: DocCreate, update: DocUpdate, response: DocPublic },
      async performUpdate (ctx, entity, data) {
        await gates.get(ctx.requestId)?.wait()
        ctx.em.assign(entity, data)
      },
      async performDelete (ctx, entity) {
        await gates.get(ctx.requestId)?.wait()
        ctx.em.remove(entity)
      },
      actions: [mixins.create(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete()]
    })
  })
  return {
    orm,
    open: async () => {
      const client = await connect(`${base}/docs/`)
      t.teardown(() => client.close())
      return client
    }
  }
}

/** The row as the database holds it now (a fresh EntityManager, nothing cached), or null. */
async function row (orm: MikroORM, id: number): Promise<Record<string, unknown> | null> {
  const found = await orm.em.fork().findOne(Doc, { id })
  return found === null ? null : { id: found.id, code: found.code, title: found.title, body: found.body, version: found.version }
}

/** Create a doc through the socket; its reply data. */
async function createDoc (t: Test, client: TestClient, code: string, title = 'first'): Promise<Record<string, any>> {
  const reply = await client.request('create', { data: { code, title, body: 'b' } })
  t.equal(reply.response_status, 201, `${code} created`)
  return reply.data
}

/** Status, errors and data of a reply, for one strict comparison. */
function outcome (reply: WireReply): { status: number, errors: unknown[], data: unknown } {
  return { status: reply.response_status, errors: reply.errors, data: reply.data }
}

// ---------------------------------------------------------------- version argument, one client

t.test('a new object starts at version 1, shown in every reply', async (t) => {
  const { orm, open } = await start(t)
  const client = await open()
  const created = await createDoc(t, client, 'a')
  t.strictSame(created, { id: 1, code: 'a', title: 'first', body: 'b', version: 1 })
  t.strictSame((await client.request('retrieve', { pk: 1 })).data, created)
  t.strictSame(await row(orm, 1), created)
})

t.test('update and patch with the current version → 200, the version increments each time', async (t) => {
  const { orm, open } = await start(t)
  const client = await open()
  await createDoc(t, client, 'a')

  const updated = await client.request('update', { pk: 1, version: 1, data: { title: 'second', body: 'b2' } })
  t.strictSame(outcome(updated), { status: 200, errors: [], data: { id: 1, code: 'a', title: 'second', body: 'b2', version: 2 } })
  t.strictSame(await row(orm, 1), { id: 1, code: 'a', title: 'second', body: 'b2', version: 2 }, 'written, version 2 in the database')

  const patched = await client.request('patch', { pk: 1, version: 2, data: { title: 'third' } })
  t.strictSame(outcome(patched), { status: 200, errors: [], data: { id: 1, code: 'a', title: 'third', body: 'b2', version: 3 } })
  t.strictSame(await row(orm, 1), { id: 1, code: 'a', title: 'third', body: 'b2', version: 3 })

  // The version the reply gave is the one to send next.
  const again = await client.request('patch', { pk: 1, version: patched.data.version, data: { body: 'b4' } })
  t.strictSame([again.response_status, again.data.version], [200, 4])
  t.equal((await row(orm, 1))?.version, 4)
})

t.test('update, patch and delete with a stale version → 409, nothing written', async (t) => {
  const { orm, open } = await start(t)
  const client = await open()
  await createDoc(t, client, 'a')
  t.equal((await client.request('patch', { pk: 1, version: 1, data: { title: 'second' } })).response_status, 200)
  const current = { id: 1, code: 'a', title: 'second', body: 'b', version: 2 }
  t.strictSame(await row(orm, 1), current)

  for (const [action, version, data] of [
    ['update', 1, { title: 'stale', body: 'stale' }],
    ['patch', 1, { title: 'stale' }],
    ['update', 3, { title: 'ahead', body: 'ahead' }],
    ['patch', 0, { body: 'zero' }],
    ['delete', 1, undefined],
    ['delete', 7, undefined]
  ] as const) {
    const id = `${action}-v${version}`
    client.send({ action, request_id: id, pk: 1, version, ...(data === undefined ? {} : { data }) })
    const reply = await client.next()
    t.strictSame(
      { ...outcome(reply), action: reply.action, request_id: reply.request_id },
      { status: 409, errors: CONFLICT, data: null, action, request_id: id },
      `${action} with version ${version} (current 2) → 409`
    )
    t.strictSame(await row(orm, 1), current, `${action} with version ${version}: the row is unchanged`)
  }

  // Still writable with the right version, over the same socket.
  t.equal((await client.request('delete', { pk: 1, version: 2 })).response_status, 204, 'delete with the current version → 204')
  t.equal(await row(orm, 1), null, 'the row is gone')
})

t.test('a version as a numeric string is compared like the number', async (t) => {
  const { orm, open } = await start(t)
  const client = await open()
  await createDoc(t, client, 'a')
  t.strictSame((await client.request('patch', { pk: 1, version: '2', data: { title: 'x' } })).response_status, 409, 'stale "2"')
  t.equal((await row(orm, 1))?.title, 'first')
  const ok = await client.request('patch', { pk: 1, version: '1', data: { title: 'x' } })
  t.strictSame([ok.response_status, ok.data.version], [200, 2], 'current "1"')
})

t.test('a version of the wrong type → 400 keyed version, nothing written', async (t) => {
  const { orm, open } = await start(t)
  const client = await open()
  const created = await createDoc(t, client, 'a')

  for (const version of [true, false, 'abc', '', '1.0', 1.5, -0.5, {}, { $gt: 0 }, [1], Number.MAX_SAFE_INTEGER * 4]) {
    for (const [action, data] of [['update', { title: 'x', body: 'y' }], ['patch', { title: 'x' }], ['delete', undefined]] as const) {
      const id = `${action}-${JSON.stringify(version)}`
      client.send({ action, request_id: id, pk: 1, version, ...(data === undefined ? {} : { data }) })
      const reply = await client.next()
      t.equal(reply.response_status, 400, `${action}, version ${JSON.stringify(version)} → 400`)
      t.equal(reply.request_id, id)
      t.strictSame(Object.keys((reply.errors[0] ?? {}) as object), ['version'], 'keyed version, and nothing else')
      t.match(reply.errors, [{ version: [String] }], 'with a message')
      t.equal(reply.data, null)
    }
  }
  t.strictSame(await row(orm, 1), created, 'nothing was written')
  t.equal((await client.request('retrieve', { pk: 1 })).response_status, 200, 'the socket keeps working')
})

t.test('without a version, writes go through: last writer wins', async (t) => {
  const { orm, open } = await start(t)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')

  // Both read version 1.
  t.equal((await alice.request('retrieve', { pk: 1 })).data.version, 1)
  t.equal((await bob.request('retrieve', { pk: 1 })).data.version, 1)

  const fromBob = await bob.request('update', { pk: 1, data: { title: 'bob', body: 'bob' } })
  t.strictSame([fromBob.response_status, fromBob.data.version], [200, 2])
  const fromAlice = await alice.request('update', { pk: 1, data: { title: 'alice', body: 'alice' } })
  t.strictSame([fromAlice.response_status, fromAlice.data.version], [200, 3], 'alice overwrites bob\'s change without a version')
  t.strictSame(await row(orm, 1), { id: 1, code: 'a', title: 'alice', body: 'alice', version: 3 }, 'the last write is what the row holds')

  const patched = await bob.request('patch', { pk: 1, data: { body: 'bob again' } })
  t.strictSame([patched.response_status, patched.data.version], [200, 4])
  t.equal((await alice.request('delete', { pk: 1 })).response_status, 204, 'delete without a version')
  t.equal(await row(orm, 1), null)
})

// ---------------------------------------------------------------- races between connections

t.test('two connections update with the version both read, at the same time: exactly one 200, one 409', async (t) => {
  const { orm, open } = await start(t)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')

  // Several rounds, each from a fresh read, so the race is run more than once.
  for (let round = 1; round <= 5; round++) {
    const version = (await alice.request('retrieve', { pk: 1 })).data.version
    t.equal((await bob.request('retrieve', { pk: 1 })).data.version, version, `round ${round}: both read version ${version}`)
    t.equal(version, round, 'one write per round so far')

    const action = round % 2 === 0 ? 'patch' : 'update'
    alice.send({ action, request_id: 'a', pk: 1, version, data: { title: `alice ${round}`, body: 'alice' } })
    bob.send({ action, request_id: 'b', pk: 1, version, data: { title: `bob ${round}`, body: 'bob' } })
    const [a, b] = await Promise.all([alice.next(), bob.next()])
    t.strictSame([a.request_id, b.request_id], ['a', 'b'])

    const statuses = [a.response_status, b.response_status].sort()
    t.strictSame(statuses, [200, 409], `round ${round} (${action}): one wins, one conflicts`)
    const winner = a.response_status === 200 ? a : b
    const loser = winner === a ? b : a
    const winnerName = winner === a ? 'alice' : 'bob'
    t.strictSame(outcome(loser), { status: 409, errors: CONFLICT, data: null }, 'the loser gets the conflict')
    const expected = { id: 1, code: 'a', title: `${winnerName} ${round}`, body: winnerName, version: version + 1 }
    t.strictSame(winner.data, expected, 'the winner\'s reply: its data, the next version')
    t.strictSame(await row(orm, 1), expected, 'the row holds the winner\'s data and one increment')
  }
})

t.test('a stale delete racing a current update: the row survives with the update', async (t) => {
  const { orm, open } = await start(t)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')
  t.equal((await alice.request('patch', { pk: 1, version: 1, data: { title: 'v2' } })).response_status, 200)

  // Bob still thinks it is version 1; alice writes version 2 at the same moment.
  alice.send({ action: 'patch', request_id: 'a', pk: 1, version: 2, data: { title: 'v3' } })
  bob.send({ action: 'delete', request_id: 'b', pk: 1, version: 1 })
  const [a, b] = await Promise.all([alice.next(), bob.next()])
  t.equal(a.response_status, 200, 'the current update goes through')
  t.strictSame(outcome(b), { status: 409, errors: CONFLICT, data: null }, 'the stale delete conflicts')
  t.strictSame(await row(orm, 1), { id: 1, code: 'a', title: 'v3', body: 'b', version: 3 }, 'the row is still there, updated')
})

// Held writes: two transactions really open at once, both past the version check before
// either writes. On SQLite a transaction holds the only connection, so the second could not
// even start its lookup while the first is held: these run on PostgreSQL (DATABASE_URL).
const heldWrites = { skip: dialect === 'sqlite' ? 'needs concurrent transactions (run with DATABASE_URL=postgresql://…)' : false }

/**
 * With a client `version`, a write reads its row with SELECT … FOR UPDATE (PostgreSQL), so a
 * second writer cannot pass the version check while the first is between its check and its
 * commit: it waits for the row, then sees what the first did. Each scenario holds the first
 * writer at its gate (after its check, inside its transaction) while the second is sent.
 */
t.test('two updates with the same version: the second waits for the first, then conflicts', heldWrites, async (t) => {
  const gates = new Map([['a', gate()], ['b', gate()]])
  const { orm, open } = await start(t, gates)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')

  alice.send({ action: 'update', request_id: 'a', pk: 1, version: 1, data: { title: 'alice', body: 'alice' } })
  await gates.get('a')!.entered // alice holds the row, past her version check
  bob.send({ action: 'update', request_id: 'b', pk: 1, version: 1, data: { title: 'bob', body: 'bob' } })
  gates.get('a')!.open()
  const [a, b] = await Promise.all([alice.next(), bob.next()])
  const expected = { id: 1, code: 'a', title: 'alice', body: 'alice', version: 2 }
  t.strictSame([a.response_status, a.data], [200, expected], 'the first writer wins')
  t.strictSame(outcome(b), { status: 409, errors: CONFLICT, data: null }, 'the second sees version 2 → 409')
  t.strictSame(await row(orm, 1), expected, 'the row holds the winner\'s data, version 2')
})

t.test('a delete with a version read before an update committed → 409, the updated row stays', heldWrites, async (t) => {
  const gates = new Map([['upd', gate()]])
  const { orm, open } = await start(t, gates)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')

  alice.send({ action: 'update', request_id: 'upd', pk: 1, version: 1, data: { title: 'alice', body: 'alice' } })
  await gates.get('upd')!.entered
  // Bob read version 1 too; MikroORM's own delete would not look at the version at all.
  bob.send({ action: 'delete', request_id: 'del', pk: 1, version: 1 })
  gates.get('upd')!.open()
  const [updated, deleted] = await Promise.all([alice.next(), bob.next()])
  t.strictSame([updated.response_status, updated.data.version], [200, 2], 'the update commits version 2')
  t.strictSame(outcome(deleted), { status: 409, errors: CONFLICT, data: null }, 'the stale delete → 409')
  t.strictSame(await row(orm, 1), { id: 1, code: 'a', title: 'alice', body: 'alice', version: 2 }, 'the updated row is still there')
})

t.test('two deletes with the same version: one 204, the other finds the row gone', heldWrites, async (t) => {
  const gates = new Map([['a', gate()], ['b', gate()]])
  const { orm, open } = await start(t, gates)
  const alice = await open()
  const bob = await open()
  await createDoc(t, alice, 'a')

  alice.send({ action: 'delete', request_id: 'a', pk: 1, version: 1 })
  await gates.get('a')!.entered
  bob.send({ action: 'delete', request_id: 'b', pk: 1, version: 1 })
  gates.get('a')!.open()
  const [a, b] = await Promise.all([alice.next(), bob.next()])
  t.strictSame(outcome(a), { status: 204, errors: [], data: null })
  t.strictSame(outcome(b), { status: 404, errors: ['Not found'], data: null })
  t.equal(await row(orm, 1), null, 'the row is gone')
})

t.test('two connections create the same unique value at the same time: one 201, one 400 keyed by the field', async (t) => {
  const { orm, open } = await start(t)
  const alice = await open()
  const bob = await open()

  for (let round = 1; round <= 5; round++) {
    const code = `code-${round}`
    alice.send({ action: 'create', request_id: 'a', data: { code, title: 'alice' } })
    bob.send({ action: 'create', request_id: 'b', data: { code, title: 'bob' } })
    const [a, b] = await Promise.all([alice.next(), bob.next()])
    t.strictSame([a.response_status, b.response_status].sort(), [201, 400], `round ${round}: one created, one refused`)
    const winner = a.response_status === 201 ? a : b
    const loser = winner === a ? b : a
    t.strictSame(outcome(loser), { status: 400, errors: [{ code: ['doc with this code already exists.'] }], data: null },
      'DRF\'s unique message keyed by the field, never a 500')
    t.equal(loser.action, 'create')
    const rows = await orm.em.fork().find(Doc, { code })
    t.strictSame(rows.map((r) => [r.id, r.title, r.version]), [[winner.data.id, winner === a ? 'alice' : 'bob', 1]],
      'exactly one row with the value: the winner\'s')
  }
  t.equal(await orm.em.fork().count(Doc, {}), 5, 'no stray rows')
  const after = await alice.request('create', { data: { code: 'after', title: 'x' } })
  t.equal(after.response_status, 201, 'both sockets keep working')
  t.equal((await bob.request('retrieve', { pk: after.data.id })).response_status, 200)
})

t.test('example /ws/: two connections create the same username at the same time → one 201, one 400 keyed username', async (t) => {
  const { orm, base } = await startExample(t)
  const alice = await connect(`${base}/ws/`)
  const bob = await connect(`${base}/ws/`)
  t.teardown(() => { alice.close(); bob.close() })

  for (let round = 1; round <= 3; round++) {
    const username = `racer${round}`
    alice.send({ action: 'create', request_id: 'a', data: { username, email: 'alice@example.com', password1: 'pw-a', password2: 'pw-a' } })
    bob.send({ action: 'create', request_id: 'b', data: { username, email: 'bob@example.com', password1: 'pw-b', password2: 'pw-b' } })
    const [a, b] = await Promise.all([alice.next(), bob.next()])
    t.strictSame([a.response_status, b.response_status].sort(), [201, 400], `round ${round}: one created, one refused`)
    const winner = a.response_status === 201 ? a : b
    const loser = winner === a ? b : a
    t.strictSame(outcome(loser), { status: 400, errors: [{ username: ['user with this username already exists.'] }], data: null })
    const winnerEmail = winner === a ? 'alice@example.com' : 'bob@example.com'
    t.strictSame(winner.data, { id: winner.data.id, username, email: winnerEmail })
    const rows = await orm.em.fork().getConnection().execute('select id, email from "user" where username = ?', [username])
    t.strictSame(rows.map((r: { id: number, email: string }) => [Number(r.id), r.email]), [[winner.data.id, winnerEmail]], 'one row, the winner\'s')
  }
})
