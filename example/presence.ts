/**
 * The example's presence route, `/ws/presence/`: who is online, as DCRF apps build it with
 * `websocket_connect` / `websocket_disconnect`. When a socket opens or closes, every socket
 * on the route — on every example process sharing Redis — gets a server-sent frame
 * `{"errors": [], "data": {"online": N}, "action": "presence", "response_status": 200,
 * "request_id": null}`; an opening socket's first frame is its own.
 *
 * With Redis, each process keeps its own number of open sockets there under its own id, with
 * a deadline it pushes forward on every change and on a heartbeat; the count is the sum over
 * the processes whose deadline has not passed. A process that dies without closing (SIGKILL,
 * a crash, a lost machine) stops renewing its deadline, so its sockets leave the count within
 * `ttlMs`, and the first process to notice tells the others. Without Redis the count is the
 * process's own. Each process sends frames to its own sockets; a change made elsewhere
 * reaches it on a Redis channel, and it sends the count as it is then, so every socket
 * converges on the same N.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import { randomUUID } from 'node:crypto'
import { action, defineRoute, type ActionContext } from '../index.js'

/** How long a process's sockets stay counted after its last heartbeat, by default (ms). */
export const PRESENCE_TTL_MS = 5_000

/** Where the number of open presence sockets is kept. */
interface Counter {
  /**
   * Record that this process has `own` sockets open (undefined: only read) and return the
   * count across processes, with whether a dead process's sockets were just taken off it.
   */
  sync: (own?: number) => Promise<{ online: number, reaped: boolean }>
  /** Tell the other processes the count changed. */
  notify: () => Promise<void>
  /** Take this process's sockets off the count (a graceful close). */
  leave: () => Promise<void>
  close: () => Promise<void>
}

function localCounter (): Counter {
  let online = 0
  return {
    sync: async (own) => ({ online: (online = own ?? online), reaped: false }),
    notify: async () => {},
    leave: async () => {},
    close: async () => {}
  }
}

/**
 * KEYS: the hash of socket counts by process id, the sorted set of process ids by deadline.
 * ARGV: this process's id, its socket count ('' to only read), the time to live in ms.
 * Processes past their deadline are removed; returns {sum of the live counts, how many removed}.
 * The clock is Redis's own, so the processes' clocks need not agree.
 */
