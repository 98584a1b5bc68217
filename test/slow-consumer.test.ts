/**
 * Bounded outbound queues: a subscriber that stops reading is closed with 1013 once its
 * socket's outbound buffer passes `maxOutbound`, its subscriptions are released, and the
 * subscribers that do read lose nothing. Real sockets; the slow client's TCP socket is
 * paused so the kernel buffers fill exactly as with a stalled browser tab.
 */
import { defineEntity } from '@mikro-orm/core'
import type { Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import { action, MemoryLayer, mixins } from '../index.js'
import { deferred, eventually, gate, within } from './helpers/async.js'
import { openClient, type TestClient } from './helpers/client.js'
import { Item } from './helpers/item.js'
import { startApp } from './helpers/server.js'

function tcpOf (client: TestClient): Socket {
  return (client.socket as unknown as { _socket: Socket })._socket
}

t.test('a subscriber that does not read is closed with 1013; a reading one gets every event', async (t) => {
  const layer = new MemoryLayer()
  const { app, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/feed/', {
      actions: [action('follow', { schema: Type.Object({}) }, async (ctx) => {
        await ctx.subscribe('feed')
        return { status: 201 }
      })]
    })
  }, { broadcast: layer, maxOutbound: 256 * 1024 })

  const slow = await openClient(t, `${base}/feed/`)
  const fast = await openClient(t, `${base}/feed/`)
  await slow.request('follow')
  await fast.request('follow')
  let received = 0
  let published = 0
  let caughtUp = deferred()
  fast.socket.on('message', () => { if (++received >= published) caughtUp.resolve() })

  tcpOf(slow).pause()
  const text = 'x'.repeat(16 * 1024)
  collectGarbage()
  const heapBefore = process.memoryUsage().heapUsed
  /** Whether the server has given up on a socket (it is closing it). */
  const dropped = (): boolean => [...app.websocketServer.clients].some((c) => c.readyState !== c.OPEN)
  // Publish until the server gives up on the slow socket, bounded at 10,000 events (160 MB).
  // Four events (64 KiB, a quarter of maxOutbound) at a time, the next ones only once the
  // reading subscriber has them all: its backlog never nears the bound however slowly this
  // machine runs it, so only the stalled one can be dropped (under load a larger burst once
  // dropped the reading one too).
  while (published < 10_000 && !dropped()) {
    caughtUp = deferred()
    for (let i = 0; i < 4; i++) app.wsRest.publish('feed', { n: published++, text })
    await within(caughtUp.promise, `the reading subscriber got events up to ${published}`, 30_000)
  }
  t.ok(published < 10_000, `the slow socket was dropped after ${published} events of 16 KiB`)
  t.equal(fast.socket.readyState, fast.socket.OPEN, 'the reading subscriber was not dropped')
  t.equal(received, published, 'the reading subscriber lost nothing')
  collectGarbage()
  t.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'heap did not grow with the stalled socket')

  tcpOf(slow).resume()
  const { code } = await slow.waitClose(10_000)
  t.equal(code, 1013, 'the stalled client is told why: 1013, try again later')
  t.strictSame(layer.groups(), ['feed'], 'the reading subscriber still listens')

})

t.test('events held back by a slow permission check are bounded too: past 1,024 waiting, the socket is closed with 1013', async (t) => {
  const held = gate()
  const { app, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/feed/', {
      // The permission check of each event waits at the gate: as a permission calling a slow auth service would.
      permissions: [{ hasPermission: async (_ctx, name) => { if (name === 'follow') await held.wait(); return true } }],
      actions: [action('follow', { schema: Type.Object({}) }, async (ctx) => {
        await ctx.subscribe('feed')
        return { status: 201 }
      })]
    })
  })
  const client = await openClient(t, `${base}/feed/`)
  client.send({ action: 'follow', request_id: 'f' })
  await held.entered
  held.open()
  t.equal((await client.next()).response_status, 201)

  const stalled = gate()
  const checks = { count: 0 }
  // From now on every check stalls until the gate opens.
  held.wait = async () => { checks.count++; await stalled.wait() }
  for (let i = 0; i < 1100; i++) app.wsRest.publish('feed', { n: i })
  const { code } = await client.waitClose()
  t.equal(code, 1013)
  t.ok(checks.count >= 1, 'the events were waiting on the permission check')
  stalled.open()
})

/**
 * A full garbage collection, so that what is measured next is what is still referenced.
 * tap does not start node with --expose-gc; the flag can still be turned on at run time,
 * and a new context then gets the `gc` function.
 */
function collectGarbage (): void {
  const g = globalThis as { gc?: () => void }
  if (g.gc === undefined) {
    setFlagsFromString('--expose-gc')
    g.gc = runInNewContext('gc') as () => void
  }
  g.gc()
  g.gc() // a second pass: what the first one freed may have kept other objects alive
}

