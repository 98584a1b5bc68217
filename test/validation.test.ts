/**
 * DRF-shaped validation through the example's create / update / patch (docs/protocol.md
 * "validation failure" row): one object holding every failing field, DRF's wording,
 * unique violations as 400s keyed by the field, passwords stored hashed and never
 * returned, unknown fields ignored.
 */
import { defineEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import { verifyPassword } from '../example/password.js'
import { User } from '../example/user.js'
import { mixins } from '../index.js'
import { openClient, type TestClient, type WireReply } from './helpers/client.js'
import { startApp, startExample, type Running } from './helpers/server.js'

/** A subtest, as tap passes it to a `t.test` callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const REPLY_KEYS = ['action', 'data', 'errors', 'request_id', 'response_status']
const USER_KEYS = ['email', 'id', 'username']

/** A 400 validation reply: five keys, data null, and exactly `fields` as the one error object. */
function checkInvalid (t: Test, reply: WireReply, action: string, fields: Record<string, string[]>, what: string): void {
  t.strictSame(Object.keys(reply).sort(), REPLY_KEYS, `${what}: exactly the five keys`)
  t.equal(reply.response_status, 400, `${what}: 400`)
  t.equal(reply.action, action, `${what}: action echoed`)
  t.equal(reply.data, null, `${what}: data null`)
  t.equal(reply.errors.length, 1, `${what}: one error object`)
  const errors = reply.errors[0] as Record<string, unknown>
  // Exact keys first (t.same alone would not show a missing vs extra field as clearly).
  t.strictSame(Object.keys(errors ?? {}).sort(), Object.keys(fields).sort(), `${what}: failing fields`)
  t.strictSame(errors, fields, `${what}: messages`)
}

/** A reply carrying one user: the public shape and nothing else (no password of any kind). */
function checkUser (t: Test, user: Record<string, unknown>, what: string): void {
  t.strictSame(Object.keys(user).sort(), USER_KEYS, `${what}: only id, username, email`)
  for (const key of ['password', 'password1', 'password2']) t.notOk(key in user, `${what}: no ${key}`)
}

async function open (t: Test, base: string): Promise<TestClient> {
  return await openClient(t, `${base}/ws/`)
}

const valid = (username: string, password = 'correct horse'): Record<string, unknown> =>
  ({ username, email: `${username}@example.com`, password1: password, password2: password })

async function create (t: Test, client: TestClient, data: Record<string, unknown>): Promise<{ id: number, username: string, email: string }> {
  const reply = await client.request('create', { data })
  t.equal(reply.response_status, 201, `created ${String(data.username)}`)
  return reply.data
}

/** Every stored row, password included, to prove a refused request wrote nothing. */
async function rows (running: Running): Promise<Array<{ id: number, username: string, email: string, password: string }>> {
  const all = await running.orm.em.fork().find(User, {}, { orderBy: { id: 'asc' } })
  return all.map((u) => ({ id: u.id, username: u.username, email: u.email, password: u.password }))
}

t.test('every failing field at once, in one object', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)

  // The docs/protocol.md example: no username, passwords differ.
  checkInvalid(t, await client.request('create', { data: { password1: 'a', password2: 'b' } }), 'create', {
    password2: ['Passwords do not match.'],
    username: ['This field is required.']
  }, 'missing username + mismatch')

  // Nothing at all: every required field (email is optional).
  checkInvalid(t, await client.request('create', { data: {} }), 'create', {
    username: ['This field is required.'],
    password1: ['This field is required.'],
    password2: ['This field is required.']
  }, 'empty data')

  // Several kinds of failure in one message.
  checkInvalid(t, await client.request('create', {
    data: { username: '', email: 'not-an-email', password1: '', password2: 'x' }
  }), 'create', {
    username: ['This field may not be blank.'],
    email: ['Enter a valid email address.'],
    password1: ['This field may not be blank.']
  }, 'blank + bad email + blank password')

  // update: the whole object is required, but for fields with a default (email), which keep their value (DRF).
  const alice = await create(t, client, valid('alice'))
  checkInvalid(t, await client.request('update', { pk: alice.id, data: {} }), 'update', {
    username: ['This field is required.']
  }, 'update with empty data')
  const kept = await client.request('update', { pk: alice.id, data: { username: 'alice' } })
  t.strictSame([kept.response_status, kept.data.email], [200, 'alice@example.com'], 'a full update without email keeps it')
  checkInvalid(t, await client.request('update', { pk: alice.id, data: { username: '', email: 'nope' } }), 'update', {
    username: ['This field may not be blank.'],
    email: ['Enter a valid email address.']
  }, 'update with two bad fields')
  checkInvalid(t, await client.request('patch', { pk: alice.id, data: { username: '', email: 'nope' } }), 'patch', {
    username: ['This field may not be blank.'],
    email: ['Enter a valid email address.']
  }, 'patch with two bad fields')

  const stored = await rows(running)
  t.equal(stored.length, 1, 'no invalid create was written')
  t.strictSame({ username: stored[0].username, email: stored[0].email }, { username: 'alice', email: 'alice@example.com' }, 'no invalid update was written')
})

