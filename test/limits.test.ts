/**
 * Limits, each with its error: the origins allowed to open a socket (403 at the upgrade),
 * actions per second per socket (429 reply, socket stays), actions in flight per socket
 * (429), subscriptions per socket (429), sockets per IP (429 at the upgrade) and in all
 * (503), and heartbeats that drop a peer that stopped answering pings. Real sockets.
 */
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import wsRest, { action, type WsRestOptions } from '../index.js'
import { deferred, eventually, within } from './helpers/async.js'
import { openClient, upgradeStatus } from './helpers/client.js'
import { Item } from './helpers/item.js'
import { startApp } from './helpers/server.js'

const THROTTLED = ['Request was throttled.']

/** A route with a constant action, a held (detached) one, and a subscribing one. */
async function start (t: Test, options: Omit<WsRestOptions, 'orm'>): Promise<{ base: string, release: () => void }> {
  const held = deferred()
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('ping', () => ({ data: 'pong' })),
        action('hold', { detached: true }, async () => { await held.promise; return {} }),
        action('join', { schema: Type.Object({ group: Type.String() }) }, async (ctx, { group }) => {
          await ctx.subscribe(group)
          return { status: 201 }
        })
      ]
    })
  }, options)
  return { base: `${base}/ws/`, release: () => held.resolve() }
}

/** The HTTP status an upgrade with these headers gets (101 when the socket opens). */
async function upgradeWith (url: string, headers: Record<string, string>): Promise<number> {
  const socket = new WebSocket(url, { headers })
  return await new Promise((resolve, reject) => {
    socket.once('open', () => { socket.close(); resolve(101) })
    socket.once('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode ?? 0) })
    socket.once('error', (err) => { if (!String(err.message).includes('Unexpected server response')) reject(err) })
  })
}

t.test('allowedOrigins: another site\'s origin is refused with 403; an allowed one, or none (not a browser), opens', async (t) => {
  const { base } = await start(t, { allowedOrigins: ['https://app.example.com', 'http://localhost:3000/'] })
  t.equal(await upgradeWith(base, { origin: 'https://evil.example.net' }), 403, 'cross-site WebSocket hijacking refused')
  t.equal(await upgradeWith(base, { origin: 'https://app.example.com' }), 101)
  t.equal(await upgradeWith(base, { origin: 'HTTPS://APP.EXAMPLE.COM' }), 101, 'compared case-insensitively')
  t.equal(await upgradeWith(base, { origin: 'http://localhost:3000' }), 101, 'a trailing slash in the option is ignored')
  t.equal(await upgradeWith(base, { origin: 'https://app.example.com.evil.net' }), 403, 'no prefix matching')
  t.equal(await upgradeStatus(base), 101, 'no Origin header (a server-side client) is allowed')

  const fn = await start(t, { allowedOrigins: (origin) => origin.endsWith('.trusted.test') })
  t.equal(await upgradeWith(fn.base, { origin: 'https://a.trusted.test' }), 101)
  t.equal(await upgradeWith(fn.base, { origin: 'https://a.untrusted.test' }), 403)
})

t.test('maxActionsPerSecond: frames past the rate get 429 with their request_id, and the socket stays open', async (t) => {
  const RATE = 5
  const { base } = await start(t, { maxActionsPerSecond: RATE })
  // The socket's budget starts full (RATE actions) when the server accepts it, and refills at
  // RATE a second. `started` is taken before the upgrade and `ended` after the last reply, so
  // the server's window lies within them: at most RATE + RATE × elapsed seconds can be answered,
  // however slow the machine (a slow machine loosens the bound; it never fails a correct server).
  const started = performance.now()
  const client = await openClient(t, base)
  for (let i = 0; i < 20; i++) client.send({ action: 'ping', request_id: i })
  const replies = await client.take(20)
  const elapsed = (performance.now() - started) / 1000
  const ok = replies.filter((r) => r.response_status === 200)
  const throttled = replies.filter((r) => r.response_status === 429)
  const bound = RATE + Math.floor(RATE * elapsed)
  t.ok(ok.length >= RATE, `the first ${RATE} (a full budget) are answered: ${ok.length}`)
  t.ok(ok.length <= bound, `at most ${bound} answered in ${elapsed.toFixed(3)} s: ${ok.length}, ${throttled.length} throttled`)
  const answered = ok.map((r) => r.request_id)
  t.ok([0, 1, 2, 3, 4].every((id) => answered.includes(id)), 'the first frames sent spend the full budget, their numeric request_ids echoed as numbers')
  t.equal(ok.length + throttled.length, 20)
  t.strictSame(throttled[0], { errors: THROTTLED, data: null, action: 'ping', response_status: 429, request_id: throttled[0].request_id })
  t.equal(typeof throttled[0].request_id, 'number', 'a throttled reply echoes the numeric request_id as a number')
  t.strictSame(replies.map((r) => r.request_id).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 20 }, (_v, i) => i),
    'every frame answered once, with its own request_id')
  t.equal(client.socket.readyState, client.socket.OPEN)
})

