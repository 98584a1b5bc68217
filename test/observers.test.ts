/**
 * The model observer (lib/observer/model-observer.ts) over real sockets and a real
 * database: which writes become events, and when.
 *
 * - A flush outside any transaction (by any code of the app, not only the plugin's
 *   actions) is published at once.
 * - A flush inside `em.transactional` / `em.begin()` is published only when the root
 *   transaction commits, and never when it rolls back.
 * - A nested `transactional` is a savepoint: its changes go out with the root's commit,
 *   unless that savepoint was rolled back.
 * - `nativeUpdate` / `nativeDelete` / `insert` / raw SQL bypass the unit of work and are
 *   not published (documented, so a change of behaviour is noticed).
 *
 * Nothing here sleeps. "Nothing was published" is proven with a marker: after the write
 * that must send nothing, a second, committed change is made, and the very next event has
 * to be the marker's. "Nothing was published yet" while a transaction is held open (and,
 * on SQLite, holds the only connection, so no marker write is possible) is proven with a
 * `ping` action that never touches the database: its reply is written to the same socket
 * after anything already published, so if it is the next frame, no event was sent before.
 */
import { defineEntity, TransactionPropagation, type EntityManager, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { action, mixins, type ModelChange } from '../index.js'
import { gate } from './helpers/async.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { Item, itemModel, seedItems } from './helpers/item.js'
import { dialect } from './helpers/database.js'
import { startApp } from './helpers/server.js'


/** The list subscription's request_id. */
const LIVE = 'live'

/**
 * The Item route every test uses: CRUD, both subscriptions, `ping` (no database) and two
 * actions that write and then fail, one in a transaction and one not. Plus a plain Fastify
 * HTTP route that writes through its own fork: other code of the app.
 */
function declareItems (app: FastifyInstance, orm: MikroORM): void {
  app.wsRest.route('/items/', {
    ...itemModel,
    actions: [
      mixins.create(),
      mixins.retrieve(),
      mixins.patch(),
      mixins.delete(),
      mixins.subscribeList(),
      mixins.subscribeInstance(),
      action('ping', () => ({ data: 'pong' })),
      action('boom', { transaction: true }, async (ctx) => {
        ctx.em.create(Item, { name: 'boom' })
        await ctx.em.flush()
        throw new Error('boom after flush, in a transaction')
      }),
      action('boom-untransacted', async (ctx) => {
        ctx.em.create(Item, { name: 'boom-untransacted' })
        await ctx.em.flush()
        throw new Error('boom after flush, no transaction')
      })
    ]
  })
  app.post('/http/items', async (request) => {
    const em = orm.em.fork()
    const item = em.create(Item, { name: (request.body as { name: string }).name })
    await em.flush()
    return { id: item.id, name: item.name }
  })
}

async function startItems (t: Test): Promise<{ app: FastifyInstance, orm: MikroORM, base: string }> {
  return await startApp(t, [Item], declareItems)
}

/** A socket subscribed to every Item change (`subscribe_list`, request_id `live`). */
async function listSubscriber (t: Test, base: string, requestId: string = LIVE): Promise<TestClient> {
  const client = await openClient(t, `${base}/items/`)
  client.send({ action: 'subscribe_list', request_id: requestId })
  t.strictSame(await client.next(),
    { errors: [], data: null, action: 'subscribe_list', response_status: 201, request_id: requestId }, 'subscribed')
  return client
}

/** An event as the list subscriber receives it. */
function event (action: 'create' | 'update' | 'delete', data: unknown, requestId: string = LIVE): WireReply {
  const status = action === 'create' ? 201 : action === 'update' ? 200 : 204
  return { errors: [], data, action, response_status: status, request_id: requestId }
}

let probes = 0

/**
 * Proves no event has been sent to `client` so far: the reply to a `ping` (which never
 * touches the database, so it runs while a transaction holds SQLite's only connection)
 * is the next frame. An event published earlier would have been written first.
 */
async function nothingSentYet (t: Test, client: TestClient, what: string): Promise<void> {
  const requestId = `probe-${++probes}`
  client.send({ action: 'ping', request_id: requestId })
  t.strictSame(await client.next(), { errors: [], data: 'pong', action: 'ping', response_status: 200, request_id: requestId }, what)
}

/** Proves nothing was published since the last event received: the next event is `name`'s create. */
async function nothingPublished (t: Test, orm: MikroORM, client: TestClient, what: string): Promise<void> {
  const name = `marker-${++probes}`
  const [id] = await seedItems(orm, name)
  t.strictSame(await client.next(), event('create', { id, name }), `${what} (the next event is the marker's)`)
}

/** Every Item row as stored, read through a fresh fork. */
async function stored (orm: MikroORM): Promise<Array<{ id: number, name: string }>> {
  const items = await orm.em.fork().find(Item, {}, { orderBy: { id: 'asc' } })
  return items.map((i) => ({ id: i.id, name: i.name }))
}

// ------------------------------------------------------------------ outside any transaction

t.test('1. a plain fork + flush by other code of the app (an HTTP route, a fork in the test) is published at once', async (t) => {
  const { app, orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)

  const res = await app.inject({ method: 'POST', url: '/http/items', payload: { name: 'via-http' } })
  t.equal(res.statusCode, 200)
  const viaHttp = res.json<{ id: number, name: string }>()
  t.strictSame(await client.next(), event('create', { id: viaHttp.id, name: 'via-http' }),
    'a create made by a regular Fastify HTTP route reaches the subscriber, shaped')

  const em = orm.em.fork()
  const item = em.create(Item, { name: 'via-fork' })
  await em.flush()
  t.strictSame(await client.next(), event('create', { id: item.id, name: 'via-fork' }), 'a create through orm.em.fork()')
  item.name = 'via-fork-renamed'
  await em.flush()
  t.strictSame(await client.next(), event('update', { id: item.id, name: 'via-fork-renamed' }), 'an update through the same fork')
  em.remove(item)
  await em.flush()
  t.strictSame(await client.next(), event('delete', { pk: item.id }), 'a delete: 204 with {pk}')

  // And the plugin's own actions, for comparison: the same events.
  const writer = await openClient(t, `${base}/items/`)
  const created = await writer.request('create', { data: { name: 'via-socket' } })
  t.equal(created.response_status, 201)
  t.strictSame(await client.next(), event('create', { id: created.data.id, name: 'via-socket' }), 'a create by the plugin\'s create action')
})

// ------------------------------------------------------------------ em.transactional

t.test('2. em.transactional: create, flush, update, flush → nothing while open; both events, in order, after the commit', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  // Record, for every frame, whether the commit had been let through when it arrived.
  let released = false
  const arrivals: Array<{ action: unknown, released: boolean }> = []
  client.socket.on('message', (data) => {
    const msg = JSON.parse(data.toString()) as WireReply
    arrivals.push({ action: msg.action, released })
  })

  const held = gate()
  let id = 0
  const tx = orm.em.fork().transactional(async (em) => {
    const item = em.create(Item, { name: 'draft' })
    await em.flush()
    id = item.id
    item.name = 'final'
    await em.flush()
    await held.wait()
  })
  await held.entered
  await nothingSentYet(t, client, 'both flushes are done, the transaction is open: no event yet')

  released = true
  held.open()
  await tx
  t.strictSame(await client.take(2), [event('create', { id, name: 'draft' }), event('update', { id, name: 'final' })],
    'after the commit: the create (as flushed) then the update, in flush order')
  t.strictSame(arrivals.filter((a) => a.action === 'create' || a.action === 'update').map((a) => a.released), [true, true],
    'both events arrived after the commit was let through')
  t.strictSame(await stored(orm), [{ id, name: 'final' }])
  await nothingPublished(t, orm, client, 'no third event (no duplicate at commit)')
})