t.test('"This field may not be blank." and "Enter a valid email address."', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  checkInvalid(t, await client.request('create', { data: { ...valid('x'), username: '' } }), 'create',
    { username: ['This field may not be blank.'] }, 'blank username on create')
  for (const email of ['not-an-email', 'a@b', '@example.com', 'a b@example.com', 'a@example.']) {
    checkInvalid(t, await client.request('create', { data: { ...valid('x'), email } }), 'create',
      { email: ['Enter a valid email address.'] }, `email ${JSON.stringify(email)} on create`)
  }
  t.strictSame(await rows(running), [], 'nothing written')

  // The email may be empty or absent (docs/example.md: "may be empty").
  const empty = await create(t, client, { ...valid('empty'), email: '' })
  t.equal(empty.email, '', 'empty email accepted')
  const absent = await create(t, client, { username: 'absent', password1: 'p', password2: 'p' })
  t.equal(absent.email, '', 'absent email stored as empty')
  // Strings are trimmed first (DRF's trim_whitespace), so white space alone is an empty email.
  const spaces = await create(t, client, { ...valid('spaces'), email: '  ' })
  t.equal(spaces.email, '', 'white-space email trimmed to empty')

  checkInvalid(t, await client.request('update', { pk: empty.id, data: { username: '', email: '' } }), 'update',
    { username: ['This field may not be blank.'] }, 'blank username on update')
  checkInvalid(t, await client.request('patch', { pk: empty.id, data: { username: '' } }), 'patch',
    { username: ['This field may not be blank.'] }, 'blank username on patch')
  checkInvalid(t, await client.request('patch', { pk: empty.id, data: { email: 'bad' } }), 'patch',
    { email: ['Enter a valid email address.'] }, 'bad email on patch')
  t.equal((await rows(running))[0].username, 'empty', 'blank username not written')

  // DRF's max_length wording (username is 150 at most).
  checkInvalid(t, await client.request('patch', { pk: empty.id, data: { username: 'u'.repeat(151) } }), 'patch',
    { username: ['Ensure this field has no more than 150 characters.'] }, '151-character username')
  const long = await client.request('patch', { pk: empty.id, data: { username: 'u'.repeat(150) } })
  t.equal(long.response_status, 200, '150-character username accepted')
})

