/**
 * The example server as EXAMPLE.md fixes it, driven from outside: `node --import tsx
 * example/server.ts` in its own process, with HOST/PORT/DB (or DATABASE_URL) from the
 * environment; it logs `listening on ws://HOST:PORT` once ready and, on SIGTERM/SIGINT,
 * closes open sockets with 1001 and exits 0.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import t from 'tap'
import { within, type Teardown } from './helpers/async.js'
import { openClient } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'

/** A port nothing listens on right now. */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

interface Running { child: ChildProcess, url: string, exited: Promise<number | null> }

/** Start the example server process on a fresh database and wait for its "listening" line. */
async function startServer (t: Teardown): Promise<Running> {
  const database = await createDatabase(t)
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: String(port) }
  delete env.DATABASE_URL
  if ('db' in database.exampleOptions) env.DB = database.exampleOptions.db
  else env.DATABASE_URL = database.exampleOptions.databaseUrl
  const child = spawn(process.execPath, ['--import', 'tsx', 'example/server.ts'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })

  const url = `ws://127.0.0.1:${port}`
  let output = ''
  const listening = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      // pino writes one JSON object per line.
      for (const line of output.split('\n')) {
        try {
          if ((JSON.parse(line) as { msg?: unknown }).msg === `listening on ${url}`) resolve()
        } catch {}
      }
    })
    child.stderr!.on('data', (chunk: Buffer) => { output += chunk.toString() })
    void exited.then((code) => reject(new Error(`example server exited (${String(code)}) before listening:\n${output}`)))
  })
  await within(listening, 'the "listening on ws://…" log line', 30_000)
  return { child, url, exited }
}

t.test('npm run example: logs its address, serves /ws/, and SIGTERM closes sockets with 1001 and exits 0', async (t) => {
  const { child, url, exited } = await startServer(t)
  const client = await openClient(t, `${url}/ws/`)
  const created = await client.request('create', {
    data: { username: 'alice', email: 'alice@example.com', password1: 'pw', password2: 'pw' }
  })
  t.strictSame([created.response_status, created.data], [201, { id: 1, username: 'alice', email: 'alice@example.com' }])

  child.kill('SIGTERM')
  t.equal((await client.waitClose(10_000)).code, 1001, 'open sockets are closed with 1001')
  t.equal(await within(exited, 'the process exit', 10_000), 0, 'exits cleanly')
})

t.test('SIGINT shuts it down the same way', async (t) => {
  const { child, url, exited } = await startServer(t)
  const client = await openClient(t, `${url}/ws/paginated/`)
  t.equal((await client.request('list')).response_status, 200)
  child.kill('SIGINT')
  t.equal((await client.waitClose(10_000)).code, 1001)
  t.equal(await within(exited, 'the process exit', 10_000), 0)
})
