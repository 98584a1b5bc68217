/**
 * `node --import tsx bench/write-batching.ts`: what a burst of frames to one socket costs —
 * an action that sends 20 frames (`ctx.send`) and then its reply, 21 frames in one tick,
 * as a transaction's events to a subscriber or a streamed list's pages are. The server's
 * per-socket write batching (lib/session.ts: a socket's frames of one tick after its first go out in one TCP write) is what
 * this measures; the ops of `npm run bench` send one frame per socket per tick, where it
 * changes nothing.
 *
 * Server and client run in this one process (pin it: `taskset -c 0 node …`); it prints the
 * process's CPU time and the wall time per burst, three rounds of 3,000 bursts.
 */
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import wsRest, { action } from '../index.js'
import { openOrm } from './entity.js'

const FRAMES = 20
const BURSTS = 3_000

const orm = await openOrm(':memory:')
const app = Fastify({ logger: false })
await app.register(wsRest, { orm, maxActionsPerSecond: 1e9 })
app.wsRest.route('/burst/', {
  actions: [action('burst', { schema: Type.Object({}) }, (ctx) => {
    for (let n = 0; n < FRAMES; n++) ctx.send({ n, text: 'an event of a few dozen characters' })
    return { data: FRAMES }
  })]
})
await app.listen({ host: '127.0.0.1', port: 0 })
const { port } = app.server.address() as AddressInfo

const socket = new WebSocket(`ws://127.0.0.1:${port}/burst/`)
await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
let received = 0
let done = (): void => {}
socket.on('message', () => { if (++received % (FRAMES + 1) === 0) done() })

async function bursts (count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const answered = new Promise<void>((resolve) => { done = resolve })
    socket.send(JSON.stringify({ action: 'burst', request_id: i }))
    await answered
  }
}

await bursts(500) // warm-up
for (let round = 1; round <= 3; round++) {
  const cpu = process.cpuUsage()
  const started = performance.now()
  await bursts(BURSTS)
  const used = process.cpuUsage(cpu)
  const wall = (performance.now() - started) * 1000 / BURSTS
  console.log(`round ${round}: ${((used.user + used.system) / BURSTS).toFixed(1)} µs CPU, ${wall.toFixed(1)} µs wall per burst of ${FRAMES + 1} frames`)
}
socket.close()
await app.close()
await orm.close()