t.test('3. em.transactional that throws after flushing → rolled back → nothing published', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)

  await t.rejects(orm.em.fork().transactional(async (em) => {
    em.create(Item, { name: 'doomed' })
    await em.flush()
    const again = em.create(Item, { name: 'doomed-too' })
    await em.flush()
    again.name = 'doomed-renamed'
    await em.flush()
    throw new Error('changed my mind')
  }), { message: 'changed my mind' })
  t.strictSame(await stored(orm), [], 'rolled back: nothing stored')
  await nothingPublished(t, orm, client, 'the rolled-back creates and update sent nothing')
})

// ------------------------------------------------------------------ em.begin / commit / rollback

t.test('4. em.begin() / flush / em.rollback() → nothing; em.begin() / flush / em.commit() → published at the commit', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)

  const rolled = orm.em.fork()
  await rolled.begin()
  rolled.create(Item, { name: 'rolled-back' })
  await rolled.flush()
  await nothingSentYet(t, client, 'flushed inside begin(): no event while open')
  await rolled.rollback()
  await nothingPublished(t, orm, client, 'rollback(): the flushed create sent nothing')

  const committed = orm.em.fork()
  await committed.begin()
  const item = committed.create(Item, { name: 'committed' })
  await committed.flush()
  await nothingSentYet(t, client, 'flushed inside begin(): no event before commit()')
  await committed.commit()
  t.strictSame(await client.next(), event('create', { id: item.id, name: 'committed' }), 'commit(): the create is published')

  // commit() flushes by itself: a change left unflushed is written and published at the commit.
  const implicit = orm.em.fork()
  await implicit.begin()
  const other = implicit.create(Item, { name: 'flushed-by-commit' })
  await implicit.commit()
  t.strictSame(await client.next(), event('create', { id: other.id, name: 'flushed-by-commit' }), 'commit() without an explicit flush')

  t.strictSame((await stored(orm)).map((i) => i.name).filter((n) => !n.startsWith('marker-')), ['committed', 'flushed-by-commit'],
    'the rolled-back row was never stored')
})