t.test('maxInFlight: past the actions waiting or running on a socket, a request gets 429 at once', async (t) => {
  const { base, release } = await start(t, { maxInFlight: 3 })
  const client = await openClient(t, base)
  for (let i = 0; i < 3; i++) client.send({ action: 'hold', request_id: `h${i}` })
  client.send({ action: 'ping', request_id: 'over' })
  t.strictSame(await client.next(), { errors: THROTTLED, data: null, action: 'ping', response_status: 429, request_id: 'over' })
  release()
  const held = await client.take(3)
  t.strictSame(held.map((r) => r.response_status), [200, 200, 200], 'the held actions complete')
  t.equal((await client.request('ping')).data, 'pong', 'and the socket takes work again')
})

t.test('maxSubscriptions: one subscription too many → 429 naming the limit; renewing one that exists is not counted', async (t) => {
  const { base } = await start(t, { maxSubscriptions: 2 })
  const client = await openClient(t, base)
  t.equal((await client.request('join', { group: 'a' })).response_status, 201)
  client.send({ action: 'join', request_id: 'same', group: 'b' })
  t.equal((await client.next()).response_status, 201)
  client.send({ action: 'join', request_id: 'same', group: 'b' })
  t.equal((await client.next()).response_status, 201, 'the same subscription again does not count twice')
  const over = await client.request('join', { group: 'c' })
  t.strictSame([over.response_status, over.errors], [429, ['Too many subscriptions: a connection may hold 2.']])
})

t.test('maxConnectionsPerIp → 429 at the upgrade; maxConnections → 503; a closed socket frees its place', async (t) => {
  const perIp = await start(t, { maxConnectionsPerIp: 2 })
  const first = await openClient(t, perIp.base)
  await openClient(t, perIp.base)
  t.equal(await upgradeStatus(perIp.base), 429)
  first.close()
  await within(first.closed, 'close')
  await eventually(async () => await upgradeStatus(perIp.base) === 101, 'a place is free again')

  const total = await start(t, { maxConnections: 2 })
  await openClient(t, total.base)
  await openClient(t, total.base)
  t.equal(await upgradeStatus(total.base), 503)
})

t.test('heartbeats: a peer that stops answering pings is dropped; one that answers stays', async (t) => {
  // A ping goes out every interval; a peer whose pong has not come back by the next one is
  // dropped. The interval is long enough (1 s) that a loaded machine still turns a loopback
  // pong around in time; every wait is on an event (a close, the pings received), bounded.
  const INTERVAL = 1_000
  const { base } = await start(t, { heartbeatInterval: INTERVAL })
  const live = await openClient(t, base)
  let pings = 0
  const thirdPing = deferred()
  live.socket.on('ping', () => { if (++pings === 3) thirdPing.resolve() })
  const dead = new WebSocket(base, { autoPong: false })
  t.teardown(() => dead.terminate())
  await new Promise((resolve) => dead.once('open', resolve))
  const closed = new Promise<number>((resolve) => dead.once('close', (code) => resolve(code)))
  t.equal(await within(closed, 'the dead peer dropped', 20 * INTERVAL), 1006, 'terminated: no close handshake with a dead peer')
  // Three pings answered: the live peer outlived the check that dropped the dead one.
  await within(thirdPing.promise, 'three pings to the live peer', 20 * INTERVAL)
  t.equal(live.socket.readyState, live.socket.OPEN, 'the peer that answers pings is kept')
  t.equal((await live.request('ping')).data, 'pong', 'and still served')
})

t.test('limit options are checked at registration, naming the option', async (t) => {
  for (const [options, name] of [
    [{ allowedOrigins: 'https://a.test' }, 'allowedOrigins'],
    [{ allowedOrigins: [5] }, 'allowedOrigins'],
    [{ maxActionsPerSecond: 0 }, 'maxActionsPerSecond'],
    [{ maxInFlight: -1 }, 'maxInFlight'],
    [{ maxSubscriptions: 1.5 }, 'maxSubscriptions'],
    [{ maxConnections: '10' }, 'maxConnections'],
    [{ maxConnectionsPerIp: null }, 'maxConnectionsPerIp'],
    [{ heartbeatInterval: -5 }, 'heartbeatInterval']
  ] as const) {
    const app = Fastify()
    t.teardown(async () => await app.close())
    const err = await app.register(wsRest, options as never).ready().then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'FST_WSREST_INVALID_OPTION', message: new RegExp(name) }, `${JSON.stringify(options)} refused`)
  }
})
