/**
 * The client (client/) after a definitive refusal at the upgrade: HTTP 401 or 403 means the
 * same credentials will be refused again, so the client stops — no reconnect loop — and
 * says why: WsRestUpgradeRefusedError with the status, on the 'error' event and on every
 * pending request and subscribe call. Other refusals (503: the server is full) are still
 * retried. Against the example server in-process; no sleeps.
 */
import t from 'tap'
import WebSocket from 'ws'
import { createClient, WsRestUpgradeRefusedError, type WebSocketConstructor } from '../client/index.js'
import { deferred, within } from './helpers/async.js'
import { startApp, startExample } from './helpers/server.js'
import { action } from '../index.js'
import { Item } from './helpers/item.js'

const WS = WebSocket as unknown as WebSocketConstructor

for (const [status, path] of [[401, '/ws/jwt/?token=not-a-jwt'], [403, '/ws/secure/?token=nope']] as const) {
  t.test(`an upgrade refused with ${status}: pending calls reject saying so, the client closes, no reconnect`, async (t) => {
    const { base } = await startExample(t)
    const client = createClient(`${base}${path}`, { WebSocket: WS, timeout: 30_000 })
    t.teardown(async () => await client.close())
    const errors: Error[] = []
    let reconnects = 0
    client.on('error', (error) => errors.push(error))
    client.on('reconnecting', () => { reconnects++ })

    const request = client.request('list')
    const subscribe = client.subscribe('subscribe_list', {}, () => {})
    const [listed, subscribed] = await within(Promise.allSettled([request, subscribe]), 'the calls to settle')
    for (const result of [listed, subscribed]) {
      t.equal(result.status, 'rejected')
      const reason = (result as PromiseRejectedResult).reason
      t.ok(reason instanceof WsRestUpgradeRefusedError, 'a refusal, not a timeout')
      t.match(reason, { status, message: new RegExp(`HTTP ${status}`) })
    }
    t.equal(client.state, 'closed')
    t.equal(reconnects, 0, 'no reconnect was scheduled')
    t.match(errors, [{ name: 'WsRestUpgradeRefusedError', status }], 'and the error event said why')
  })
}

t.test('a 503 at the upgrade (the server is full) is not definitive: the client keeps retrying', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/', { actions: [action('ping', () => ({ data: 'pong' }))] })
  }, { maxConnections: 1 })
  const holder = new WebSocket(`${base}/ws/`)
  t.teardown(() => holder.terminate())
  await within(new Promise((resolve) => holder.once('open', resolve)), 'the socket taking the only place')

  const client = createClient(`${base}/ws/`, { WebSocket: WS, reconnect: { initialDelay: 10, maxDelay: 20 } })
  t.teardown(async () => await client.close())
  const reconnecting = deferred()
  client.on('reconnecting', () => reconnecting.resolve())
  await within(reconnecting.promise, 'a reconnect scheduled after the 503')
  holder.close()
  t.equal(await within(client.request('ping'), 'the ping once a place is free'), 'pong')
})