// ------------------------------------------------------------------ nested transactions (savepoints)

t.test('5a. nested transactional that flushes then throws (caught): only the outer\'s changes are published', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  const held = gate()
  const ids: Record<string, number> = {}

  const tx = orm.em.fork().transactional(async (em) => {
    const before = em.create(Item, { name: 'outer-before' })
    await em.flush()
    ids.before = before.id
    await t.rejects(em.transactional(async (inner) => {
      const doomed = inner.create(Item, { name: 'inner-doomed' })
      await inner.flush()
      ids.doomed = doomed.id
      doomed.name = 'inner-doomed-renamed'
      await inner.flush()
      throw new Error('inner fails')
    }), { message: 'inner fails' }, 'the savepoint throws and the outer catches it')
    const after = em.create(Item, { name: 'outer-after' })
    await em.flush()
    ids.after = after.id
    await held.wait()
  })
  await held.entered
  await nothingSentYet(t, client, 'outer still open: nothing sent, not even the savepoint\'s changes')
  held.open()
  await tx

  t.strictSame(await client.take(2), [
    event('create', { id: ids.before, name: 'outer-before' }),
    event('create', { id: ids.after, name: 'outer-after' })
  ], 'the outer\'s two creates, in order, and nothing from the rolled-back savepoint between them')
  await nothingPublished(t, orm, client, 'nor after them')
  t.strictSame((await stored(orm)).map((i) => i.name).filter((n) => !n.startsWith('marker-')), ['outer-before', 'outer-after'],
    'the database agrees: the savepoint\'s row was rolled back')
})

t.test('5b. nested transactional that succeeds: its changes and the outer\'s are published together after the outer commits', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  const afterInner = gate()
  const beforeCommit = gate()
  const ids: number[] = []

  const tx = orm.em.fork().transactional(async (em) => {
    const a = em.create(Item, { name: 'outer-1' })
    await em.flush()
    ids.push(a.id)
    await em.transactional(async (inner) => {
      const b = inner.create(Item, { name: 'inner' })
      await inner.flush()
      ids.push(b.id)
      b.name = 'inner-renamed'
    }) // the savepoint's closing flush writes the rename, then the savepoint is released
    await afterInner.wait()
    const c = em.create(Item, { name: 'outer-2' })
    await em.flush()
    ids.push(c.id)
    await beforeCommit.wait()
  })
  await afterInner.entered
  await nothingSentYet(t, client, 'the savepoint is released but the outer is open: nothing sent')
  afterInner.open()
  await beforeCommit.entered
  await nothingSentYet(t, client, 'everything flushed, outer still open: nothing sent')
  beforeCommit.open()
  await tx

  const [a, b, c] = ids
  t.strictSame(await client.take(4), [
    event('create', { id: a, name: 'outer-1' }),
    event('create', { id: b, name: 'inner' }),
    event('update', { id: b, name: 'inner-renamed' }),
    event('create', { id: c, name: 'outer-2' })
  ], 'all four changes, in flush order, after the commit')
  await nothingPublished(t, orm, client, 'and nothing more')
})

t.test('5c. two levels of savepoints: a rolled-back middle savepoint drops the changes of the inner one it had released', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  let kept = 0

  await orm.em.fork().transactional(async (em) => {
    await t.rejects(em.transactional(async (middle) => {
      await middle.transactional(async (inner) => {
        inner.create(Item, { name: 'innermost' })
        await inner.flush()
      })
      throw new Error('middle fails after its inner savepoint was released')
    }))
    const item = em.create(Item, { name: 'kept' })
    await em.flush()
    kept = item.id
  })
  t.strictSame(await client.next(), event('create', { id: kept, name: 'kept' }), 'only the outer\'s change')
  await nothingPublished(t, orm, client, 'the innermost create (inside the rolled-back middle savepoint) never arrives')
  t.strictSame((await stored(orm)).map((i) => i.name).filter((n) => !n.startsWith('marker-')), ['kept'])
})

