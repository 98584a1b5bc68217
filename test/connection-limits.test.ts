/**
 * Connection limits by default and when they refuse: no per-address cap unless
 * `maxConnectionsPerIp` is set (many clients share one address behind NAT or a proxy),
 * and a refusal by `maxConnectionsPerIp` or `maxConnections` is logged at warn level,
 * naming the option and how to change it, once per limit rather than once per upgrade.
 */
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import wsRest, { action, type WsRestOptions } from '../index.js'
import { within } from './helpers/async.js'
import { openClient, upgradeStatus } from './helpers/client.js'

/** An app with a `ping` route at /ws/, logging JSON lines at warn level into `lines`; its ws:// URL. */
async function start (t: Test, options: WsRestOptions, lines: string[] = []): Promise<string> {
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  t.teardown(async () => await app.close())
  await app.register(wsRest, options)
  app.wsRest.route('/ws/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws/`
}

/** Open `count` sockets to `url`, `batch` at a time; all of them, open (closed in teardown). */
async function openMany (t: Test, url: string, count: number, batch = 100): Promise<WebSocket[]> {
  const sockets: WebSocket[] = []
  t.teardown(() => { for (const s of sockets) s.terminate() })
  for (let opened = 0; opened < count; opened += batch) {
    const next = Array.from({ length: Math.min(batch, count - opened) }, () => new WebSocket(url))
    sockets.push(...next)
    await within(Promise.all(next.map(async (s) => await new Promise<void>((resolve, reject) => {
      s.once('open', () => resolve())
      s.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused with ${res.statusCode ?? 0}`)))
      s.once('error', reject)
    }))), `sockets ${opened}…${opened + next.length}`, 10_000)
  }
  return sockets
}

const warnings = (lines: string[]): Array<Record<string, any>> =>
  lines.map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.level === 40)

t.test('by default one address may open more than 1,000 sockets (no per-address cap)', async (t) => {
  const lines: string[] = []
  const url = await start(t, {}, lines)
  const sockets = await openMany(t, url, 1_100)
  t.equal(sockets.length, 1_100, 'all open, from 127.0.0.1')
  t.equal(await upgradeStatus(url), 101, 'and one more')
  t.strictSame(warnings(lines), [], 'nothing refused, nothing logged')
})

t.test('maxConnectionsPerIp refusals: HTTP 429, logged once at warn naming the option and how to change it', async (t) => {
  const lines: string[] = []
  const url = await start(t, { maxConnectionsPerIp: 1 }, lines)
  await openClient(t, url)
  const refused = await Promise.all(Array.from({ length: 5 }, async () => await upgradeStatus(url)))
  t.strictSame(refused, [429, 429, 429, 429, 429])
  const warned = warnings(lines)
  t.equal(warned.length, 1, 'one line for five refusals')
  t.match(warned[0], { option: 'maxConnectionsPerIp', limit: 1, msg: /maxConnectionsPerIp \(1\).*raise the plugin option maxConnectionsPerIp/ })
})

t.test('maxConnections refusals: HTTP 503, logged once at warn naming the option', async (t) => {
  const lines: string[] = []
  const url = await start(t, { maxConnections: 2 }, lines)
  await openClient(t, url)
  await openClient(t, url)
  for (let i = 0; i < 4; i++) t.equal(await upgradeStatus(url), 503)
  const warned = warnings(lines)
  t.equal(warned.length, 1, 'one line for four refusals')
  t.match(warned[0], { option: 'maxConnections', limit: 2, msg: /maxConnections \(2\).*raise the plugin option maxConnections/ })
})
