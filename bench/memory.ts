/**
 * Idle memory per open socket: a fresh server's memory (after two full GCs) before and
 * after N sockets are opened and have each made one `retrieve` (so whatever a connection
 * allocates on its first message exists), then sit idle.
 *
 * Reported per socket: the JS heap (heapUsed), the memory outside the heap that JS objects
 * hold (external, which includes socket buffers), and the process's RSS. A warm-up of 100
 * sockets (opened, used, closed) runs first so that lazily loaded code and one-time caches
 * are not charged to the sockets.
 */
import { openMany, sleep } from './load.js'
import { startServer, type ServerKind } from './servers.js'
import type { WsClient } from './client.js'

export interface IdleMemoryResult {
  kind: ServerKind
  sockets: number
  before: NodeJS.MemoryUsage
  after: NodeJS.MemoryUsage
  /** KiB per socket. */
  perSocketKiB: { heapUsed: number, external: number, rss: number }
}

/** Each client sends one retrieve and waits for its reply. */
async function retrieveOnce (clients: WsClient[]): Promise<void> {
  await Promise.all(clients.map(async (client, i) => {
    await new Promise<void>((resolve, reject) => {
      client.onMessage = (text) => {
        const reply = JSON.parse(text) as { response_status?: number, request_id?: unknown }
        if (reply.response_status !== 200 || reply.request_id !== i) reject(new Error(`idle-memory retrieve: ${text.slice(0, 200)}`))
        else resolve()
      }
      client.send(JSON.stringify({ action: 'retrieve', request_id: i, pk: 1 + (i % 1000) }))
    })
  }))
}

export async function runIdleMemory (kind: ServerKind, sockets: number): Promise<IdleMemoryResult> {
  const server = await startServer(kind)
  const clients: WsClient[] = []
  try {
    const warm = await openMany(server.url(), 100)
    await retrieveOnce(warm)
    for (const c of warm) c.close()
    await sleep(1_000)
    const before = await server.memory()
    for (let i = 0; i < sockets; i += 500) {
      const batch = await openMany(server.url(), Math.min(500, sockets - i), 250)
      clients.push(...batch)
      await retrieveOnce(batch)
    }
    await sleep(1_000)
    const after = await server.memory()
    const per = (key: 'heapUsed' | 'external' | 'rss'): number => (after[key] - before[key]) / sockets / 1024
    return { kind, sockets, before, after, perSocketKiB: { heapUsed: per('heapUsed'), external: per('external'), rss: per('rss') } }
  } finally {
    for (const c of clients) c.destroy()
    await server.stop()
  }
}