t.test('6. outer transaction rolled back after a successful nested one → nothing published', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)

  await t.rejects(orm.em.fork().transactional(async (em) => {
    em.create(Item, { name: 'outer' })
    await em.flush()
    await em.transactional(async (inner) => {
      inner.create(Item, { name: 'inner-released' })
      await inner.flush()
    })
    throw new Error('outer fails')
  }), { message: 'outer fails' })
  t.strictSame(await stored(orm), [], 'nothing stored')
  await nothingPublished(t, orm, client, 'neither the outer\'s nor the released savepoint\'s change was published')

  // The same with em.begin(): a nested transactional inside it, then rollback().
  const em = orm.em.fork()
  await em.begin()
  await em.transactional(async (inner) => {
    inner.create(Item, { name: 'inner-of-begin' })
    await inner.flush()
  })
  await em.rollback()
  await nothingPublished(t, orm, client, 'begin() + nested transactional + rollback(): nothing')
})

// ------------------------------------------------------------------ the plugin's own actions

t.test('7. a plugin action that flushes then fails in its transaction → 500, rolled back, nothing published', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  const writer = await openClient(t, `${base}/items/`)

  const reply = await writer.request('boom')
  t.equal(reply.response_status, 500)
  t.equal(reply.data, null)
  t.equal(reply.action, 'boom')
  t.strictSame(await stored(orm), [], 'the transaction was rolled back')
  await nothingPublished(t, orm, client, 'the rolled-back create of the failed action sent nothing')

  // The contrast: without a transaction the flush has committed before the throw, so it is published.
  const untransacted = await writer.request('boom-untransacted')
  t.equal(untransacted.response_status, 500)
  const row = (await stored(orm)).find((i) => i.name === 'boom-untransacted')
  t.ok(row, 'without a transaction the flushed row stays')
  t.strictSame(await client.next(), event('create', { id: row?.id, name: 'boom-untransacted' }),
    'and, being committed, it is published although the action failed')
})

// ------------------------------------------------------------------ writes the unit of work does not see

t.test('8. nativeUpdate / nativeDelete / insert / raw SQL bypass the unit of work: NOT published (current behaviour)', async (t) => {
  const { orm, base } = await startItems(t)
  const [one, two] = await seedItems(orm, 'one', 'two')
  const client = await listSubscriber(t, base)
  const instance = await openClient(t, `${base}/items/`)
  instance.send({ action: 'subscribe_instance', request_id: 'one', pk: one })
  t.equal((await instance.next()).response_status, 201)

  const em = orm.em.fork()
  t.equal(await em.nativeUpdate(Item, { id: one }, { name: 'natively-updated' }), 1)
  await nothingPublished(t, orm, client, 'nativeUpdate sent nothing')
  t.equal(await em.nativeDelete(Item, { id: two }), 1)
  await nothingPublished(t, orm, client, 'nativeDelete sent nothing')
  await em.insert(Item, { name: 'natively-inserted' })
  await nothingPublished(t, orm, client, 'em.insert sent nothing')
  await em.getConnection().execute('update item set name = ? where id = ?', ['raw-sql', one])
  await nothingPublished(t, orm, client, 'raw SQL sent nothing')
  await em.transactional(async (tx) => { await tx.nativeUpdate(Item, { id: one }, { name: 'native-in-transaction' }) })
  await nothingPublished(t, orm, client, 'nativeUpdate inside a committed transaction sent nothing')

  // The instance subscriber to row one saw none of it either: a unit-of-work update is its first event.
  const names = (await stored(orm)).map((i) => i.name)
  t.ok(names.includes('native-in-transaction') && names.includes('natively-inserted') && !names.includes('two'), 'the native writes did happen')
  const fork = orm.em.fork()
  const item = await fork.findOneOrFail(Item, one)
  item.name = 'through-the-uow'
  await fork.flush()
  t.strictSame(await instance.next(), event('update', { id: one, name: 'through-the-uow' }, 'one'),
    'the instance subscription\'s first event is the unit-of-work update')
  t.strictSame(await client.next(), event('update', { id: one, name: 'through-the-uow' }))
})

// ------------------------------------------------------------------ flushes that change nothing

