/**
 * The example's JWT route hardened (example/auth.ts, example/app.ts, example/password.ts):
 * a socket lives no longer than its token (closed with 4001 "Token expired" at `exp`) nor
 * than its user (an action after the user was deleted: 403, then 4003);
 * only HS256 tokens that carry `exp` and name a user who still exists are accepted; no
 * token reaches the log, not even in a 404's line; `POST /token` is rate-limited and
 * password hashing runs at most two at a time. Real sockets; the one wait for time to
 * pass is a token's own expiry, bounded.
 */
import { createHmac } from 'node:crypto'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { buildApp } from '../example/app.js'
import { CLOSE_TOKEN_EXPIRED, CLOSE_USER_GONE, TOKEN_EXPIRED, TOKEN_RATE_LIMIT, USER_CHECK_REUSE_MS, USER_GONE } from '../example/auth.js'
import { hashingLoad, hashPassword, MAX_CONCURRENT_HASHES } from '../example/password.js'
import { within } from './helpers/async.js'
import { openClient, upgradeStatus } from './helpers/client.js'
import { createDatabase } from './helpers/database.js'
import type { Running } from './helpers/server.js'

const SECRET = 'a test secret that signs the tokens of these tests'

/** The example with a known secret (to forge tokens the server would otherwise never make), logging into `lines`. */
async function start (t: Test, lines?: string[]): Promise<Running & { http: string }> {
  const database = await createDatabase(t)
  const stream = new Writable({ write (chunk, _enc, done) { lines?.push(String(chunk)); done() } })
  const { app, orm } = await buildApp({
    ...database.exampleOptions,
    jwtSecret: SECRET,
    fastify: { logger: lines === undefined ? false : { level: 'info', stream } }
  })
  t.teardown(async () => await app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  return { app, orm, base: `ws://127.0.0.1:${port}`, http: `http://127.0.0.1:${port}` }
}

/** Create `name` through `/ws/`; its id. */
async function createUser (t: Test, base: string, name: string): Promise<number> {
  const client = await openClient(t, `${base}/ws/`)
  const created = await client.request('create', { data: { username: name, password1: `${name}-pw`, password2: `${name}-pw` } })
  t.equal(created.response_status, 201, `${name} created`)
  client.close()
  return created.data.id
}

/** A JWT signed with HMAC `alg` over `payload`, built by hand (no library defaults such as `exp`). */
function handMade (payload: Record<string, unknown>, alg = 'HS256'): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const signing = `${part({ alg, typ: 'JWT' })}.${part(payload)}`
  const hash = { HS256: 'sha256', HS384: 'sha384', HS512: 'sha512' }[alg]!
  return `${signing}.${createHmac(hash, SECRET).update(signing).digest('base64url')}`
}

async function postToken (http: string, body: unknown): Promise<number> {
  const res = await within(fetch(`${http}/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
  }), 'the POST /token reply')
  await res.arrayBuffer()
  return res.status
}

t.test('at the token\'s exp the open socket is closed with 4001 "Token expired"; a new upgrade gets 401', async (t) => {
  const { app, base } = await start(t)
  const id = await createUser(t, base, 'alice')
  // exp has whole seconds: 1 to 2 s from now.
  const token = app.jwt.sign({ sub: String(id), username: 'alice' }, { expiresIn: '2s' })
  const client = await openClient(t, `${base}/ws/jwt/?token=${token}`)
  const before = await client.request('patch', { pk: id, data: { email: 'alice@example.com' } })
  t.equal(before.response_status, 200, 'before exp the token works')

  const closed = await client.waitClose(4_000)
  t.strictSame(closed, { code: CLOSE_TOKEN_EXPIRED, reason: TOKEN_EXPIRED })
  t.strictSame([CLOSE_TOKEN_EXPIRED, TOKEN_EXPIRED], [4001, 'Token expired'])
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${token}`), 401, 'and the token opens no new socket')
})

t.test('only HS256 tokens with exp: another algorithm or no exp is refused with 401, even signed with the secret', async (t) => {
  const { base } = await start(t)
  const id = await createUser(t, base, 'alice')
  const exp = Math.floor(Date.now() / 1000) + 3600
  const claims = { sub: String(id), username: 'alice' }
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${handMade({ ...claims, exp })}`), 101, 'HS256 with exp connects')
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${handMade({ ...claims, exp }, 'HS384')}`), 401, 'HS384')
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${handMade({ ...claims, exp }, 'HS512')}`), 401, 'HS512')
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${handMade(claims)}`), 401, 'no exp: would never expire')
})

t.test('a deleted user: an action on the open socket is refused (403), the socket closes with 4003, and the token opens no new socket (401)', async (t) => {
  const { base, http } = await start(t)
  const id = await createUser(t, base, 'carol')
  const res = await fetch(`${http}/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'carol', password: 'carol-pw' })
  })
  const { token } = await res.json() as { token: string }
  const jwt = await openClient(t, `${base}/ws/jwt/?token=${token}`)
  t.strictSame((await jwt.request('whoami')).data, { id, username: 'carol' })

  const admin = await openClient(t, `${base}/ws/`)
  t.equal((await admin.request('delete', { pk: id })).response_status, 204, 'carol deleted')
  const listed = await jwt.request('list')
  t.strictSame([listed.response_status, listed.errors], [403, ['You do not have permission to perform this action.']],
    'not even a read: her socket no longer acts for anyone')
  t.strictSame(await jwt.waitClose(), { code: CLOSE_USER_GONE, reason: USER_GONE }, 'then the socket closes')
  t.strictSame([CLOSE_USER_GONE, USER_GONE], [4003, 'User no longer exists'])
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${token}`), 401, 'her token opens no socket')
})

