/**
 * Per-socket write batching: the frames one socket is sent in one tick (replies to
 * pipelined requests answered together, a frame then a close) leave in one TCP write,
 * complete and in order. Real sockets; the server's TCP writes are counted on its side.
 */
import type { Socket } from 'node:net'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import { action, mixins } from '../index.js'
import { openClient, type TestClient } from './helpers/client.js'
import { Item, itemModel, seedItems } from './helpers/item.js'
import { startApp } from './helpers/server.js'

function tcpOf (client: TestClient): Socket {
  return (client.socket as unknown as { _socket: Socket })._socket
}

/** Count the TCP writes (write or writev calls reaching the handle) of the server's only socket. */
function countServerWrites (app: { websocketServer: { clients: Set<unknown> } }): { writes: number } {
  const [ws] = [...app.websocketServer.clients] as Array<{ _socket: Socket & { _writev: Function, _write: Function } }>
  const raw = ws._socket
  const counter = { writes: 0 }
  const writev = raw._writev.bind(raw)
  const write = raw._write.bind(raw)
  raw._writev = (...args: unknown[]) => { counter.writes++; return writev(...args) }
  raw._write = (...args: unknown[]) => { counter.writes++; return write(...args) }
  return counter
}

t.test('replies to pipelined requests arrive complete and in order', async (t) => {
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, actions: [mixins.retrieve(), mixins.list()] })
  })
  const ids = await seedItems(orm, ...Array.from({ length: 20 }, (_, i) => `item "${i}" \u00e9\ud83d\ude00`))
  const client = await openClient(t, `${base}/items/`)
  await client.request('list') // the server's socket is attached and warm

  // Every request in one client write: the server reads them in one go and answers them
  // in turn (one socket's actions run one at a time, so each reply is a tick of its own).
  const pks = [...ids, 999_999, ids[3]]
  const tcp = tcpOf(client)
  tcp.cork()
  pks.forEach((pk, i) => client.send({ action: 'retrieve', pk, request_id: i }))
  tcp.uncork()
  const replies = await client.take(pks.length)
  t.same(replies.map((r) => r.request_id), pks.map((_, i) => i), 'every reply, in the order of the requests')
  replies.forEach((reply, i) => {
    const pk = pks[i]
    if (pk === 999_999) t.equal(reply.response_status, 404, `${i}: 404`)
    else t.same(reply, { errors: [], data: { id: pk, name: `item "${ids.indexOf(pk)}" \u00e9\ud83d\ude00` }, action: 'retrieve', response_status: 200, request_id: i }, `${i}: complete`)
  })
})

t.test('frames sent in one tick leave in two writes, in order, and before a close in the same tick', async (t) => {
  const { app, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/bye/', {
      actions: [action('burst', { schema: Type.Object({}) }, (ctx) => {
        for (let n = 0; n < 20; n++) ctx.send({ n })
        return { data: 20 }
      }), action('bye', { schema: Type.Object({}) }, async (ctx) => {
        for (let n = 0; n < 5; n++) ctx.send({ n })
        ctx.close(4000, 'bye')
        return { reply: false }
      })]
    })
  })
  const client = await openClient(t, `${base}/bye/`)
  client.send({ action: 'burst', request_id: 1 })
  t.same(await client.take(21), [...Array.from({ length: 20 }, (_, n) => ({ n })), { errors: [], data: 20, action: 'burst', response_status: 200, request_id: 1 }], 'every frame, then the reply')
  const counter = countServerWrites(app)
  client.send({ action: 'burst', request_id: 2 })
  t.same(await client.take(21), [...Array.from({ length: 20 }, (_, n) => ({ n })), { errors: [], data: 20, action: 'burst', response_status: 200, request_id: 2 }], 'again')
  t.equal(counter.writes, 2, 'the 21 frames of one tick in two TCP writes: the first at once, the rest together (unbatched: one each)')
  client.send({ action: 'bye', request_id: 3 })
  t.same(await client.take(5), [0, 1, 2, 3, 4].map((n) => ({ n })), 'every frame, in order')
  t.same(await client.waitClose(), { code: 4000, reason: 'bye' }, 'then the close')
})

t.test('a burst of one tick larger than maxOutbound reaches a reading client: it is written as it grows, not held back whole', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/big/', {
      actions: [action('big', { schema: Type.Object({}) }, (ctx) => {
        const text = 'x'.repeat(16 * 1024)
        for (let n = 0; n < 48; n++) ctx.send({ n, text })
        return { data: 48 }
      })]
    })
  }, { maxOutbound: 256 * 1024 })
  const client = await openClient(t, `${base}/big/`)
  client.send({ action: 'big', request_id: 1 })
  const frames = await client.take(49)
  t.same(frames.slice(0, 48).map((f) => (f as unknown as { n: number }).n), Array.from({ length: 48 }, (_, n) => n), '768 KiB of frames, in order')
  t.same(frames[48], { errors: [], data: 48, action: 'big', response_status: 200, request_id: 1 }, 'then the reply')
  t.equal(client.socket.readyState, client.socket.OPEN, 'the socket was not taken for a slow one')
})