t.test('9. a flush that changes nothing publishes nothing', async (t) => {
  const { orm, base } = await startItems(t)
  const [id] = await seedItems(orm, 'same')
  const client = await listSubscriber(t, base)
  const writer = await openClient(t, `${base}/items/`)

  const em = orm.em.fork()
  const item = await em.findOneOrFail(Item, id)
  await em.flush()
  await nothingPublished(t, orm, client, 'flush of a loaded, untouched entity')
  item.name = 'same'
  await em.flush()
  await nothingPublished(t, orm, client, 'flush after setting a property to the value it already has')
  item.name = 'different'
  item.name = 'same'
  await em.flush()
  await nothingPublished(t, orm, client, 'flush after changing a property and changing it back')
  await orm.em.fork().transactional(async (tx) => {
    const loaded = await tx.findOneOrFail(Item, id)
    loaded.name = 'same'
    await tx.flush()
  })
  await nothingPublished(t, orm, client, 'a committed transaction whose flushes changed nothing')

  const patched = await writer.request('patch', { pk: id, data: { name: 'same' } })
  t.strictSame([patched.response_status, patched.data], [200, { id, name: 'same' }], 'a patch with the current value succeeds')
  await nothingPublished(t, orm, client, 'and sends no event')
})

// ------------------------------------------------------------------ shaping

const SECRET = 'TOP-SECRET-VALUE'
const PIN = '4242-HIDDEN-PIN'

/** `secret` is an ordinary column the response schema leaves out; `pin` is hidden in MikroORM too. */
const Gadget = defineEntity({
  name: 'Gadget',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    secret: p.string().default(SECRET),
    pin: p.string().hidden().default(PIN)
  })
})
type Gadget = InferEntity<typeof Gadget>
const GadgetInput = Type.Object({ name: Type.String({ minLength: 1 }) })
const GadgetPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

t.test('10. event data is shaped by the route\'s response schema: a field outside it never appears in an event', async (t) => {
  const changes: ModelChange[] = []
  const { orm, base } = await startApp(t, [Gadget], (app) => {
    app.wsRest.route('/gadgets/', {
      entity: Gadget,
      schema: { create: GadgetInput, update: GadgetInput, response: GadgetPublic },
      actions: [mixins.create(), mixins.patch(), mixins.delete(), mixins.subscribeList(), mixins.subscribeInstance()]
    })
    app.wsRest.observe(Gadget, { groups: (change) => { changes.push(change); return [] } })
  })
  const frames: string[] = []
  const list = await openClient(t, `${base}/gadgets/`)
  const instance = await openClient(t, `${base}/gadgets/`)
  for (const client of [list, instance]) client.socket.on('message', (data) => frames.push(data.toString()))
  list.send({ action: 'subscribe_list', request_id: LIVE })
  t.equal((await list.next()).response_status, 201)

  const writer = await openClient(t, `${base}/gadgets/`)
  const id = (await writer.request('create', { data: { name: 'g1' } })).data.id as number
  t.strictSame(await list.next(), event('create', { id, name: 'g1' }), 'create: exactly the response schema\'s fields')
  instance.send({ action: 'subscribe_instance', request_id: 'inst', pk: id })
  t.equal((await instance.next()).response_status, 201)

  // Other code of the app writes the column the schema leaves out, with a value of its own.
  const em = orm.em.fork()
  const gadget = await em.findOneOrFail(Gadget, id)
  gadget.secret = `${SECRET}-2`
  await em.flush()
  t.strictSame(await list.next(), event('update', { id, name: 'g1' }), 'a change of the unlisted column alone: an update, still without it')
  t.strictSame(await instance.next(), event('update', { id, name: 'g1' }, 'inst'), 'the instance subscription too')

  gadget.name = 'g1-renamed'
  gadget.pin = 'another-pin'
  await em.flush()
  t.strictSame(await list.next(), event('update', { id, name: 'g1-renamed' }))
  t.strictSame(await instance.next(), event('update', { id, name: 'g1-renamed' }, 'inst'))

  em.create(Gadget, { name: 'g2', secret: `${SECRET}-3`, pin: PIN })
  await em.flush()
  const g2 = await orm.em.fork().findOneOrFail(Gadget, { name: 'g2' })
  t.strictSame(await list.next(), event('create', { id: g2.id, name: 'g2' }), 'a create by app code, shaped')

  t.equal((await writer.request('delete', { pk: id })).response_status, 204)
  t.strictSame(await list.next(), event('delete', { pk: id }))
  t.strictSame(await instance.next(), event('delete', { pk: id }, 'inst'))

  t.ok(frames.length >= 8, 'frames were recorded')
  t.strictSame(frames.filter((f) => f.includes(SECRET) || f.includes('"secret"') || f.includes('"pin"') || f.includes(PIN) || f.includes('another-pin')), [],
    'no frame carries the unlisted or the hidden column, by key or by value')
  // What crosses the broadcast layer (and Redis, between servers) never holds the hidden column.
  t.ok(changes.length >= 4, 'the app\'s groups function saw the changes')
  t.notOk(changes.some((c) => (c.before !== null && 'pin' in c.before) || (c.after !== null && 'pin' in c.after)),
    'a hidden property is not even in the published change')
  t.ok(changes.some((c) => c.after?.secret === `${SECRET}-2`), 'an unlisted (not hidden) column is: shaping happens per subscriber')
})

