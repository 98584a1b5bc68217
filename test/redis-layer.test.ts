/**
 * RedisLayer against a real Redis: two layers with one prefix play two server processes.
 * Delivery across instances and to the publisher itself exactly once, group routing,
 * subscriptions following listeners, bad input and failing listeners contained, and
 * outages (Redis unreachable, a connection killed, Redis going away and coming back)
 * logged once and recovered from with exactly the current subscriptions.
 */
import type { Redis } from 'ioredis'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import t from 'tap'
import type { BroadcastMessage, GroupListener } from '../lib/layers/layer.js'
import { RedisLayer, type RedisLayerOptions } from '../lib/layers/redis.js'
import { deferred, within, type Teardown } from './helpers/async.js'
import {
  admin, channels, clientsNamed, eventually, LEVEL, recordingLogger, redisAvailable, redisProxy,
  redisUrl, subscriberCount, uniquePrefix, type RecordingLogger
} from './helpers/redis.js'
import { thrownBy } from './helpers/throws.js'

/** A layer on the tests' Redis (or `options.url`), initialised, closed in teardown. */
async function openLayer (
  t: Teardown,
  options: RedisLayerOptions & { prefix: string },
  logger: RecordingLogger = recordingLogger()
): Promise<RedisLayer> {
  const layer = new RedisLayer({ url: redisUrl, ...options })
  t.teardown(async () => await layer.close())
  await within(layer.init(logger.log), 'init')
  return layer
}

/** Two layers on one prefix — two server instances of one app — and an admin client to watch Redis. */
async function twoInstances (t: Teardown, logs: { a?: RecordingLogger, b?: RecordingLogger } = {}): Promise<{ prefix: string, redis: Redis, a: RedisLayer, b: RedisLayer }> {
  const prefix = uniquePrefix()
  const redis = await admin(t)
  const a = await openLayer(t, { prefix }, logs.a)
  const b = await openLayer(t, { prefix }, logs.b)
  return { prefix, redis, a, b }
}

/** A listener that records what it gets and lets a test wait for its n-th message. */
interface Recorder {
  listener: GroupListener
  got: Array<[string, BroadcastMessage]>
  /** Resolves once `count` messages have arrived in all. */
  count: (count: number, what: string) => Promise<void>
}

function recorder (): Recorder {
  const got: Array<[string, BroadcastMessage]> = []
  const waiting: Array<{ count: number, resolve: () => void }> = []
  return {
    got,
    listener: (group, message) => {
      got.push([group, message])
      for (const w of waiting) if (got.length >= w.count) w.resolve()
    },
    count: async (count, what) => {
      if (got.length >= count) return
      const arrived = deferred()
      waiting.push({ count, resolve: arrived.resolve })
      await within(arrived.promise, what)
    }
  }
}

/** Wait until exactly `count` connections are subscribed to `channel` (Redis announces no event for it). */
async function subscribed (client: Redis, channel: string, count = 1): Promise<void> {
  await eventually(async () => (await subscriberCount(client, channel)) === count, `${count} subscriber(s) on ${channel}`)
}

/** The layer's connections, for the tests that break or inspect them. */
function connections (layer: RedisLayer): { pub: Redis, sub: Redis } {
  return { pub: layer['publisher']! as Redis, sub: layer['subscriber']! as Redis }
}

