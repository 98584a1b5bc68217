/**
 * The example's `/ws/presence/` (docs/example.md → "Connection lifecycle"): a socket's
 * first frame is the presence count, before any reply; every socket on the route gets the
 * new count when one opens or closes; `list` answers it — in one process, and across two
 * example apps sharing Redis; and when an example process is killed (SIGKILL: no close runs),
 * its sockets leave the count of the others within the presence TTL, and a process started
 * afterwards counts only the living.
 */
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { buildApp } from '../example/app.js'
import type { Teardown } from './helpers/async.js'
import { startServer } from './helpers/example-process.js'
import { openClient, type TestClient } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'
import { redisAvailable, redisUrl, uniquePrefix } from './helpers/redis.js'

const presence = (online: number): unknown => ({ errors: [], data: { online }, action: 'presence', response_status: 200, request_id: null })

async function startExampleApp (t: Teardown, options: Parameters<typeof buildApp>[0]): Promise<string> {
  const { app } = await buildApp(options)
  t.teardown(async () => await app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/ws/presence/`
}

t.test('one process: the count first, then a frame to every socket on each open and close; list answers it', async (t) => {
  const database = await createDatabase(t)
  const url = await startExampleApp(t, database.exampleOptions)
  const first = await openClient(t, url)
  // A frame sent at once is answered after the presence frame.
  first.send({ action: 'list', request_id: 'now' })
  t.strictSame(await first.next(), presence(1), 'the first frame is the presence count')
  t.strictSame(await first.next(), { errors: [], data: { online: 1 }, action: 'list', response_status: 200, request_id: 'now' })

  const second = await openClient(t, url)
  t.strictSame(await second.next(), presence(2))
  t.strictSame(await first.next(), presence(2), 'the others hear of the new socket')
  second.close()
  t.strictSame(await first.next(), presence(1), 'and of its close')
  t.strictSame((await first.request('list')).data, { online: 1 })
})

t.test('two example apps sharing Redis count the sockets of both', { skip: redisAvailable ? false : 'Redis is not available' }, async (t) => {
  const database = await createDatabase(t, { reopenable: true })
  const prefix = uniquePrefix()
  const urlA = await startExampleApp(t, { ...database.exampleOptions, redisUrl, redisPrefix: prefix })
  const urlB = await startExampleApp(t, { ...database.exampleOptions, redisUrl, redisPrefix: prefix })
  const a: TestClient = await openClient(t, urlA)
  t.strictSame(await a.next(), presence(1))
  const b = await openClient(t, urlB)
  t.strictSame(await b.next(), presence(2), 'B counts A\'s socket')
  t.strictSame(await a.next(), presence(2), 'A hears of B\'s socket through Redis')
  t.strictSame((await b.request('list')).data, { online: 2 })
  b.close()
  t.strictSame(await a.next(), presence(1), 'and of its close')
})

t.test('a killed example process: its sockets leave the count within the TTL; a process started later counts only the living',
  { skip: redisAvailable ? false : 'Redis is not available' }, async (t) => {
    const database = await createDatabase(t, { reopenable: true })
    const ttl = 1_000
    const env = { REDIS_URL: redisUrl, REDIS_PREFIX: uniquePrefix(), PRESENCE_TTL_MS: String(ttl) }
    const a = await startServer(t, database, env)
    const b = await startServer(t, database, env)
    const onA = [await openClient(t, `${a.url}/ws/presence/`)]
    t.strictSame(await onA[0].next(), presence(1))
    onA.push(await openClient(t, `${a.url}/ws/presence/`))
    t.strictSame(await onA[1].next(), presence(2))
    const watcher = await openClient(t, `${b.url}/ws/presence/`)
    t.strictSame(await watcher.next(), presence(3), 'B counts A\'s two sockets')

    const killedAt = Date.now()
    a.child.kill('SIGKILL')
    await a.exited
    // Within the TTL plus a heartbeat, with room for a loaded machine; never the dead count forever.
    t.strictSame(await watcher.next(ttl * 10), presence(1), 'A\'s sockets left the count without A saying so')
    t.ok(Date.now() - killedAt >= ttl / 2, 'not before A\'s deadline could have passed')
    t.strictSame((await watcher.request('list')).data, { online: 1 })

    const c = await startServer(t, database, env)
    const late = await openClient(t, `${c.url}/ws/presence/`)
    t.strictSame(await late.next(), presence(2), 'a new process counts B\'s socket and its own, nothing of A')
    t.strictSame(await watcher.next(), presence(2))
  })
