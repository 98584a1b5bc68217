/**
 * The example server as its own process (`node --import tsx example/server.ts`), as
 * docs/example.md's acceptance tests drive it: started with HOST/PORT/DB (or DATABASE_URL) and
 * any other environment, ready once it logs `listening on ws://HOST:PORT`, killed in teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { within, type Teardown } from './async.js'
import { createDatabase, type TestDatabase } from './database.js'
import { freePort } from './free-port.js'

export interface Running { child: ChildProcess, url: string, exited: Promise<number | null> }

/**
 * Start the example server process and wait for its "listening" line: on a fresh database,
 * or on `database` (shared by several processes), with `extraEnv` added.
 */
export async function startServer (t: Teardown, database?: TestDatabase, extraEnv: NodeJS.ProcessEnv = {}): Promise<Running> {
  database ??= await createDatabase(t)
  const port = await freePort()
  // `_TAPJS_PROCESSINFO_COVERAGE_=0`: the child inherits tap's environment, and would record
  // coverage of its own tsx-compiled copies of lib/, index.ts and example/; merged with the test
  // processes' copies they hide lib/ from the report or skew its figures. The example server's
  // coverage is not what the gate in package.json measures: only the test processes' is.
  const env: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', PORT: String(port), ...extraEnv, _TAPJS_PROCESSINFO_COVERAGE_: '0' }
  delete env.DATABASE_URL
  if (extraEnv.REDIS_URL === undefined) delete env.REDIS_URL
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