t.test('wrong types → DRF wording, keyed by the field', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  // Values DRF's CharField refuses too (it would coerce a number, so numbers are not used here).
  for (const value of [true, [], ['alice'], { a: 1 }]) {
    checkInvalid(t, await client.request('create', { data: { ...valid('x'), username: value } }), 'create',
      { username: ['Not a valid string.'] }, `username ${JSON.stringify(value)}`)
  }
  checkInvalid(t, await client.request('create', { data: { ...valid('x'), username: null } }), 'create',
    { username: ['This field may not be null.'] }, 'username null')
  // EmailField's own "invalid" message replaces CharField's, as in DRF.
  checkInvalid(t, await client.request('create', { data: { ...valid('x'), email: true } }), 'create',
    { email: ['Enter a valid email address.'] }, 'email true')
  // Several wrongly typed fields at once.
  checkInvalid(t, await client.request('create', { data: { username: false, password1: {}, password2: null } }), 'create', {
    username: ['Not a valid string.'],
    password1: ['Not a valid string.'],
    password2: ['This field may not be null.']
  }, 'three wrong types')
  t.strictSame(await rows(running), [], 'nothing written')

  const alice = await create(t, client, valid('alice'))
  checkInvalid(t, await client.request('patch', { pk: alice.id, data: { username: ['x'] } }), 'patch',
    { username: ['Not a valid string.'] }, 'patch username list')
  // DRF checks null before the field's own "invalid" message, so EmailField says "may not be null".
  const nullEmail = await client.request('update', { pk: alice.id, data: { username: 'ok', email: null } })
  t.equal(nullEmail.response_status, 400, 'update email null: 400')
  t.strictSame(Object.keys(nullEmail.errors[0] ?? {}), ['email'], 'update email null: keyed email')
  t.strictSame(nullEmail.errors, [{ email: ['This field may not be null.'] }], 'update email null: DRF wording')
  t.strictSame((await rows(running)).map((r) => r.username), ['alice'], 'alice unchanged')
})

t.test('data not an object → non_field_errors "Invalid data. Expected a dictionary, but got …"', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const alice = await create(t, client, valid('alice'))
  const before = await rows(running)
  const cases: Array<[unknown, string]> = [['s', 'str'], ['', 'str'], [[1], 'list'], [[], 'list'], [5, 'int'], [0, 'int'], [1.5, 'float'], [true, 'bool'], [false, 'bool'], [null, 'NoneType']]
  for (const [data, pyType] of cases) {
    const message = `Invalid data. Expected a dictionary, but got ${pyType}.`
    for (const [action, args] of [['create', {}], ['update', { pk: alice.id }], ['patch', { pk: alice.id }]] as const) {
      checkInvalid(t, await client.request(action, { ...args, data }), action,
        { non_field_errors: [message] }, `${action} data ${JSON.stringify(data)}`)
    }
  }
  t.strictSame(await rows(running), before, 'nothing written or changed')
})

t.test('a taken username is reported together with the other failing fields', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  await create(t, client, valid('alice'))
  // "One object with every failing field": the unique check must not wait for the other fields to pass.
  const reply = await client.request('create', { data: { username: 'alice', password1: 'a', password2: 'b' } })
  t.equal(reply.response_status, 400, '400')
  t.strictSame(reply.errors, [{
    username: ['user with this username already exists.'],
    password2: ['Passwords do not match.']
  }], 'both failing fields at once')
  t.equal((await rows(running)).length, 1, 'nothing written')
})

t.test('a whitespace-only username is blank, as DRF CharField (trim_whitespace) says', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const reply = await client.request('create', { data: { ...valid('x'), username: '   ' } })
  t.equal(reply.response_status, 400, '400')
  t.strictSame(reply.errors, [{ username: ['This field may not be blank.'] }], 'blank')
  t.equal((await rows(running)).length, 0, 'nothing written')
})

t.test('duplicate username → 400 "user with this username already exists.", on create, update and patch', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const alice = await create(t, client, valid('alice'))
  const bob = await create(t, client, valid('bob'))
  const before = await rows(running)
  const taken = { username: ['user with this username already exists.'] }

  checkInvalid(t, await client.request('create', { data: valid('alice', 'other') }), 'create', taken, 'create with a taken name')
  checkInvalid(t, await client.request('update', { pk: bob.id, data: { username: 'alice', email: 'b@example.com' } }), 'update', taken, 'update to a taken name')
  checkInvalid(t, await client.request('patch', { pk: bob.id, data: { username: 'alice' } }), 'patch', taken, 'patch to a taken name')
  // The whole change is rolled back: bob's email did not change with the refused update either.
  t.strictSame(await rows(running), before, 'no row written or changed')

  // The socket and the transaction machinery are fine afterwards.
  const renamed = await client.request('patch', { pk: bob.id, data: { username: 'robert' } })
  t.equal(renamed.response_status, 200, 'a valid patch after the failures works')
  t.strictSame(renamed.data, { ...bob, username: 'robert' }, 'bob renamed')
  // A user keeping its own name is not a duplicate.
  const same = await client.request('update', { pk: alice.id, data: { username: 'alice', email: 'new@example.com' } })
  t.equal(same.response_status, 200, 'update keeping the same username: 200')
  t.strictSame(same.data, { id: alice.id, username: 'alice', email: 'new@example.com' }, 'alice updated')
})

