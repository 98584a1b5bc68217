/**
 * Graceful shutdown under load: `app.close()` while 20 sockets keep writing, single-row
 * creates (group-committed) and a transactional action writing two rows.
 *
 * What must hold: `app.close()` resolves; every socket closes with 1001; an upgrade
 * attempted once the close has begun is refused; every write a client saw a 2xx reply
 * for is in the database, read back through a new ORM after the app (and its ORM) closed;
 * and no two-row write is half there. A write whose reply never arrived may or may not
 * be committed.
 */
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import wsRest, { action, mixins } from '../index.js'
import { updateSchema } from '../lib/orm-compat.js'
import { deferred, gate, within, type Gate } from './helpers/async.js'
import { connect, type TestClient, type WireReply } from './helpers/client.js'
import { createDatabase, type TestDatabase } from './helpers/database.js'
import { Item, itemModel } from './helpers/item.js'

const SOCKETS = 20
/** Requests each socket keeps in flight. */
const WINDOW = 4

interface Server {
  app: FastifyInstance
  url: string
  database: TestDatabase
  /** Resolves when `app.close()` has begun: routes closed, the drain about to start. */
  closeBegan: Promise<void>
  /**
   * Arm the next `create_pair` to stop at a gate between its two rows; `draining` resolves
   * when its `ctx.signal` aborts, which is when the socket stops taking frames.
   */
  holdPair: () => { gate: Gate, draining: Promise<void> }
}

/**
 * An app on a database that outlives it (a SQLite file, or a PostgreSQL database), with
 * `create` and `create_pair` on `/items/`; closed in teardown unless the test closed it.
 */
