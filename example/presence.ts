/**
 * The example's presence route, `/ws/presence/`: who is online, as DCRF apps build it with
 * `websocket_connect` / `websocket_disconnect`. When a socket opens or closes, every socket
 * on the route — on every example process sharing Redis — gets a server-sent frame
 * `{"errors": [], "data": {"online": N}, "action": "presence", "response_status": 200,
 * "request_id": null}`; an opening socket's first frame is its own.
 *
 * The count lives in Redis when the processes share one (INCR/DECR; a process that
 * crashes leaves its sockets counted), else in the process. Each process sends frames to
 * its own sockets; a change made elsewhere reaches it on a Redis channel, and it sends the
 * count as it is then, so every socket converges on the same N.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import { randomUUID } from 'node:crypto'
import { action, defineRoute, type ActionContext } from '../index.js'

/** Where the number of open presence sockets is kept. */
interface Counter {
  /** Add `by` (negative to take away) and return the new count. */
  change: (by: number) => Promise<number>
  count: () => Promise<number>
  close: () => Promise<void>
}

function localCounter (): Counter {
  let online = 0
  return {
    change: async (by) => (online += by),
    count: async () => online,
    close: async () => {}
  }
}

/** The count in Redis, and a channel telling the other processes it changed. */
async function redisCounter (url: string, prefix: string, onRemoteChange: () => void, log: FastifyBaseLogger): Promise<Counter> {
  const { Redis } = await import('ioredis')
  const key = `${prefix}presence:online`
  const channel = `${prefix}presence:changed`
  const me = randomUUID()
  const commands = new Redis(url, { lazyConnect: true })
  const listener = new Redis(url, { lazyConnect: true })
  for (const client of [commands, listener]) client.on('error', (err) => log.warn({ err: err.message }, 'presence: Redis error'))
  await Promise.all([commands.connect(), listener.connect()])
  listener.on('message', (_channel: string, origin: string) => { if (origin !== me) onRemoteChange() })
  await listener.subscribe(channel)
  return {
    async change (by) {
      const online = await commands.incrby(key, by)
      await commands.publish(channel, me)
      return Math.max(0, online)
    },
    count: async () => Math.max(0, Number(await commands.get(key) ?? 0)),
    async close () {
      listener.disconnect()
      commands.disconnect()
    }
  }
}

/** Register the presence route on `app`: `redisUrl` shares the count with every process using it. */
export async function registerPresence (app: FastifyInstance, options: { redisUrl?: string, redisPrefix?: string }): Promise<void> {
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
   * Read the count with `read` and send it to the sockets open when the read was issued —
   * a socket that opened meanwhile gets its count from its own connect, and must not get an
   * older one after it.
   */
  const broadcast = async (read: () => Promise<number>): Promise<void> => {
    const seq = ++issued
    const to = [...sockets.values()]
    const online = await read()
    if (seq < sent) return
    sent = seq
    for (const ctx of to) {
      if (told.get(ctx) === online) continue
      told.set(ctx, online)
      ctx.reply({ online }, 200, { action: 'presence', requestId: null })
    }
  }
  const counter = options.redisUrl === undefined || options.redisUrl === ''
    ? localCounter()
    : await redisCounter(options.redisUrl, options.redisPrefix ?? 'wsrest:', () => {
      broadcast(async () => await counter.count()).catch((err: Error) => app.log.warn({ err: err.message }, 'presence: count not read'))
    }, app.log)
  // A graceful close takes this process's sockets off the count at once, so none stays
  // counted in Redis; onDisconnect of each then has nothing left to do.
  app.addHook('preClose', async () => {
    closing = true
    if (sockets.size === 0) return
    const leaving = sockets.size
    sockets.clear()
    await counter.change(-leaving).catch((err: Error) => app.log.warn({ err: err.message }, 'presence: count not updated at close'))
  })
  app.addHook('onClose', async () => { await counter.close() })

  app.wsRest.route('/ws/presence/', defineRoute({
    async onConnect (ctx) {
      sockets.set(ctx.request, ctx)
      // In the socket's own turn: its first frame is this one, before any reply.
      await broadcast(async () => await counter.change(1))
    },
    async onDisconnect (ctx) {
      // Closing, the count was taken down for all of this process's sockets already.
      if (!sockets.delete(ctx.request) || closing) return
      try {
        await broadcast(async () => await counter.change(-1))
      } catch (err) {
        ctx.log.warn({ err: (err as Error).message }, 'presence: count not updated')
      }
    },
    actions: [
      action('list', async () => ({ data: { online: await counter.count() } }))
    ]
  }))
}
