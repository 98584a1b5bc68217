/**
 * JWT authentication in the example (example/auth.ts): `POST /token` hands out a token,
 * `/ws/jwt/` takes it as `?token=`, as `Authorization: Bearer`, or as the subprotocols
 * `access_token, <jwt>` (answering `access_token`), refuses anything else with HTTP 401
 * at the upgrade, and its handlers and permissions see the token's user as `request.user`.
 */
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { within } from './helpers/async.js'
import { openClient, TestClient, upgradeStatus } from './helpers/client.js'
import { startExample, type Running } from './helpers/server.js'

const PERMISSION_DENIED = ['You do not have permission to perform this action.']

/** The example with alice and bob created through `/ws/`; their ids, and `http://…` of the server. */
async function setup (t: Test): Promise<{ running: Running, http: string, ids: Record<'alice' | 'bob', number> }> {
  const running = await startExample(t)
  const client = await openClient(t, `${running.base}/ws/`)
  const ids = { alice: 0, bob: 0 }
  for (const name of ['alice', 'bob'] as const) {
    const created = await client.request('create', { data: { username: name, password1: `${name}-pw`, password2: `${name}-pw` } })
    t.equal(created.response_status, 201, `${name} created`)
    ids[name] = created.data.id
  }
  client.close()
  return { running, http: running.base.replace(/^ws:/, 'http:'), ids }
}

/** Open a WebSocket offering `protocols` (as a browser's `new WebSocket(url, protocols)`), closed when the test ends. */
async function openWithProtocols (t: Test, url: string, protocols: string[]): Promise<TestClient> {
  const socket = new WebSocket(url, protocols)
  const client = new TestClient(socket)
  t.teardown(() => client.close())
  await within(new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  }), `the upgrade of ${url}`)
  return client
}

