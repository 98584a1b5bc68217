/**
 * Starting and stopping the benchmark servers as child processes pinned to core 0
 * (`taskset -c 0`), and talking to their `/__bench/*` routes.
 *
 * Every child is remembered, and killed when the harness exits, is interrupted, or
 * crashes; a child also exits by itself when its stdin (a pipe from the harness) closes.
 * A child starts with its open-file limit raised as far as allowed (limits.ts): the
 * fan-out part holds tens of thousands of sockets in one server.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { SeedInfo } from './entity.js'
import type { HashKind } from './entity-hooked.js'
import { withOpenFiles } from './limits.js'

export type ServerKind = 'plugin' | 'baseline'

/** The core the servers run on; the generator takes the other one. */
export const SERVER_CORE = 0
export const GENERATOR_CORE = 1

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const STARTUP_TIMEOUT_MS = 60_000

const children = new Set<ChildProcess>()

function killAll (): void {
  for (const child of children) child.kill('SIGKILL')
  children.clear()
}
process.on('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping the servers\n`)
    killAll()
    process.exit(130)
  })
}

export interface BenchServer {
  kind: ServerKind
  pid: number
  port: number
  /** ws://127.0.0.1:port + path */
  url: (path?: string) => string
  /** The server's process.memoryUsage() after two full GCs. */
  memory: () => Promise<NodeJS.MemoryUsage>
  /** Reseed: `rows` rows (ids 1..rows) and `deletable` more for delete runs. */
  reset: (rows: number, deletable?: number) => Promise<SeedInfo>
  /** Check the stored password hashes of the latest `sample` sign-ups (see entity-hooked.ts badPasswords). */
  verify: (hash: HashKind, sample: number) => Promise<{ users: number, checked: number, bad: string[] }>
  stop: () => Promise<void>
}

export interface StartOptions {
  /** Environment for server-common.ts (BENCH_DB, BENCH_SEED, BENCH_LAYER, …). */
  env?: Record<string, string>
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[]
}

/** Start `bench/server-<kind>.ts` on core 0; resolves once it listens. */
export async function startServer (kind: ServerKind, options: StartOptions = {}): Promise<BenchServer> {
  const [command, args] = withOpenFiles('taskset', [
    '-c', String(SERVER_CORE),
    process.execPath, '--expose-gc', '--import', 'tsx', ...(options.nodeArgs ?? []), `bench/server-${kind}.ts`
  ])
  // `sh` execs taskset, which execs node: child.pid is the server's own pid (its /proc CPU times).
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, BENCH_WATCH_STDIN: '1', ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
    process.stderr.write(chunk.toString().replace(/^(?=.)/gm, `[${kind} server] `))
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve() }))

  const port = await new Promise<number>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`${kind} server did not start within ${STARTUP_TIMEOUT_MS / 1000} s`)) }, STARTUP_TIMEOUT_MS)
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /^PORT (\d+)$/m.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(Number(match[1])) }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${kind} server exited (${code ?? signal}) before listening: ${stderr.slice(-2000)}`))
    })
  })
  const base = `http://127.0.0.1:${port}`
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const response = await fetch(base + path, {
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    })
    if (!response.ok) throw new Error(`${kind} server: ${method} ${path} → ${response.status} ${await response.text()}`)
    return await response.json() as T
  }
  return {
    kind,
    pid: child.pid!,
    port,
    url: (path = '/ws/') => `ws://127.0.0.1:${port}${path}`,
    memory: async () => await call<NodeJS.MemoryUsage>('GET', '/__bench/memory'),
    reset: async (rows, deletable = 0) => await call<SeedInfo>('POST', '/__bench/reset', { rows, deletable }),
    verify: async (hash, sample) => await call('POST', '/__bench/verify', { hash, sample }),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.stdin!.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
  }
}