/**
 * Unique properties stored under another column name: `code` in column `badge_code`
 * (fieldName), `displayName` in `display_name` (the naming strategy). The database names
 * the column; the client must see the property.
 */
const Badge = defineEntity({
  name: 'Badge',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    code: p.string().unique().fieldName('badge_code'),
    displayName: p.string().unique(),
    level: p.integer()
  })
})
const BadgeInput = Type.Object({ code: Type.String(), displayName: Type.String(), level: Type.Integer() })
const BadgePublic = Type.Object({ id: Type.Integer(), code: Type.String(), displayName: Type.String(), level: Type.Integer() })

t.test('a unique property stored under another column name: the 400 is keyed by the property, on every path', async (t) => {
  const { base } = await startApp(t, [Badge], (app) => {
    app.wsRest.route('/badges/', {
      entity: Badge,
      schema: { create: BadgeInput, update: BadgeInput, response: BadgePublic },
      actions: [mixins.create(), mixins.update(), mixins.patch()]
    })
  })
  const client = await openClient(t, `${base}/badges/`)
  const gold = await client.request('create', { data: { code: 'G', displayName: 'Gold', level: 3 } })
  t.strictSame([gold.response_status, gold.data], [201, { id: 1, code: 'G', displayName: 'Gold', level: 3 }], 'created')
  const silver = await client.request('create', { data: { code: 'S', displayName: 'Silver', level: 2 } })
  t.equal(silver.response_status, 201)

  const code = { code: ['badge with this code already exists.'] }
  const displayName = { displayName: ['badge with this display name already exists.'] }
  // A valid request reaches the database, whose unique violation names the column.
  checkInvalid(t, await client.request('create', { data: { code: 'G', displayName: 'Other', level: 1 } }), 'create', code, 'create: code (column badge_code)')
  checkInvalid(t, await client.request('create', { data: { code: 'X', displayName: 'Gold', level: 1 } }), 'create', displayName, 'create: displayName (column display_name)')
  checkInvalid(t, await client.request('update', { pk: 2, data: { code: 'G', displayName: 'Silver', level: 2 } }), 'update', code, 'update: code')
  checkInvalid(t, await client.request('patch', { pk: 2, data: { displayName: 'Gold' } }), 'patch', displayName, 'patch: displayName')
  // A request failing on another field is checked before the database: the same keys.
  checkInvalid(t, await client.request('create', { data: { code: 'G', displayName: 'Gold', level: 'high' } }), 'create',
    { ...code, ...displayName, level: ['A valid integer is required.'] }, 'create failing on level too: every field at once')
  const kept = await client.request('patch', { pk: 2, data: { displayName: 'Silver', level: 5 } })
  t.strictSame([kept.response_status, kept.data], [200, { id: 2, code: 'S', displayName: 'Silver', level: 5 }], 'keeping its own values is no duplicate')
})

t.test('passwords are stored hashed and never returned', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)
  const plain = 'correct horse battery staple'

  const created = await client.request('create', { data: valid('alice', plain) })
  t.equal(created.response_status, 201, 'created')
  checkUser(t, created.data, 'create reply')
  const id = created.data.id as number

  const stored = await running.orm.em.fork().findOne(User, { id })
  t.ok(stored, 'row stored')
  t.not(stored?.password, plain, 'not stored in plain text')
  t.notOk(stored?.password.includes(plain), 'the plain text is not inside the stored value')
  t.match(stored?.password, /^scrypt\$/, 'stored as an scrypt hash')
  t.equal(await verifyPassword(plain, stored?.password ?? ''), true, 'the hash is of the password sent')
  t.equal(await verifyPassword('wrong', stored?.password ?? ''), false, 'and not of another one')

  // Two users with the same password get different hashes (salted).
  await create(t, client, valid('bob', plain))
  const [a, b] = await rows(running)
  t.not(a.password, b.password, 'salted: same password, different hashes')

  // No reply of any action carries a password field.
  checkUser(t, (await client.request('retrieve', { pk: id })).data, 'retrieve reply')
  const list = await client.request('list')
  t.equal(list.data.length, 2, 'list has both users')
  for (const user of list.data) checkUser(t, user, `list item ${String(user.username)}`)
  checkUser(t, (await client.request('update', { pk: id, data: { username: 'alice', email: '' } })).data, 'update reply')
  checkUser(t, (await client.request('patch', { pk: id, data: { email: 'a@example.com' } })).data, 'patch reply')
  // Nor does a failed one.
  const failed = await client.request('create', { data: { username: 'carol', password1: plain, password2: 'other' } })
  t.notOk(JSON.stringify(failed).includes(plain), 'a failed create does not echo the password')
})