if (redisAvailable) {
  t.test('options are checked when the layer is made', async (t) => {
    t.equal(thrownBy(() => new RedisLayer({ url: 'http://localhost' })).code, 'FST_WSREST_INVALID_OPTION')
    t.match(thrownBy(() => new RedisLayer({ url: 'not a url' })).message, /"url": must be a redis:\/\//)
    t.match(thrownBy(() => new RedisLayer({ prefix: 3 as never })).message, /"prefix"/)
    t.match(thrownBy(() => new RedisLayer({ redis: 'x' as never })).message, /"redis"/)
    t.match(thrownBy(() => new RedisLayer(null as never)).message, /options must be an object/)
    const layer = new RedisLayer({ url: 'rediss://user:pw@example.com:6380/2' })
    t.equal(layer.prefix, 'wsrest:', 'the default prefix')
    await layer.close() // before init: nothing to close
    await layer.init(recordingLogger().log) // after close: connects nothing
    t.strictSame(connections(layer), { pub: undefined, sub: undefined })
  })

  t.test('a message published on A reaches B once, and A\'s own listener once (no echo through Redis)', async (t) => {
    const { prefix, redis, a, b } = await twoInstances(t)
    const onA = recorder()
    const onB = recorder()
    a.listen('g', onA.listener)
    b.listen('g', onB.listener)
    await subscribed(redis, `${prefix}g`, 2)

    a.publish('g', { n: 1 })
    t.strictSame(onA.got, [['g', { n: 1 }]], 'delivered on A at once, synchronously')
    a.publish('g', { n: 2 })
    await onB.count(2, 'B gets both')
    t.strictSame(onB.got, [['g', { n: 1 }], ['g', { n: 2 }]], 'in publish order')

    // B's message reaches A through Redis after the echoes of A's own two would have.
    b.publish('g', { n: 3 })
    t.strictSame(onB.got.length, 3, 'B gets its own at once')
    await onA.count(3, 'A gets B\'s message')
    t.strictSame(onA.got, [['g', { n: 1 }], ['g', { n: 2 }], ['g', { n: 3 }]], 'A saw its own messages once')
    t.strictSame(onB.got, [['g', { n: 1 }], ['g', { n: 2 }], ['g', { n: 3 }]], 'B saw its own message once')
  })

  t.test('groups route: a listener gets its groups\' messages only', async (t) => {
    const { prefix, redis, a, b } = await twoInstances(t)
    const g1 = recorder()
    const g2 = recorder()
    b.listen('g1', g1.listener)
    b.listen('g2', g2.listener)
    b.listen('g2', g2.listener) // idempotent for the same pair
    t.strictSame(b.groups().sort(), ['g1', 'g2'])
    t.strictSame(a.groups(), [])
    await subscribed(redis, `${prefix}g1`)
    await subscribed(redis, `${prefix}g2`)

    a.publish('g2', { to: 2 })
    a.publish('other', { to: 'nobody' })
    a.publish('g1', { to: 1 })
    await g1.count(1, 'g1 message')
    await g2.count(1, 'g2 message')
    t.strictSame(g1.got, [['g1', { to: 1 }]])
    t.strictSame(g2.got, [['g2', { to: 2 }]], 'once, though listened twice')
  })

  t.test('the last unlisten of a group unsubscribes its channel, and its messages stop', async (t) => {
    const { prefix, redis, a, b } = await twoInstances(t)
    const first = recorder()
    const second = recorder()
    const sentinel = recorder()
    b.listen('g', first.listener)
    b.listen('g', second.listener)
    b.listen('sentinel', sentinel.listener)
    await subscribed(redis, `${prefix}g`)
    await subscribed(redis, `${prefix}sentinel`)

    b.unlisten('g', first.listener)
    b.unlisten('g', first.listener) // not listening any more: no-op
    b.unlisten('nothing', first.listener)
    a.publish('g', { n: 1 })
    await second.count(1, 'the remaining listener still gets g')
    t.strictSame(first.got, [])
    t.strictSame(await channels(redis, prefix), [`${prefix}g`, `${prefix}sentinel`], 'still subscribed while a listener remains')

    b.unlisten('g', second.listener)
    t.strictSame(b.groups(), ['sentinel'])
    await eventually(async () => (await channels(redis, prefix)).length === 1, 'g unsubscribed')
    t.strictSame(await channels(redis, prefix), [`${prefix}sentinel`])

    // What A publishes to g now would arrive before the sentinel's message, from the same publisher.
    a.publish('g', { n: 2 })
    a.publish('sentinel', { done: true })
    await sentinel.count(1, 'the sentinel message')
    t.strictSame(first.got, [])
    t.strictSame(second.got, [['g', { n: 1 }]], 'nothing after the unlisten')
  })

  t.test('a listener throwing stops neither the others nor the subscriber connection', async (t) => {
    const prefix = uniquePrefix()
    const redis = await admin(t)
    const logA = recordingLogger()
    const logB = recordingLogger()
    const a = await openLayer(t, { prefix }, logA)
    const b = await openLayer(t, { prefix }, logB)
    const thrower: GroupListener = () => { throw new Error('listener bug') }
    const onA = recorder()
    const onB = recorder()
    a.listen('g', thrower)
    a.listen('g', onA.listener)
    b.listen('g', thrower)
    b.listen('g', onB.listener)
    await subscribed(redis, `${prefix}g`, 2)

    a.publish('g', { n: 1 })
    a.publish('g', { n: 2 })
    t.equal(onA.got.length, 2, 'the local neighbour got both')
    await onB.count(2, 'the remote neighbour gets both')
    t.equal(logA.find(LEVEL.error, 'broadcast listener failed').length, 2)
    t.equal(logB.find(LEVEL.error, 'broadcast listener failed').length, 2)
    t.equal(connections(b).sub.status, 'ready', 'the subscriber connection is untouched')
  })

  t.test('a malformed message on a channel is logged and dropped, and later ones still arrive', async (t) => {
    const logB = recordingLogger()
    const { prefix, redis, a, b } = await twoInstances(t, { b: logB })
    const onB = recorder()
    b.listen('g', onB.listener)
    await subscribed(redis, `${prefix}g`)

    for (const text of ['not json', '{"o":"x"}', '{"o":"x","m":[1]}', '[]', 'null']) {
      await redis.publish(`${prefix}g`, text)
    }
    a.publish('g', { fine: true })
    await onB.count(1, 'the good message')
    t.strictSame(onB.got, [['g', { fine: true }]])
    t.equal(logB.find(LEVEL.warn, 'malformed').length, 5, 'each malformed message logged')
    t.equal(connections(b).sub.status, 'ready')
  })

  t.test('with Redis unreachable: init resolves, publish neither throws nor queues, and the outage is logged once', async (t) => {
    const logger = recordingLogger()
    const layer = new RedisLayer({ url: 'redis://127.0.0.1:1', prefix: uniquePrefix() })
    t.teardown(async () => await layer.close())
    const local = recorder()
    layer.listen('g', local.listener) // before init: kept, and queued for Redis
    await within(layer.init(logger.log), 'init without Redis')
    t.equal(logger.find(LEVEL.error, 'Redis publisher connection failed').length, 1)
    t.equal(logger.find(LEVEL.error, 'Redis subscriber connection failed').length, 1)

    for (let n = 0; n < 100; n++) t.doesNotThrow(() => layer.publish('g', { n }))
    t.equal(local.got.length, 100, 'this process\'s listeners got every message at once')
    const { pub, sub } = connections(layer)
    t.equal(pub['offlineQueue'].length, 0, 'nothing piles up in the publisher')
    await within(logger.next((line) => line.msg.includes('cannot publish')), 'publish failure logged')
    await new Promise((resolve) => setImmediate(resolve)) // let the other 99 rejections settle
    t.equal(logger.find(LEVEL.error, 'cannot publish').length, 1, 'logged once, not per message')
    t.equal(layer['dropped'], 100)
    t.equal(sub['offlineQueue'].length, 1, 'the SUBSCRIBE waits for Redis')

    // close() cuts a connection that is not ready instead of sending QUIT and waiting (up to
    // its bound) for Redis to answer: seen as no QUIT at all, not as a duration.
    const quits: string[] = []
    for (const [name, connection] of [['publisher', pub], ['subscriber', sub]] as const) {
      const original = connection.quit.bind(connection)
      connection.quit = (async (...args: unknown[]) => { quits.push(name); return await (original as (...a: unknown[]) => Promise<'OK'>)(...args) }) as typeof connection.quit
    }
    await within(layer.close(), 'close without Redis')
    await within(layer.close(), 'second close')
    t.strictSame(quits, [], 'close does not wait for Redis: no QUIT sent to an unreachable one')
    // ioredis leaves a connection closed while it was waiting to reconnect in status
    // 'reconnecting', but with no attempt scheduled any more.
    t.equal(pub['reconnectTimeout'], null, 'the publisher stops retrying')
    t.equal(sub['reconnectTimeout'], null, 'the subscriber stops retrying')
    t.strictSame(layer.groups(), [])
  })

  t.test('init does not hang when what answers is not Redis, and close() during init ends it', async (t) => {
    // A server that accepts and never answers: the TCP connection succeeds, the handshake never does.
    const sockets = new Set<Socket>()
    const silent = createServer((socket) => { sockets.add(socket); socket.on('close', () => sockets.delete(socket)) })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    t.teardown(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })
    const url = `redis://127.0.0.1:${(silent.address() as AddressInfo).port}`

    const logger = recordingLogger()
    const layer = new RedisLayer({ url, prefix: uniquePrefix(), redis: { connectTimeout: 200 } })
    t.teardown(async () => await layer.close())
    await within(layer.init(logger.log), 'init against a silent server')
    t.equal(logger.find(LEVEL.error, 'not ready after 200 ms').length, 1)
    layer.publish('g', { n: 1 }) // no throw
    await within(layer.close(), 'close')

    const closing = new RedisLayer({ url, prefix: uniquePrefix() })
    const quiet = recordingLogger()
    const starting = closing.init(quiet.log)
    await within(closing.close(), 'close during init')
    await within(starting, 'init ends once closed')
    t.strictSame(quiet.find(LEVEL.error, ''), [], 'closing is not an outage')
  })

  t.test('a message that is not JSON-safe reaches this process only, and is logged', async (t) => {
    const logger = recordingLogger()
    const layer = await openLayer(t, { prefix: uniquePrefix() }, logger)
    const local = recorder()
    layer.listen('g', local.listener)
    t.doesNotThrow(() => layer.publish('g', { n: 1n }))
    t.strictSame(local.got, [['g', { n: 1n }]])
    t.equal(logger.find(LEVEL.error, 'not JSON-safe').length, 1)
  })

  t.test('a killed subscriber connection reconnects and resubscribes to its groups', async (t) => {
    const logB = recordingLogger()
    const { prefix, redis, a, b } = await twoInstances(t, { b: logB })
    const onB = recorder()
    const onA = recorder()
    b.listen('g1', onB.listener)
    b.listen('g2', onB.listener)
    a.listen('back', onA.listener)
    await subscribed(redis, `${prefix}g1`)
    await subscribed(redis, `${prefix}g2`)
    await subscribed(redis, `${prefix}back`)

    const [before] = await clientsNamed(redis, `${prefix}sub:${b.id}`)
    t.equal(before?.sub, '2', 'B\'s subscriber found by its connection name')
    const [publisher] = await clientsNamed(redis, `${prefix}pub:${b.id}`)
    t.ok(publisher, 'B\'s publisher found by its connection name')
    t.equal(await redis.client('KILL', 'ID', before!.id!), 1)
    t.equal(await redis.client('KILL', 'ID', publisher!.id!), 1)

    await within(logB.next((line) => line.level === LEVEL.warn && line.msg.includes('Redis subscriber connection lost')), 'loss logged')
    await within(logB.next((line) => line.level === LEVEL.info && line.msg.includes('Redis subscriber reconnected')), 'recovery logged')
    await within(logB.next((line) => line.level === LEVEL.info && line.msg.includes('Redis publisher reconnected')), 'publisher recovery logged')
    await eventually(async () => (await clientsNamed(redis, `${prefix}sub:${b.id}`))[0]?.sub === '2', 'B subscribed again')
    const [after] = await clientsNamed(redis, `${prefix}sub:${b.id}`)
    t.not(after?.id, before?.id, 'on a new connection')
    t.strictSame(await channels(redis, prefix), [`${prefix}back`, `${prefix}g1`, `${prefix}g2`])

    a.publish('g2', { after: 'kill' })
    await onB.count(1, 'a message published after the recovery')
    t.strictSame(onB.got, [['g2', { after: 'kill' }]])
    b.publish('back', { from: 'b' })
    await onA.count(1, 'B publishes again')
    t.equal(logB.find(LEVEL.error, '').length, 0, 'a clean kill is a warning, not an error')
  })

  t.test('settled() resolves once every listen made so far is subscribed in Redis, also one made during an outage', async (t) => {
    // What a resumed subscription waits for before it claims its key (lib/observer/resume.ts).
    const prefix = uniquePrefix()
    const redis = await admin(t)
    const proxy = await redisProxy(t)
    const layer = await openLayer(t, { prefix, url: proxy.url, redis: { retryStrategy: () => 10 } })
    const r = recorder()
    layer.listen('s1', r.listener)
    await within(layer.settled(), 'settled')
    t.strictSame(await channels(redis, prefix), [`${prefix}s1`], 'subscribed when settled() resolves')

    proxy.down()
    layer.listen('s2', r.listener)
    const settled = layer.settled()
    proxy.up()
    await within(settled, 'settled after the outage')
    t.strictSame(await channels(redis, prefix), [`${prefix}s1`, `${prefix}s2`], 'the SUBSCRIBE sent during the outage is in effect')
  })

  t.test('through an outage: publishes are dropped (logged once), and listen/unlisten made meanwhile take effect on recovery', async (t) => {
    const prefix = uniquePrefix()
    const redis = await admin(t)
    const proxy = await redisProxy(t)
    const logB = recordingLogger()
    const a = await openLayer(t, { prefix })
    // Fast retries, so that the outage outlasts ioredis's default 20 retries per queued
    // command: the layer's SUBSCRIBEs queued during it must survive them.
    const b = await openLayer(t, { prefix, url: proxy.url, redis: { retryStrategy: () => 10 } }, logB)
    const g1 = recorder()
    const g2 = recorder()
    const g3 = recorder()
    const onA = recorder()
    b.listen('g1', g1.listener)
    b.listen('g2', g2.listener)
    a.listen('from-b', onA.listener)
    await subscribed(redis, `${prefix}g1`)
    await subscribed(redis, `${prefix}g2`)
    await subscribed(redis, `${prefix}from-b`)

    const { sub } = connections(b)
    let attempts = 0
    const retried = deferred()
    sub.on('reconnecting', () => { if (++attempts === 30) retried.resolve() })
    proxy.down()
    await within(logB.next((line) => line.msg.includes('Redis subscriber connection')), 'the loss logged')

    b.unlisten('g1', g1.listener)
    b.listen('g3', g3.listener)
    b.listen('g4', g3.listener)
    b.unlisten('g4', g3.listener)
    for (let n = 0; n < 10; n++) b.publish('from-b', { lost: n })
    await within(retried.promise, '30 reconnection attempts')
    t.equal(logB.find(LEVEL.error, 'cannot publish').length, 1, 'the dropped messages logged once')
    t.equal(logB.find(LEVEL.error, 'Redis subscriber').length + logB.find(LEVEL.warn, 'Redis subscriber').length, 1,
      'the subscriber\'s outage logged once, retries at debug level only')
    t.strictSame(b.groups().sort(), ['g2', 'g3'])

    proxy.up()
    await within(logB.next((line) => line.msg.includes('Redis subscriber reconnected')), 'recovery logged')
    await eventually(async () => (await channels(redis, prefix)).length === 3, 'B subscribed to its current groups')
    t.strictSame(await channels(redis, prefix), [`${prefix}from-b`, `${prefix}g2`, `${prefix}g3`], 'exactly B\'s groups now (and A\'s)')
    await eventually(async () => (await clientsNamed(redis, `${prefix}sub:${b.id}`))[0]?.sub === '2', 'B on 2 channels')

    a.publish('g1', { n: 1 })
    a.publish('g2', { n: 2 })
    a.publish('g3', { n: 3 })
    await g2.count(1, 'g2 after recovery')
    await g3.count(1, 'g3, listened during the outage')
    t.strictSame(g1.got, [], 'g1, unlistened during the outage, gets nothing')

    await within(logB.next((line) => line.msg.includes('Redis publisher reconnected')), 'publisher back')
    b.publish('from-b', { back: true })
    await onA.count(1, 'B\'s publishes reach A again')
    t.strictSame(onA.got, [['from-b', { back: true }]], 'nothing published during the outage arrives late')
    await within(logB.next((line) => line.msg.includes('publishing to Redis again; 10 message(s)')), 'the count of dropped messages')
  })

  t.test('listeners added before init are subscribed once connected; a second init keeps the first', async (t) => {
    const prefix = uniquePrefix()
    const redis = await admin(t)
    const a = await openLayer(t, { prefix })
    const first = recordingLogger()
    const second = recordingLogger()
    const b = new RedisLayer({ url: redisUrl, prefix })
    t.teardown(async () => await b.close())
    const onB = recorder()
    b.listen('early', onB.listener)
    await within(Promise.all([b.init(first.log), b.init(second.log)]), 'init twice')
    await within(b.init(second.log), 'init again')
    t.equal((await clientsNamed(redis, b.id)).length, 2, 'one publisher and one subscriber')
    await subscribed(redis, `${prefix}early`)
    a.publish('early', { n: 1 })
    await onB.count(1, 'the early listener')

    await redis.publish(`${prefix}early`, 'garbage')
    await within(first.next((line) => line.msg.includes('malformed')), 'logged on the first logger')
    t.strictSame(second.lines, [], 'the second logger is not used')
  })

  t.test('close() quits both connections, is idempotent, and leaves no client behind', async (t) => {
    const { prefix, redis, a, b } = await twoInstances(t)
    const onA = recorder()
    a.listen('g', onA.listener)
    b.listen('g', () => {})
    await subscribed(redis, `${prefix}g`, 2)
    t.equal((await clientsNamed(redis, prefix)).length, 4)

    await within(Promise.all([a.close(), a.close()]), 'close twice at once')
    await within(a.close(), 'close again')
    t.strictSame(a.groups(), [])
    t.strictSame((await clientsNamed(redis, a.id)), [], 'none of A\'s connections left')
    const { pub, sub } = connections(b)
    await within(b.close(), 'close B')
    t.equal(pub.status, 'end')
    t.equal(sub.status, 'end')
    t.strictSame(await clientsNamed(redis, prefix), [], 'no client left')
    t.strictSame(await channels(redis, prefix), [])

    // A closed layer still serves this process's listeners it is given, and never reaches Redis.
    a.listen('g', onA.listener)
    a.publish('g', { after: 'close' })
    t.strictSame(onA.got, [['g', { after: 'close' }]])
    t.strictSame(await channels(redis, prefix), [])
  })
}
