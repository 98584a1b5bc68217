/**
 * Connection lifecycle and server-sent frames (DCRF's websocket_connect / accept /
 * websocket_disconnect, send_json and reply(action=…, request_id=…)): `onConnect` runs
 * before any frame of the socket and what it sends comes first; it can subscribe the
 * socket to groups; `onDisconnect` runs when the socket goes; `ctx.send`, `ctx.reply` with
 * another action or request_id, and `ctx.close`, on plain and multiplexed routes.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import wsRest, { action, type ActionContext } from '../index.js'
import { deferred, type Teardown } from './helpers/async.js'
import { openClient } from './helpers/client.js'

/** An app with the plugin and no database, the routes `declare` adds, listening. */
async function startApp (t: Teardown, _entities: never[], declare: (app: FastifyInstance) => void): Promise<{ app: FastifyInstance, base: string }> {
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, {})
  declare(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, base: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

t.test('onConnect runs first: its frame precedes the reply to a frame sent at once, and its subscriptions work', async (t) => {
  const { base, app } = await startApp(t, [], (app) => {
    app.wsRest.route('/room/', {
      async onConnect (ctx) {
        await ctx.subscribe('room')
        // Slow on purpose: the socket's first action must still wait for it.
        await new Promise((resolve) => setImmediate(resolve))
        ctx.send({ type: 'welcome', user: ctx.request.headers['x-user'] ?? null })
      },
      actions: [action('ping', () => ({ data: 'pong' }))]
    })
  })
  const client = await openClient(t, `${base}/room/`, { headers: { 'x-user': 'ann' } })
  client.send({ action: 'ping', request_id: 1 })
  t.strictSame(await client.next(), { type: 'welcome', user: 'ann' }, 'the welcome frame, exactly as sent (any JSON)')
  t.strictSame((await client.next()).data, 'pong', 'then the reply')
  app.wsRest.publish('room', { text: 'hi' }, { action: 'said' })
  t.strictSame(await client.next(), { errors: [], data: { text: 'hi' }, action: 'said', response_status: 200, request_id: null },
    'a group joined in onConnect delivers, with no request_id')
})

t.test('onDisconnect runs once the socket has closed, with the same request', async (t) => {
  const gone = deferred<string | undefined>()
  const { base } = await startApp(t, [], (app) => {
    app.wsRest.route('/room/', {
      onDisconnect (ctx) {
        gone.resolve(ctx.request.headers['x-user'] as string | undefined)
        t.equal(ctx.send({ late: true }), false, 'nothing can be sent any more')
      },
      actions: [action('ping', () => ({ data: 'pong' }))]
    })
  })
  const client = await openClient(t, `${base}/room/`, { headers: { 'x-user': 'bob' } })
  await client.request('ping')
  client.close()
  t.equal(await gone.promise, 'bob')
})

t.test('ctx.reply with another action and request_id; ctx.close with an application code; a bad code is the app\'s error', async (t) => {
  const { base } = await startApp(t, [], (app) => {
    app.wsRest.route('/r/', {
      actions: [
        action('notify', (ctx: ActionContext) => {
          ctx.reply({ n: 1 }, 200, { action: 'notice', requestId: 'feed' })
          return { data: 'sent' }
        }),
        action('leave', (ctx: ActionContext) => {
          ctx.close(4000, 'bye')
          return {}
        }),
        action('bad_close', (ctx: ActionContext) => {
          ctx.close(1011)
          return {}
        })
      ]
    })
  })
  const client = await openClient(t, `${base}/r/`)
  client.send({ action: 'notify', request_id: 7 })
  t.strictSame(await client.next(), { errors: [], data: { n: 1 }, action: 'notice', response_status: 200, request_id: 'feed' })
  t.strictSame((await client.next()).request_id, 7, 'then the action\'s own reply')
  t.strictSame([(await client.request('bad_close')).response_status], [500], 'a code the protocol reserves: 500, socket open')
  client.send({ action: 'leave', request_id: 8 })
  t.strictSame(await client.waitClose(), { code: 4000, reason: 'bye' })
})

t.test('a multiplexed stream: onConnect runs per stream, ctx.send is wrapped in the stream\'s envelope', async (t) => {
  const { base } = await startApp(t, [], (app) => {
    app.wsRest.multiplex('/mux/', {
      streams: {
        chat: { onConnect (ctx) { ctx.send({ hello: 'chat' }) }, actions: [action('ping', () => ({ data: 'pong' }))] }
      }
    })
  })
  const client = await openClient(t, `${base}/mux/`)
  t.strictSame(await client.next(), { stream: 'chat', payload: { hello: 'chat' } })
})

t.test('an onConnect that throws closes the socket with 1011; a hook that is not a function is refused at declaration', async (t) => {
  const { base } = await startApp(t, [], (app) => {
    app.wsRest.route('/broken/', {
      onConnect () { throw new Error('no database') },
      actions: [action('ping', () => ({ data: 'pong' }))]
    })
  })
  const client = await openClient(t, `${base}/broken/`)
  t.equal((await client.waitClose()).code, 1011)

  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, {})
  t.throws(() => app.wsRest.route('/x/', { onConnect: 'hello' as never, actions: [] }), /onConnect.*must be a function/)
})

t.test('an action may send no reply at all ({ reply: false }), as DCRF does for one that returns nothing', async (t) => {
  const { base } = await startApp(t, [], (app) => {
    app.wsRest.route('/r/', {
      actions: [
        action('fire', (ctx: ActionContext) => {
          ctx.send({ fired: true })
          return { reply: false }
        }),
        action('ping', () => ({ data: 'pong' }))
      ]
    })
  })
  const client = await openClient(t, `${base}/r/`)
  client.send({ action: 'fire', request_id: 1 })
  client.send({ action: 'ping', request_id: 2 })
  t.strictSame(await client.next(), { fired: true })
  t.strictSame((await client.next()).request_id, 2, 'the next frame is the next action\'s reply: none was sent for "fire"')
})
