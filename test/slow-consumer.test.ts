/**
 * Bounded outbound queues: a subscriber that stops reading is closed with 1013 once its
 * socket's outbound buffer passes `maxOutbound`, its subscriptions are released, and the
 * subscribers that do read lose nothing. Real sockets; the slow client's TCP socket is
 * paused so the kernel buffers fill exactly as with a stalled browser tab.
 */
import type { Socket } from 'node:net'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import { action, MemoryLayer } from '../index.js'
import { eventually, gate } from './helpers/async.js'
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
  fast.socket.on('message', () => { received++ })

  tcpOf(slow).pause()
  const text = 'x'.repeat(16 * 1024)
  let published = 0
  const heapBefore = process.memoryUsage().heapUsed
  /** Whether the server has given up on a socket (it is closing it). */
  const dropped = (): boolean => [...app.websocketServer.clients].some((c) => c.readyState !== c.OPEN)
  // Publish until the server gives up on the slow socket, bounded at 10,000 events (160 MB).
  while (published < 10_000 && !dropped()) {
    for (let i = 0; i < 50; i++) app.wsRest.publish('feed', { n: published++, text })
    // Let ws hand the frames to the kernel, and the reading client drain them.
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(published < 10_000, `the slow socket was dropped after ${published} events of 16 KiB`)
  await eventually(() => received >= published, 'the reading subscriber got every event')
  t.equal(received, published, 'the reading subscriber lost nothing')
  t.ok(process.memoryUsage().heapUsed - heapBefore < 64 * 1024 * 1024, 'heap did not grow with the stalled socket')

  tcpOf(slow).resume()
  const { code } = await slow.waitClose(10_000)
  t.equal(code, 1013, 'the stalled client is told why: 1013, try again later')
  t.same(layer.groups(), ['feed'], 'the reading subscriber still listens')

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
