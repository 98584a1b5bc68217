/**
 * Observability: every socket logs through a pino child carrying its connection id and
 * route (and stream, multiplexed); each action gets one debug line with its status and
 * duration; a failure is logged at error level with its stack, which never reaches the client.
 */
import type { MikroORM } from '@mikro-orm/core'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import wsRest, { action, mixins } from '../index.js'
import { openClient } from './helpers/client.js'
import { initOrm } from './helpers/database.js'
import { Item, itemModel } from './helpers/item.js'
import { LEVEL, recordingLogger, type LogLine, type RecordingLogger } from './helpers/logger.js'
import { within, type Teardown } from './helpers/async.js'

const boom = action('boom', () => { throw new Error('the secret detail of a failure') })
const actions = [mixins.create(), mixins.retrieve(), boom]

/** An app logging at debug level into `recording`, with Items at /items/ and on stream `items` of /mux/. */
async function start (t: Teardown, recording: RecordingLogger): Promise<{ base: string, orm: MikroORM }> {
  const orm = await initOrm(t, [Item])
  const app = Fastify({ loggerInstance: recording.log })
  t.teardown(async () => { await app.close(); await orm.close() })
  await app.register(wsRest, { orm })
  app.wsRest.route('/items/', { ...itemModel, actions })
  app.wsRest.multiplex('/mux/', { streams: { items: { ...itemModel, actions } } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { base: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`, orm }
}

/** The first line matching `test`, written or to come, within the usual bound. */
async function logged (recording: RecordingLogger, test: (line: LogLine) => boolean): Promise<LogLine> {
  return await within(recording.next(test), 'the log line')
}

const actionLine = (requestId: string) => (line: LogLine) => line.msg === 'fastify-ws-rest: action' && line.requestId === requestId

t.test('one debug line per action: connection id, route, action, status and duration', async (t) => {
  const recording = recordingLogger()
  const { base } = await start(t, recording)
  const one = await openClient(t, `${base}/items/?token=do-not-log-me`)
  const two = await openClient(t, `${base}/items/`)
  await one.ask({ action: 'create', request_id: 'c1', data: { name: 'a' } })
  await one.ask({ action: 'retrieve', request_id: 'r1', pk: 999 })
  await two.ask({ action: 'create', request_id: 'c2', data: { name: 'b' } })

  const created = await logged(recording, actionLine('c1'))
  const missing = await logged(recording, actionLine('r1'))
  const other = await logged(recording, actionLine('c2'))
  t.match(created, { level: LEVEL.debug, route: '/items/', action: 'create', status: 201, ms: Number, connection: String })
  t.match(missing, { level: LEVEL.debug, action: 'retrieve', status: 404 })
  t.equal(missing.connection, created.connection, 'one socket, one connection id')
  t.not(other.connection, created.connection, 'another socket, another id')
  t.ok((created.ms as number) >= 0)
  t.notOk(recording.lines.some((line) => JSON.stringify(line).includes('do-not-log-me') && line.msg.startsWith('fastify-ws-rest')),
    'the route is logged as its pattern, never with its query string')
})

t.test('a failure: logged at error level with its stack, on the socket\'s logger; the client sees only "Internal server error"', async (t) => {
  const recording = recordingLogger()
  const { base } = await start(t, recording)
  const client = await openClient(t, `${base}/items/`)
  const reply = await client.ask({ action: 'boom', request_id: 'b' })
  t.strictSame([reply.response_status, reply.errors], [500, ['Internal server error']])
  t.notMatch(JSON.stringify(reply), /secret detail|at /, 'no message, no stack in the reply')

  const failed = await logged(recording, (line) => line.msg === 'fastify-ws-rest: action failed')
  t.match(failed, { level: LEVEL.error, action: 'boom', route: '/items/', connection: String })
  t.match((failed.err as { stack: string }).stack, /the secret detail of a failure\n\s+at /, 'the stack, server-side')
  t.match(await logged(recording, actionLine('b')), { status: 500 })
})

t.test('on a multiplexed route the stream is on every line too', async (t) => {
  const recording = recordingLogger()
  const { base } = await start(t, recording)
  const client = await openClient(t, `${base}/mux/`)
  client.send({ stream: 'items', payload: { action: 'create', request_id: 'm1', data: { name: 'a' } } })
  await client.next()
  t.match(await logged(recording, actionLine('m1')), { route: '/mux/', stream: 'items', status: 201 })
})

t.test('above debug level no action line is written', async (t) => {
  const recording = recordingLogger()
  recording.log.level = 'info'
  const { base } = await start(t, recording)
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'create', request_id: 'c', data: { name: 'a' } })
  await client.ask({ action: 'boom', request_id: 'b' })
  // The error line proves the socket's logger is in use; there is no debug line beside it.
  await logged(recording, (line) => line.msg === 'fastify-ws-rest: action failed')
  t.strictSame(recording.lines.filter((line) => line.msg === 'fastify-ws-rest: action'), [])
})