t.test('a deleted user\'s subscription ends too: its events run the same check (a count at most USER_CHECK_REUSE_MS old), then 4003', async (t) => {
  const { base, http } = await start(t)
  const id = await createUser(t, base, 'carol')
  const other = await createUser(t, base, 'dave')
  const res = await fetch(`${http}/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'carol', password: 'carol-pw' })
  })
  const { token } = await res.json() as { token: string }
  const jwt = await openClient(t, `${base}/ws/jwt/?token=${token}`)
  t.equal((await jwt.request('subscribe_list')).response_status, 201, 'carol subscribes to the users')

  const admin = await openClient(t, `${base}/ws/`)
  t.equal((await admin.request('patch', { pk: other, data: { email: 'd1@example.com' } })).response_status, 200)
  const event = await jwt.next()
  t.strictSame([event.action, event.data.email], ['update', 'd1@example.com'], 'while she exists, her events arrive')

  t.equal((await admin.request('delete', { pk: id })).response_status, 204, 'carol deleted')
  // She sends nothing: only her subscription's events can notice. Changes keep coming until they do.
  let closed = false
  const closing = jwt.waitClose(3 * USER_CHECK_REUSE_MS + 5_000).finally(() => { closed = true })
  let patches = 0
  for (let i = 2; !closed && i < 10_000; i++) {
    const status = (await admin.request('patch', { pk: other, data: { email: `d${i}@example.com` } })).response_status
    if (status !== 200) t.fail(`patch ${i}: ${status}`)
    patches++
  }
  t.ok(patches > 0, `${patches} changes before her socket closed`)
  t.strictSame(await closing, { code: CLOSE_USER_GONE, reason: USER_GONE }, 'her socket closes once an event finds her gone')
})

t.test('no token in the log: not in the request lines, not in a 404\'s message, not for ?token=admin', async (t) => {
  const lines: string[] = []
  const { app, base, http } = await start(t, lines)
  const id = await createUser(t, base, 'alice')
  const token = app.jwt.sign({ sub: String(id), username: 'alice' })
  const secrets = [token, token.split('.')[2]!, 'token=admin', 'oken=admin', 'access_token=hunter2', 'hunter2', 'opensesame']
  // Percent-encoded: the query parser decodes names and values (`%74oken` is `token`), a pattern on the raw text would not.
  const encoded = token.replace(/^e/, '%65')

  for (const path of [
    `/ws/jwt?token=${token}`, // no trailing slash: Fastify's own 404
    `/ws/jwt/?token=${token}`, // plain HTTP on a WebSocket route: 426
    '/ws/secure?token=admin',
    '/ws/secure?%74oken=admin',
    `/ws/jwt?%74oken=${encoded}`,
    `/ws/jwt?TOKEN=${encoded}`,
    '/ws/secure?password=opensesame',
    `/nowhere?a=1&access_token=hunter2&b=${token}`
  ]) {
    const res = await fetch(`${http}${path}`)
    await res.arrayBuffer()
    t.not(res.status, 200, `${path.slice(0, 16)}… is refused`)
  }
  t.equal(await upgradeStatus(`${base}/ws/jwt/?token=${token}`), 101)
  t.equal(await upgradeStatus(`${base}/ws/secure/?token=admin`), 101)
  t.equal(await upgradeStatus(`${base}/ws/secure/?%74oken=admin`), 101, 'an encoded name is the same parameter')
  t.equal(await upgradeStatus(`${base}/ws/secure/?token=nope`), 403)
  // The line of the last request is written once it completed; the server's close flushes it.
  await app.close()

  const log = lines.join('')
  t.ok(log.includes('not found'), 'the 404s were logged')
  t.ok(log.includes('"url":"/ws/jwt/"'), 'request lines keep the path')
  for (const secret of secrets) t.notOk(log.includes(secret), `"${secret.slice(0, 20)}…" is not in the log`)
})

t.test(`POST /token: past ${TOKEN_RATE_LIMIT} attempts a minute from one address → 429`, async (t) => {
  const { http } = await start(t)
  const statuses: number[] = []
  for (let i = 0; i <= TOKEN_RATE_LIMIT; i++) statuses.push(await postToken(http, { username: 'nobody', password: 'guess' }))
  t.strictSame(statuses.slice(0, TOKEN_RATE_LIMIT), Array(TOKEN_RATE_LIMIT).fill(401), 'the first attempts are answered')
  t.equal(statuses[TOKEN_RATE_LIMIT], 429, 'then refused, without hashing')
})

t.test(`password hashing runs at most ${MAX_CONCURRENT_HASHES} at a time; the rest wait their turn`, async (t) => {
  t.equal(MAX_CONCURRENT_HASHES, 2)
  const hashes = Array.from({ length: 8 }, async (_, i) => await hashPassword(`pw-${i}`))
  t.strictSame(hashingLoad(), { running: 2, waiting: 6 }, 'two hashing, six queued')
  const done = await within(Promise.all(hashes), 'eight hashes')
  t.equal(new Set(done).size, 8, 'every one hashed')
  t.strictSame(hashingLoad(), { running: 0, waiting: 0 }, 'and the slots given back')
})