// ------------------------------------------------------------------ before subscribing; repeated changes of one row

t.test('11. a change committed before subscribing is not delivered; two changes of one row in one transaction → two updates, in order', async (t) => {
  const { orm, base } = await startItems(t)
  const [id] = await seedItems(orm, 'v0')
  {
    const em = orm.em.fork()
    const item = await em.findOneOrFail(Item, id)
    item.name = 'v0-renamed'
    await em.flush()
  }
  const client = await listSubscriber(t, base)
  const instance = await openClient(t, `${base}/items/`)
  instance.send({ action: 'subscribe_instance', request_id: 'inst', pk: id })
  t.equal((await instance.next()).response_status, 201)
  await nothingSentYet(t, client, 'the create and update committed before subscribing were not delivered')
  await nothingSentYet(t, instance, 'nor to the instance subscription')

  await orm.em.fork().transactional(async (em: EntityManager) => {
    const item = await em.findOneOrFail(Item, id)
    item.name = 'v1'
    await em.flush()
    item.name = 'v2'
    await em.flush()
  })
  t.strictSame(await client.take(2), [event('update', { id, name: 'v1' }), event('update', { id, name: 'v2' })],
    'list: two updates, in order')
  t.strictSame(await instance.take(2), [event('update', { id, name: 'v1' }, 'inst'), event('update', { id, name: 'v2' }, 'inst')],
    'instance: two updates, in order')
  await nothingPublished(t, orm, client, 'and nothing else')
})

// ------------------------------------------------------------------ beyond the savepoint rules

t.test('12. REQUIRES_NEW inside an outer transaction is a root of its own: published at its commit, even though the outer rolls back', {
  skip: dialect === 'sqlite' ? 'SQLite has one connection: a second, independent transaction would wait for the outer forever' : false
}, async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  let independent = 0

  await t.rejects(orm.em.fork().transactional(async (em) => {
    em.create(Item, { name: 'outer' })
    await em.flush()
    await em.transactional(async (inner) => {
      const item = inner.create(Item, { name: 'independent' })
      await inner.flush()
      independent = item.id
    }, { propagation: TransactionPropagation.REQUIRES_NEW })
    t.strictSame(await client.next(), event('create', { id: independent, name: 'independent' }),
      'the independent transaction\'s create arrives while the outer is still open')
    throw new Error('outer fails')
  }), { message: 'outer fails' })
  t.strictSame((await stored(orm)).map((i) => i.name), ['independent'])
  await nothingPublished(t, orm, client, 'the outer\'s rolled-back create never arrives')
})

t.test('13. a query error caught inside a transaction: the change is published if and only if it was committed', async (t) => {
  const { orm, base } = await startItems(t)
  const client = await listSubscriber(t, base)
  let id = 0

  const result = await orm.em.fork().transactional(async (em) => {
    const item = em.create(Item, { name: 'maybe' })
    await em.flush()
    id = item.id
    await t.rejects(em.getConnection().execute('select * from no_such_table', [], 'all', em.getTransactionContext()),
      'a failing query in the transaction, caught by the app')
    return 'done'
  })
  t.equal(result, 'done', 'transactional() resolved (on both databases)')
  const committed = (await stored(orm)).some((i) => i.name === 'maybe')
  t.equal(committed, dialect === 'sqlite', 'SQLite keeps the transaction going and commits; PostgreSQL rolled it back')
  if (committed) {
    t.strictSame(await client.next(), event('create', { id, name: 'maybe' }), 'committed → published')
  } else {
    await nothingPublished(t, orm, client, 'not committed → nothing published')
  }
})