t.test('unknown fields in data are ignored: not written, no error', async (t) => {
  const running = await startExample(t)
  const client = await open(t, running.base)

  // id, password, is_staff: nothing a client may set beyond the schema reaches the row.
  const created = await client.request('create', {
    data: { ...valid('alice', 'pw'), id: 999, password: 'plain-text', is_staff: true, extra: { nested: 1 } }
  })
  t.equal(created.response_status, 201, 'create with unknown fields: 201')
  t.strictSame(created.data, { id: 1, username: 'alice', email: 'alice@example.com' }, 'created with its own id, nothing extra')
  let [row] = await rows(running)
  t.equal(row.id, 1, 'id 999 not written')
  t.not(row.password, 'plain-text', '`password` from data not written')
  t.equal(await verifyPassword('pw', row.password), true, 'the stored hash is of password1')
  const hash = row.password

  const updated = await client.request('update', {
    pk: 1, data: { username: 'alice2', email: '', id: 50, password: 'plain-text', password1: 'x', password2: 'x', is_staff: true }
  })
  t.equal(updated.response_status, 200, 'update with unknown fields: 200')
  t.strictSame(updated.data, { id: 1, username: 'alice2', email: '' }, 'update applied the declared fields only')

  const patched = await client.request('patch', { pk: 1, data: { id: 60, password: 'plain-text', is_staff: true } })
  t.equal(patched.response_status, 200, 'patch with only unknown fields: 200')
  t.strictSame(patched.data, { id: 1, username: 'alice2', email: '' }, 'patch changed nothing')

  ;[row] = await rows(running)
  t.strictSame({ id: row.id, username: row.username, email: row.email }, { id: 1, username: 'alice2', email: '' }, 'row has the declared changes only')
  t.equal(row.password, hash, 'password untouched by update and patch')
  t.equal((await rows(running)).length, 1, 'no row created by an id in data')
  t.equal(await running.orm.em.fork().count(User, { id: { $in: [50, 60, 999] } }), 0, 'no row at the ids sent')
})

t.test('a NUL character in any string → 400 "Null characters are not allowed." (never a 500 from the database)', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/`)
  const created = await client.request('create', { data: { username: 'a\u0000b', email: '', password1: 'pw\u0000', password2: 'pw\u0000' } })
  t.strictSame([created.response_status, created.errors], [400, [{ username: ['Null characters are not allowed.'], password1: ['Null characters are not allowed.'], password2: ['Null characters are not allowed.'] }]])
  const ok = await client.request('create', { data: { username: 'fine', password1: 'pw', password2: 'pw' } })
  const patched = await client.request('patch', { pk: ok.data.id, data: { email: 'x\u0000@y.z' } })
  t.strictSame([patched.response_status, patched.errors], [400, [{ email: ['Null characters are not allowed.'] }]])
  const search = await client.request('list', { search: '\u0000' })
  t.strictSame([search.response_status, search.errors], [400, [{ search: ['Null characters are not allowed.'] }]])
  const filter = await client.request('list', { filter: { username: { $contains: 'a\u0000' }, email: '\u0000' } })
  t.strictSame([filter.response_status, filter.errors], [400, [{ filter: [
    'Invalid value for "username": Null characters are not allowed.',
    'Invalid value for "email": Null characters are not allowed.'
  ] }]])
  const lookup = await client.request('retrieve', { pk: '1\u0000' })
  t.strictSame([lookup.response_status, lookup.errors], [404, ['Not found']])
})