async function start (t: Test): Promise<Server> {
  const database = await createDatabase(t, { reopenable: true })
  const orm = await database.open([Item])
  await updateSchema(orm)
  const app = Fastify({ logger: false })
  const began = deferred()
  // Added before the plugin: Fastify runs preClose hooks in order, and has already closed
  // its routes when the first one runs, so this marks the moment new upgrades are refused.
  app.addHook('preClose', async () => { began.resolve() })
  app.addHook('onClose', async () => { await orm.close() })
  t.teardown(async () => { if (!closing.has(app)) await app.close() })
  await app.register(wsRest, { orm })

  let armed: { gate: Gate, draining: () => void } | undefined
  app.wsRest.route('/items/', {
    ...itemModel,
    actions: [
      mixins.create(),
      // Two rows in one transaction with a round trip between them: a shutdown that cut
      // the action short, or committed it in halves, would leave `<tag>/a` without `<tag>/b`.
      action('create_pair', { transaction: true, schema: Type.Object({ tag: Type.String({ minLength: 1 }) }) }, async (ctx, { tag }) => {
        const a = ctx.em.create(Item, { name: `${tag}/a` })
        await ctx.em.flush()
        const held = armed
        armed = undefined
        if (held !== undefined) {
          ctx.signal.addEventListener('abort', held.draining)
          await held.gate.wait()
        }
        await ctx.em.count(Item, { name: `${tag}/a` })
        const b = ctx.em.create(Item, { name: `${tag}/b` })
        await ctx.em.flush()
        return { status: 201, data: ctx.model!.serialize([a, b]) }
      })
    ]
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return {
    app,
    url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/items/`,
    database,
    closeBegan: began.promise,
    holdPair: () => {
      const draining = deferred()
      armed = { gate: gate(), draining: () => draining.resolve() }
      return { gate: armed.gate, draining: draining.promise }
    }
  }
}

/** Apps whose close the test started itself (teardown then leaves them alone). */
const closing = new WeakSet<object>()

function close (app: FastifyInstance): Promise<undefined> {
  closing.add(app)
  return app.close()
}

/** Try to open a socket: 'open' if it opened (then closed again), else how it was refused. */
async function tryUpgrade (url: string): Promise<string> {
  const socket = new WebSocket(url)
  return await new Promise((resolve) => {
    socket.once('open', () => { socket.close(); resolve('open') })
    socket.once('unexpected-response', (_request, response) => { response.resume(); resolve(`HTTP ${response.statusCode ?? '?'}`) })
    socket.once('error', (err) => resolve(`error: ${err.message}`))
  })
}

/** The names in the database, read through a new ORM (the app's is closed). */
async function namesIn (database: TestDatabase): Promise<Set<string>> {
  const orm = await database.open([Item])
  return new Set((await orm.em.fork().find(Item, {})).map((item) => item.name))
}

t.test('app.close() under write load from 20 sockets: resolves, closes each with 1001, refuses new upgrades, and keeps every acknowledged write whole', async (t) => {
  const { app, url, database, closeBegan } = await start(t)

  const sent = new Set<string>()
  const ackedCreates: string[] = []
  const ackedPairs: string[] = []
  let acked = 0
  let ackedAfterClose = 0
  let closeStarted = false
  const warm = deferred()
  const clients: TestClient[] = await Promise.all(Array.from({ length: SOCKETS }, async () => await connect(url)))

  clients.forEach((client, c) => {
    let n = 0
    const requests = new Map<string, { kind: 'create' | 'pair', name: string }>()
    /** Send the next write: creates and pairs in turn, each with a name of its own. */
    const sendOne = (): void => {
      if (client.socket.readyState !== WebSocket.OPEN) return
      const id = `${c}-${n++}`
      const kind = n % 2 === 0 ? 'create' : 'pair'
      requests.set(id, { kind, name: `s${id}` })
      sent.add(`s${id}`)
      client.send(kind === 'create'
        ? { action: 'create', request_id: id, data: { name: `s${id}` } }
        : { action: 'create_pair', request_id: id, tag: `s${id}` })
    }
    client.socket.on('message', (data) => {
      const reply = JSON.parse(String(data)) as WireReply
      const request = requests.get(String(reply.request_id))
      if (request === undefined) return
      requests.delete(String(reply.request_id))
      if (reply.response_status >= 200 && reply.response_status < 300) {
        ;(request.kind === 'create' ? ackedCreates : ackedPairs).push(request.name)
        acked++
        if (closeStarted) ackedAfterClose++
        if (acked >= 200) warm.resolve()
      }
      sendOne() // keep the window full until the socket closes
    })
    for (let i = 0; i < WINDOW; i++) sendOne()
  })

  await within(warm.promise, '200 acknowledged writes before the close', 30_000)
  const closed = close(app)
  await within(closeBegan, 'the close to begin')
  closeStarted = true
  const refused = await within(tryUpgrade(url), 'an upgrade attempted during the close')
  t.not(refused, 'open', `an upgrade after the close began is refused (${refused})`)

  await within(closed, 'app.close()', 15_000)
  const codes = await within(Promise.all(clients.map(async (client) => (await client.closed).code)), 'every socket closed')
  t.strictSame(codes, Array(SOCKETS).fill(1001), 'every socket closed with 1001')
  t.not(await tryUpgrade(url), 'open', 'and after the close, nothing listens')

  const names = await namesIn(database)
  t.ok(acked >= 200, `${acked} writes acknowledged`)
  t.ok(ackedAfterClose > 0, `${ackedAfterClose} of them after the close began: it came in the middle of the load`)
  t.strictSame(ackedCreates.filter((name) => !names.has(name)), [], 'every acknowledged create is in the database')
  t.strictSame(ackedPairs.filter((tag) => !names.has(`${tag}/a`) || !names.has(`${tag}/b`)), [],
    'every acknowledged pair is in the database, both rows')
  const half = [...names].filter((name) => name.endsWith('/a') ? !names.has(`${name.slice(0, -2)}/b`) : name.endsWith('/b') && !names.has(`${name.slice(0, -2)}/a`))
  t.strictSame(half, [], 'no pair is half-written')
  const written = new Set([...names].map((name) => name.replace(/\/[ab]$/, '')))
  t.strictSame([...written].filter((name) => !sent.has(name)), [], 'nothing the clients did not send')
  t.comment(`${written.size} writes committed, ${acked} acknowledged`)
})

t.test('a two-row write between its rows when app.close() begins is finished and answered, both rows committed, before the 1001', async (t) => {
  const { app, url, database, holdPair } = await start(t)
  const client = await connect(url)
  const { gate: held, draining } = holdPair()
  client.send({ action: 'create_pair', request_id: 'p', tag: 'held' })
  await within(held.entered, 'the first row written')
  const closed = close(app)
  await within(draining, 'the socket draining')
  // Frames arriving now are ignored: the socket is draining, not taking new work.
  client.send({ action: 'create', request_id: 'late', data: { name: 'late' } })
  held.open()

  const reply = await client.next()
  t.strictSame([reply.request_id, reply.response_status, reply.data.map((item: { name: string }) => item.name)], ['p', 201, ['held/a', 'held/b']])
  t.equal((await client.waitClose()).code, 1001, 'then the close')
  // Everything the server sent arrived before its close frame: nothing more can come.
  await t.rejects(client.next(1), 'no reply to the late frame')
  await within(closed, 'app.close()')
  t.strictSame([...await namesIn(database)].sort(), ['held/a', 'held/b'], 'both rows, and not the late frame\'s')
})