/** A row with a text column: its changes can be as large as a test needs (Item's name is a varchar(255) on PostgreSQL). */
const Doc = defineEntity({
  name: 'Doc',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    body: p.text()
  })
})
const DocInput = Type.Object({ body: Type.String({ trim: false }) })
const docModel = { entity: Doc, schema: { create: DocInput, update: DocInput, response: Type.Object({ id: Type.Integer(), body: Type.String() }) } }

t.test('a stalled subscriber of 100 MiB of row changes is closed with 1013 at a 256 KiB backlog, and the server\'s RSS stays flat', async (t) => {
  const { app, base, orm } = await startApp(t, [Doc], (app) => {
    app.wsRest.route('/docs/', { ...docModel, actions: [mixins.patch(), mixins.subscribeList()] })
  }, { maxOutbound: 256 * 1024 })
  // One row per writer, so that the writers' patches can share a flush (group commit).
  const em = orm.em.fork()
  const docs = [1, 2, 3, 4].map(() => em.create(Doc, { body: 'start' }))
  await em.flush()
  const slow = await openClient(t, `${base}/docs/`)
  // Four subscriptions to the same list (four request_ids): each change reaches the socket
  // four times, as four frames, so 100 MiB of events take a quarter of the writes.
  const SUBSCRIPTIONS = 4
  for (let s = 0; s < SUBSCRIPTIONS; s++) {
    t.equal((await slow.ask({ action: 'subscribe_list', request_id: `docs-${s}` })).response_status, 201)
  }
  const writers = await Promise.all(docs.map(async () => await openClient(t, `${base}/docs/`)))

  // Real writes through the protocol: every patch gives a row a new 32 KiB body, and each
  // commit sends the subscriber four events of that size (the writer gets its reply too).
  const SIZE = 32 * 1024
  let n = 0
  /** `count` patches, spread over `writers` (each sends its next one when the last is answered). */
  const patches = async (count: number, by = writers): Promise<void> => {
    await Promise.all(by.map(async (writer, w) => {
      for (let i = 0; i < count / by.length; i++) {
        const body = `${n++}:`.padEnd(SIZE, 'x')
        const reply = await writer.request('patch', { pk: docs[w].id, data: { body } }, 10_000)
        if (reply.response_status !== 200) throw new Error(`patch: ${JSON.stringify(reply.errors)}`)
      }
    }))
  }

  // Warm up while the subscriber reads: code compiled, pools and buffers at their working size.
  // One writer at a time here: a burst of changes larger than maxOutbound would have the
  // reading subscriber dropped too, before it can read.
  await patches(40, writers.slice(0, 1))
  t.equal((await slow.take(40 * SUBSCRIPTIONS, 10_000)).length, 40 * SUBSCRIPTIONS, 'a reading subscriber gets every event')
  collectGarbage()
  const before = process.memoryUsage()

  tcpOf(slow).pause()
  const EVENTS = 3200 // 800 patches × 4 subscriptions × 32 KiB = 100 MiB of events at the stalled subscriber
  await patches(EVENTS / SUBSCRIPTIONS)
  collectGarbage()
  const after = process.memoryUsage()

  // The clients run in this process too; the stalled one's unread bytes sit in the kernel's
  // socket buffers, which RSS does not count.
  const MiB = 1024 * 1024
  const growth = (after.rss - before.rss) / MiB
  const shown = (key: 'rss' | 'heapTotal' | 'heapUsed' | 'external'): string => `${key} ${(before[key] / MiB).toFixed(1)} → ${(after[key] / MiB).toFixed(1)}`
  t.comment(`pushed ${EVENTS * SIZE / MiB} MiB of events at the stalled subscriber; RSS grew ${growth.toFixed(1)} MiB (MiB: ${(['rss', 'heapTotal', 'heapUsed', 'external'] as const).map(shown).join(', ')})`)
  // Had the backlog not been bounded, the server would now hold what the kernel's socket
  // buffers could not take (100 MiB minus a few) in memory: measured +105 MiB with
  // maxOutbound at 1 GiB. Bounded, it holds at most maxOutbound plus one event; measured
  // −1 to +14 MiB, the allocator keeping freed memory. 48 MiB stays clear of that noise and
  // fails at half the unbounded backlog.
  t.ok(growth < 48, `RSS grew by ${growth.toFixed(1)} MiB (< 48 MiB)`)

  // The server's side of the stalled socket is closing (its 1013 waits behind the backlog) or gone.
  const clients = app.websocketServer.clients
  await eventually(() => clients.size === writers.length || [...clients].some((c) => c.readyState !== c.OPEN),
    'the server gave up on the stalled subscriber')

  tcpOf(slow).resume()
  const { code } = await slow.waitClose(10_000)
  t.equal(code, 1013, 'the stalled subscriber is told to try again later')
  const ok = await writers[0].request('patch', { pk: docs[0].id, data: { body: 'after' } })
  t.equal(ok.response_status, 200, 'the writers go on')
})
