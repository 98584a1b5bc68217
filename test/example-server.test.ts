/**
 * The example server as docs/example.md fixes it, driven from outside: `node --import tsx
 * example/server.ts` in its own process, with HOST/PORT/DB (or DATABASE_URL) from the
 * environment; it logs `listening on ws://HOST:PORT` once ready and, on SIGTERM/SIGINT,
 * closes open sockets with 1001 and exits 0.
 */
import t from 'tap'
import { within } from './helpers/async.js'
import { openClient } from './helpers/client.js'
import { startServer } from './helpers/example-process.js'

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