const SYNC_SCRIPT = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ttl = tonumber(ARGV[3])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
local online = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do online = online + tonumber(n) end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return {online, #dead}
`

/** The count in Redis, per process with a deadline, and a channel telling the other processes it changed. */
async function redisCounter (url: string, prefix: string, ttlMs: number, onRemoteChange: () => void, log: FastifyBaseLogger): Promise<Counter> {
  const { Redis } = await import('ioredis')
  const counts = `${prefix}presence:sockets`
  const deadlines = `${prefix}presence:deadlines`
  const channel = `${prefix}presence:changed`
  const me = randomUUID()
  const commands = new Redis(url, { lazyConnect: true })
  const listener = new Redis(url, { lazyConnect: true })
  for (const client of [commands, listener]) client.on('error', (err) => log.warn({ err: err.message }, 'presence: Redis error'))
  await Promise.all([commands.connect(), listener.connect()])
  listener.on('message', (_channel: string, origin: string) => { if (origin !== me) onRemoteChange() })
  await listener.subscribe(channel)
  return {
    async sync (own) {
      const [online, reaped] = await commands.eval(SYNC_SCRIPT, 2, counts, deadlines, me, own ?? '', ttlMs) as [number, number]
      return { online, reaped: reaped > 0 }
    },
    async notify () { await commands.publish(channel, me) },
    async leave () {
      await commands.multi().hdel(counts, me).zrem(deadlines, me).publish(channel, me).exec()
    },
    async close () {
      listener.disconnect()
      commands.disconnect()
    }
  }
}

/**
 * Register the presence route on `app`: `redisUrl` shares the count with every process using
 * it; `ttlMs` (default {@link PRESENCE_TTL_MS}) is how long a process that stopped answering
 * keeps its sockets counted — it renews its own deadline four times within that.
 */
export async function registerPresence (app: FastifyInstance, options: { redisUrl?: string, redisPrefix?: string, ttlMs?: number }): Promise<void> {
  const ttlMs = options.ttlMs ?? PRESENCE_TTL_MS
  if (!Number.isSafeInteger(ttlMs) || ttlMs < 100) throw new Error('presence ttlMs must be an integer of at least 100')
  // This process's open presence sockets, by upgrade request (the same for a socket's connect and disconnect).
  const sockets = new Map<FastifyRequest, ActionContext>()
  let closing = false
  // What each socket was last told, so a socket hears of a count only when it changed.
  const told = new WeakMap<ActionContext, number>()
  // Reads of the count are numbered as they are issued; one Redis connection answers them in
  // that order, but a change's own count returns after a later notification's read may have:
  // a count older than one already sent is stale and dropped.
  let issued = 0
  let sent = 0
  /**
   * Record this process's sockets (or only read, `own` false), read the count and send it to
   * the sockets open when the read was issued — a socket that opened meanwhile gets its count
   * from its own connect, and must not get an older one after it. Returns the counter's answer.
   */
  const broadcast = async (own: boolean): Promise<{ online: number, reaped: boolean }> => {
    const seq = ++issued
    const to = [...sockets.values()]
    const answer = await counter.sync(own ? sockets.size : undefined)
    if (seq < sent) return answer
    sent = seq
    for (const ctx of to) {
      if (told.get(ctx) === answer.online) continue
      told.set(ctx, answer.online)
      ctx.reply({ online: answer.online }, 200, { action: 'presence', requestId: null })
    }
    return answer
  }
  const counter = options.redisUrl === undefined || options.redisUrl === ''
    ? localCounter()
    : await redisCounter(options.redisUrl, options.redisPrefix ?? 'wsrest:', ttlMs, () => {
      broadcast(false).catch((err: Error) => app.log.warn({ err: err.message }, 'presence: count not read'))
    }, app.log)

  // The heartbeat: this process renews its deadline; a dead process's sockets, once past theirs,
  // leave the count, and the process that took them off tells the others. One warning per outage.
  let failing = false
  const heartbeat = options.redisUrl === undefined || options.redisUrl === '' ? undefined : setInterval(() => {
    broadcast(true).then(async ({ reaped }) => {
      failing = false
      if (reaped) await counter.notify()
    }).catch((err: Error) => {
      if (!failing) app.log.warn({ err: err.message }, 'presence: heartbeat failed')
      failing = true
    })
  }, Math.floor(ttlMs / 4))
  heartbeat?.unref()

  // A graceful close takes this process's sockets off the count at once, so none stays
  // counted in Redis; onDisconnect of each then has nothing left to do.
  app.addHook('preClose', async () => {
    closing = true
    clearInterval(heartbeat)
    sockets.clear()
    await counter.leave().catch((err: Error) => app.log.warn({ err: err.message }, 'presence: count not updated at close'))
  })
  app.addHook('onClose', async () => {
    clearInterval(heartbeat)
    await counter.close()
  })

  app.wsRest.route('/ws/presence/', defineRoute({
    async onConnect (ctx) {
      sockets.set(ctx.request, ctx)
      // In the socket's own turn: its first frame is this one, before any reply.
      await broadcast(true)
      await counter.notify()
    },
    async onDisconnect (ctx) {
      // Closing, the count was taken down for all of this process's sockets already.
      if (!sockets.delete(ctx.request) || closing) return
      try {
        await broadcast(true)
        await counter.notify()
      } catch (err) {
        ctx.log.warn({ err: (err as Error).message }, 'presence: count not updated')
      }
    },
    actions: [
      action('list', async () => ({ data: { online: (await counter.sync()).online } }))
    ]
  }))
}