/** `POST /token` with a JSON body: the status and the parsed body. */
async function postToken (http: string, body: unknown): Promise<{ status: number, body: any }> {
  const res = await within(fetch(`${http}/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body)
  }), 'the POST /token reply')
  return { status: res.status, body: await res.json() }
}

async function tokenFor (t: Test, http: string, username: string): Promise<string> {
  const { status, body } = await postToken(http, { username, password: `${username}-pw` })
  t.equal(status, 200, `a token for ${username}`)
  return body.token
}

/**
 * Open a WebSocket offering `protocols` and resolve with how the upgrade ended: the HTTP
 * status it was refused with, or 101 and the subprotocol the server chose.
 */
async function upgrade (url: string, protocols: string[]): Promise<{ status: number, protocol?: string, authenticate?: string }> {
  const socket = new WebSocket(url, protocols)
  return await within(new Promise((resolve, reject) => {
    socket.once('open', () => { resolve({ status: 101, protocol: socket.protocol }); socket.close() })
    socket.once('unexpected-response', (_req, res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, authenticate: res.headers['www-authenticate'] })
    })
    socket.once('error', (err) => { if (!String(err.message).includes('Unexpected server response')) reject(err) })
  }), `the upgrade of ${url}`)
}

t.test('POST /token: a token for the right password, 401 for a wrong password or an unknown user', async (t) => {
  const { http } = await setup(t)
  const ok = await postToken(http, { username: 'alice', password: 'alice-pw' })
  t.equal(ok.status, 200)
  t.match(ok.body, { token: /^[\w-]+\.[\w-]+\.[\w-]+$/ }, 'a JWT')
  t.strictSame(Object.keys(ok.body), ['token'], 'and nothing else')

  const wrong = await postToken(http, { username: 'alice', password: 'bob-pw' })
  const unknown = await postToken(http, { username: 'nobody', password: 'alice-pw' })
  t.equal(wrong.status, 401)
  t.strictSame(unknown, wrong, 'an unknown user gets the very same answer as a wrong password')
  t.equal((await postToken(http, { username: 'alice' })).status, 400, 'a missing password is a bad request')
})

t.test('a token in ?token= connects; whoami and every handler see the token\'s user', async (t) => {
  const { running, http, ids } = await setup(t)
  const token = await tokenFor(t, http, 'alice')
  const client = await openClient(t, `${running.base}/ws/jwt/?token=${token}`)
  const me = await client.request('whoami')
  t.strictSame([me.response_status, me.data], [200, { id: ids.alice, username: 'alice' }])
  const list = await client.request('list')
  t.strictSame(list.data.map((u: { username: string }) => u.username), ['alice', 'bob'], 'the route\'s other actions work')
})

t.test('a token in Sec-WebSocket-Protocol connects, and the server answers with access_token, not the token', async (t) => {
  const { running, http, ids } = await setup(t)
  const token = await tokenFor(t, http, 'bob')
  const client = await openWithProtocols(t, `${running.base}/ws/jwt/`, ['access_token', token])
  t.equal(client.socket.protocol, 'access_token')
  t.strictSame((await client.request('whoami')).data, { id: ids.bob, username: 'bob' })

  // access_token is answered wherever it stands in the offer (ws alone would answer the first, 'dcrf').
  const later = await upgrade(`${running.base}/ws/jwt/`, ['dcrf', 'access_token', token])
  t.strictSame(later, { status: 101, protocol: 'access_token' })
  // The header wins over the query: offering access_token commits the client to the header's token.
  t.equal((await upgrade(`${running.base}/ws/jwt/?token=${token}`, ['access_token'])).status, 401,
    'access_token offered without a token is refused, even with a good ?token=')
})

t.test('a token in Authorization: Bearer connects (clients that can set headers)', async (t) => {
  const { running, http, ids } = await setup(t)
  const token = await tokenFor(t, http, 'alice')
  const client = await openClient(t, `${running.base}/ws/jwt/`, { headers: { authorization: `Bearer ${token}` } })
  t.strictSame((await client.request('whoami')).data, { id: ids.alice, username: 'alice' })
  t.equal(client.socket.protocol, '', 'no subprotocol offered, none answered')
})

t.test('no token, a garbled, wrongly signed or expired one: HTTP 401 at the upgrade, no socket', async (t) => {
  const { running, http } = await setup(t)
  const url = `${running.base}/ws/jwt/`
  const good = await tokenFor(t, http, 'alice')
  const payload = { sub: '1', username: 'alice' }
  const forged = running.app.jwt.sign(payload, { key: 'not the server secret' })
  // Issued two hours ago, valid for one.
  const expired = running.app.jwt.sign(payload, { clockTimestamp: Date.now() - 2 * 3600_000 })
  // Each is refused for its one flaw: sound with the right key, or once expiry is ignored.
  t.match(running.app.jwt.verify(forged, { key: 'not the server secret' }), payload, 'the forged token is a sound JWT')
  t.match(running.app.jwt.verify(expired, { ignoreExpiration: true }), payload, 'the expired token is otherwise valid')
  const [header, body] = good.split('.')
  const unsigned = `${header}.${body}.`

  t.equal(await upgradeStatus(url), 401, 'no token')
  t.equal(await upgradeStatus(`${url}?token=`), 401, 'an empty token')
  t.equal(await upgradeStatus(`${url}?token=not-a-jwt`), 401, 'not a JWT')
  t.equal(await upgradeStatus(`${url}?token=${forged}`), 401, 'signed with another secret')
  t.equal(await upgradeStatus(`${url}?token=${expired}`), 401, 'expired')
  t.equal(await upgradeStatus(`${url}?token=${unsigned}`), 401, 'the signature stripped')
  t.equal(await upgradeStatus(`${url}?token=${good}&token=${good}`), 401, 'two tokens: refused, not guessed')
  for (const [what, token] of [['forged', forged], ['expired', expired]] as const) {
    t.strictSame(await upgrade(url, ['access_token', token]), { status: 401, authenticate: 'Bearer' }, `${what}, in the header`)
  }
  t.equal(await upgradeStatus(`${url}?token=${good}`), 101, 'while the good token connects')
})

t.test('a permission reading request.user: each user may patch their own row only', async (t) => {
  const { running, http, ids } = await setup(t)
  const alice = await openClient(t, `${running.base}/ws/jwt/?token=${await tokenFor(t, http, 'alice')}`)
  const bob = await openWithProtocols(t, `${running.base}/ws/jwt/`, ['access_token', await tokenFor(t, http, 'bob')])

  const own = await alice.request('patch', { pk: ids.alice, data: { email: 'alice@example.com' } })
  t.strictSame([own.response_status, own.data], [200, { id: ids.alice, username: 'alice', email: 'alice@example.com' }])
  const other = await alice.request('patch', { pk: ids.bob, data: { email: 'owned@example.com' } })
  t.strictSame([other.response_status, other.errors, other.data], [403, PERMISSION_DENIED, null], 'alice may not patch bob')
  const bobs = await bob.request('patch', { pk: ids.bob, data: { email: 'bob@example.com' } })
  t.equal(bobs.response_status, 200, 'bob may patch his own row')
  t.equal((await bob.request('patch', { pk: ids.alice, data: { email: 'x@example.com' } })).response_status, 403, 'but not alice\'s')
  t.equal((await bob.request('retrieve', { pk: ids.alice })).data.email, 'alice@example.com', 'alice\'s row kept her own change only')
})

t.test('the example\'s other routes are unchanged: /ws/ needs no token, /ws/secure/ keeps its own, other subprotocols as before', async (t) => {
  const { running } = await setup(t)
  t.equal(await upgradeStatus(`${running.base}/ws/`), 101)
  t.equal(await upgradeStatus(`${running.base}/ws/secure/?token=reader`), 101)
  t.equal(await upgradeStatus(`${running.base}/ws/secure/?token=nope`), 403)
  // Without access_token in the offer, the server picks the first subprotocol, as ws does by default.
  t.strictSame(await upgrade(`${running.base}/ws/`, ['first', 'second']), { status: 101, protocol: 'first' })
})
