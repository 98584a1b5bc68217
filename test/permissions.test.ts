/**
 * Permissions, connect-time and action-time: Fastify hooks on the upgrade request,
 * permission objects (`canConnect` / `hasPermission`, allowAny, isAuthenticated,
 * and/or/not, per-action overrides), the encapsulated `preAction` hook chain, and the
 * example's `/ws/secure/` route — all over real sockets against in-memory SQLite.
 */
import type { MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import t from 'tap'
import { User } from '../example/user.js'
import {
  action,
  mixins,
  permissions,
  PermissionDenied,
  ValidationError,
  type ActionContext,
  type Permission,
  type PreActionHook
} from '../index.js'
import { Item, ItemCreate, ItemPublic, renameItem, seedItems } from './helpers/item.js'
import { connect, openClient as open, upgradeStatus, type WireReply } from './helpers/client.js'
import { startApp, startExample } from './helpers/server.js'


const itemModel = { entity: Item, schema: { create: ItemCreate, response: ItemPublic } }

const DENIED = ['You do not have permission to perform this action.']

/** A permission that refuses every action (and lets every socket connect). */
const denyActions: Permission = { hasPermission: () => false }

/** A permission that refuses every connection. */
const denyConnect: Permission = { canConnect: () => false }

/** A trivial custom action: answers its own name, so a 200 proves the action really ran. */
function ping (name = 'ping') {
  return action(name, {}, async (ctx) => ({ data: { ran: ctx.action } }))
}

/** `request.user` is declared by the example app's module augmentation; tests set it untyped to stay independent of it. */
function setUser (request: FastifyRequest, user: unknown): void {
  (request as unknown as { user: unknown }).user = user
}

function userOf (request: FastifyRequest): unknown {
  return (request as unknown as { user: unknown }).user
}

function queryOf (request: FastifyRequest): Record<string, string | undefined> {
  return request.query as Record<string, string | undefined>
}

async function countItems (orm: MikroORM): Promise<number> {
  return await orm.em.fork().count(Item, {})
}

async function seedItem (orm: MikroORM, name = 'seed'): Promise<number> {
  const em = orm.em.fork()
  const item = em.create(Item, { name })
  await em.flush()
  return item.id
}

function expectDenied (t: { strictSame: (...args: any[]) => unknown }, reply: WireReply, actionName: string, msg?: string): void {
  t.strictSame(
    reply,
    { errors: DENIED, data: null, action: actionName, response_status: 403, request_id: reply.request_id },
    msg ?? `${actionName} → 403 permission denied`
  )
}

// ---------------------------------------------------------------------------
// Connect time
// ---------------------------------------------------------------------------

t.test('a route onRequest hook replying 401 refuses the upgrade with 401; the socket never opens', async (t) => {
  let canConnectCalls = 0
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/guarded/', {
      actions: [ping()],
      // canConnect runs after the app's hooks; a hook that already replied must stop the chain before it.
      permissions: [{ canConnect: () => { canConnectCalls++; return true } }],
      onRequest: async (request, reply) => {
        if (queryOf(request).key !== 'open-sesame') return await reply.code(401).send({ message: 'who are you?' })
      }
    })
  })
  t.equal(await upgradeStatus(`${base}/ws/guarded/`), 401, 'no key → HTTP 401 on the upgrade')
  await t.rejects(connect(`${base}/ws/guarded/`), /401/, 'the client never gets an open socket')
  t.equal(canConnectCalls, 0, 'the plugin\'s connect checks never ran after the hook replied')

  // Control: the same route with the key opens and works, so the 401 above was the hook's doing.
  t.equal(await upgradeStatus(`${base}/ws/guarded/?key=open-sesame`), 101)
  const client = await open(t, `${base}/ws/guarded/?key=open-sesame`)
  t.equal((await client.request('ping')).response_status, 200)
})

t.test('a hook that throws an error with a statusCode (as jwtVerify does) refuses the upgrade with that status', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/jwt/', {
      actions: [ping()],
      onRequest: async (request) => {
        if (request.headers.authorization !== 'Bearer good') {
          throw Object.assign(new Error('No Authorization was found in request.headers'), { statusCode: 401 })
        }
      }
    })
  })
  t.equal(await upgradeStatus(`${base}/ws/jwt/`), 401)
  const client = await open(t, `${base}/ws/jwt/`, { headers: { authorization: 'Bearer good' } })
  t.equal((await client.request('ping')).response_status, 200, 'control: a good token connects')
})

t.test('a route preValidation hook replying 403 refuses the upgrade with 403', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/pv/', {
      actions: [ping()],
      preValidation: [async (request, reply) => {
        if (queryOf(request).role !== 'staff') return await reply.code(403).send({ message: 'staff only' })
      }]
    })
  })
  t.equal(await upgradeStatus(`${base}/ws/pv/`), 403)
  t.equal(await upgradeStatus(`${base}/ws/pv/?role=guest`), 403)
  t.equal(await upgradeStatus(`${base}/ws/pv/?role=staff`), 101, 'control: the hook lets staff through')
})

t.test('an app-level onRequest hook in an encapsulating plugin guards that plugin\'s routes (and its children) only', async (t) => {
  const { base } = await startApp(t, [Item], async (app) => {
    app.wsRest.route('/ws/outer/', { actions: [ping()] })
    await app.register(async (guarded) => {
      guarded.addHook('onRequest', async (request, reply) => {
        if (request.headers['x-api-key'] !== 'k1') return await reply.code(403).send({ message: 'bad key' })
      })
      guarded.wsRest.route('/ws/guarded/', { actions: [ping()] })
      await guarded.register(async (inner) => {
        inner.wsRest.route('/ws/guarded/inner/', { actions: [ping()] })
      })
    })
    await app.register(async (sibling) => {
      sibling.wsRest.route('/ws/sibling/', { actions: [ping()] })
    })
  })
  t.equal(await upgradeStatus(`${base}/ws/guarded/`), 403, 'route of the plugin with the hook')
  t.equal(await upgradeStatus(`${base}/ws/guarded/inner/`), 403, 'route of a plugin registered inside it')
  t.equal(await upgradeStatus(`${base}/ws/outer/`), 101, 'the parent\'s route is not guarded by a child\'s hook')
  t.equal(await upgradeStatus(`${base}/ws/sibling/`), 101, 'a sibling plugin\'s route is not guarded either')

  // Control: with the key the guarded route connects, and actions run.
  const client = await open(t, `${base}/ws/guarded/inner/`, { headers: { 'x-api-key': 'k1' } })
  t.strictSame((await client.request('ping')).data, { ran: 'ping' })
})

t.test('canConnect returning false refuses the upgrade with HTTP 403; unknown path → 404', async (t) => {
  const seen: unknown[] = []
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/closed/', { actions: [ping()], permissions: [denyConnect] })
    app.wsRest.route('/ws/by-query/', {
      actions: [ping()],
      permissions: [{
        // Async on purpose: a promise of false must refuse just like false.
        canConnect: async (request) => { seen.push(queryOf(request).door); return queryOf(request).door === 'open' }
      }]
    })
    app.wsRest.route('/ws/any/', { actions: [ping()], permissions: [permissions.allowAny] })
  })
  t.equal(await upgradeStatus(`${base}/ws/closed/`), 403)
  await t.rejects(connect(`${base}/ws/closed/`), /403/, 'the socket never opens')
  t.equal(await upgradeStatus(`${base}/ws/by-query/?door=shut`), 403)
  t.equal(await upgradeStatus(`${base}/ws/by-query/?door=open`), 101)
  t.strictSame(seen, ['shut', 'open'], 'canConnect saw the upgrade request\'s query')
  t.equal(await upgradeStatus(`${base}/ws/any/`), 101, 'allowAny connects')
  t.equal(await upgradeStatus(`${base}/ws/nowhere/`), 404, 'unknown path → 404')
  t.equal(await upgradeStatus(`${base}/ws/any`), 404, 'paths are matched exactly (no trailing slash is another path)')
})

// ---------------------------------------------------------------------------
// Action time: hasPermission
// ---------------------------------------------------------------------------

t.test('hasPermission refusing → 403 with DRF\'s text, checked before any lookup or validation', async (t) => {
  const calls: Array<{ action: string, args: Record<string, unknown> }> = []
  // One route, one permission: ?allow=yes decides, so refused and allowed runs hit the same model.
  const gate: Permission = {
    hasPermission: (ctx, actionName, args) => {
      calls.push({ action: actionName, args })
      return queryOf(ctx.request).allow === 'yes'
    }
  }
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/items/', {
      ...itemModel,
      permissions: [gate],
      actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.delete()]
    })
  })
  const existing = await seedItem(orm, 'kept')
  const refused = await open(t, `${base}/ws/items/`)
  const allowed = await open(t, `${base}/ws/items/?allow=yes`)

  // A retrieve of a pk that does not exist: refused → 403 (not 404), allowed → 404.
  expectDenied(t, await refused.request('retrieve', { pk: 999 }), 'retrieve', 'refused retrieve of a missing pk is 403, not 404')
  t.strictSame(calls.at(-1), { action: 'retrieve', args: { pk: 999 } }, 'hasPermission got the action name and the args')
  t.equal((await allowed.request('retrieve', { pk: 999 })).response_status, 404, 'control: allowed → 404')

  // A retrieve without pk: refused → 403 (not the 400 keyed pk).
  expectDenied(t, await refused.request('retrieve'), 'retrieve')
  t.equal((await allowed.request('retrieve')).response_status, 400, 'control: allowed → 400 keyed pk')

  // A create with invalid data: refused → 403 (not 400), allowed → 400.
  expectDenied(t, await refused.request('create', { data: { name: '' } }), 'create', 'refused create with invalid data is 403, not 400')
  expectDenied(t, await refused.request('create', { data: 'not an object' }), 'create')
  t.equal((await allowed.request('create', { data: { name: '' } })).response_status, 400, 'control: allowed → 400')

  // A refused create with valid data writes nothing; a refused delete deletes nothing.
  expectDenied(t, await refused.request('create', { data: { name: 'sneaky' } }), 'create')
  expectDenied(t, await refused.request('delete', { pk: existing }), 'delete')
  t.equal(await countItems(orm), 1, 'only the seeded row exists')
  expectDenied(t, await refused.request('list'), 'list')

  // The socket stays open after refusals, and the allowed one really does the work.
  t.equal((await allowed.request('delete', { pk: existing })).response_status, 204)
  t.equal(await countItems(orm), 0)
  expectDenied(t, await refused.request('list'), 'list', 'a refused socket keeps answering')
})

t.test('a permission that throws refuses (500), never allows', async (t) => {
  let handlerRuns = 0
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/broken/', {
      permissions: [{ hasPermission: async () => { throw new Error('auth service down: secret-host:5432') } }],
      actions: [action('act', {}, async () => { handlerRuns++; return { data: 'ran' } })]
    })
  })
  const client = await open(t, `${base}/ws/broken/`)
  const reply = await client.request('act')
  t.strictSame([reply.response_status, reply.errors, reply.data], [500, ['Internal server error'], null])
  t.notMatch(JSON.stringify(reply), /secret-host/, 'the cause is not leaked')
  t.equal(handlerRuns, 0, 'the handler never ran')
})

t.test('permissions.allowAny allows connecting and every action', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/items/', {
      ...itemModel,
      permissions: [permissions.allowAny],
      actions: [mixins.create(), mixins.list(), mixins.retrieve(), mixins.delete()]
    })
  })
  const client = await open(t, `${base}/ws/items/`)
  const created = await client.request('create', { data: { name: 'a' } })
  t.equal(created.response_status, 201)
  t.equal((await client.request('retrieve', { pk: created.data.id })).response_status, 200)
  t.strictSame((await client.request('list')).data, [{ id: created.data.id, name: 'a' }])
  t.equal((await client.request('delete', { pk: created.data.id })).response_status, 204)
  t.equal(await countItems(orm), 0)
})

t.test('permissions.isAuthenticated: request.user set by an onRequest hook decides, at connect and per action', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.decorateRequest('user', null)
    // The app's own authentication: ?user=NAME → request.user.
    app.addHook('onRequest', async (request) => {
      const name = queryOf(request).user
      if (name !== undefined) setUser(request, { name })
    })
    app.wsRest.route('/ws/members/', {
      ...itemModel,
      permissions: [permissions.isAuthenticated],
      actions: [mixins.list()]
    })
    // Anyone may connect and list; only an authenticated user may delete.
    app.wsRest.route('/ws/public/', {
      ...itemModel,
      permissions: [permissions.allowAny],
      actions: [mixins.list(), mixins.delete({ permissions: [permissions.isAuthenticated] })]
    })
  })
  t.equal(await upgradeStatus(`${base}/ws/members/`), 403, 'anonymous → refused at the upgrade')
  t.equal(await upgradeStatus(`${base}/ws/members/?user=alice`), 101, 'authenticated → connects')
  const member = await open(t, `${base}/ws/members/?user=alice`)
  t.equal((await member.request('list')).response_status, 200)

  const id = await seedItem(orm)
  const anonymous = await open(t, `${base}/ws/public/`)
  t.equal((await anonymous.request('list')).response_status, 200, 'anonymous may list')
  expectDenied(t, await anonymous.request('delete', { pk: id }), 'delete', 'anonymous may not delete')
  t.equal(await countItems(orm), 1, 'the refused delete removed nothing')
  const alice = await open(t, `${base}/ws/public/?user=alice`)
  t.equal((await alice.request('delete', { pk: id })).response_status, 204, 'authenticated may delete')
  t.equal(await countItems(orm), 0)
})

t.test('and / or / not compose hasPermission', async (t) => {
  const yes: Permission = { hasPermission: async () => true }
  const no: Permission = { hasPermission: async () => false }
  const cases: Array<[string, Permission, number]> = [
    ['and_yes', permissions.and(yes, permissions.allowAny), 200],
    ['and_no', permissions.and(yes, no), 403],
    ['and_no_first', permissions.and(no, yes), 403],
    ['or_yes', permissions.or(no, yes), 200],
    ['or_no', permissions.or(no, no), 403],
    ['not_yes', permissions.not(no), 200],
    ['not_no', permissions.not(yes), 403],
    ['nested', permissions.or(permissions.and(yes, no), permissions.not(no)), 200],
    ['nested_no', permissions.and(permissions.or(no, yes), permissions.not(yes)), 403]
  ]
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/logic/', {
      actions: cases.map(([name, perm]) => action(name, { permissions: [perm] }, async () => ({ data: name })))
    })
  })
  const client = await open(t, `${base}/ws/logic/`)
  for (const [name, , status] of cases) {
    const reply = await client.request(name)
    t.equal(reply.response_status, status, `${name} → ${status}`)
    if (status === 200) t.equal(reply.data, name, `${name}: the handler ran`)
    else expectDenied(t, reply, name)
  }
})

t.test('and / or / not compose canConnect', async (t) => {
  const openDoor: Permission = { canConnect: () => true }
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/and/', { actions: [ping()], permissions: [permissions.and(openDoor, denyConnect)] })
    app.wsRest.route('/ws/or/', { actions: [ping()], permissions: [permissions.or(denyConnect, openDoor)] })
    app.wsRest.route('/ws/not-open/', { actions: [ping()], permissions: [permissions.not(openDoor)] })
    app.wsRest.route('/ws/not-closed/', { actions: [ping()], permissions: [permissions.not(denyConnect)] })
  })
  t.equal(await upgradeStatus(`${base}/ws/and/`), 403)
  t.equal(await upgradeStatus(`${base}/ws/or/`), 101)
  t.equal(await upgradeStatus(`${base}/ws/not-open/`), 403)
  t.equal(await upgradeStatus(`${base}/ws/not-closed/`), 101)
})

t.test('per-action permissions on a mixin or action() replace the route\'s', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    // The route refuses everything; single actions opt back in.
    app.wsRest.route('/ws/locked/', {
      ...itemModel,
      permissions: [denyActions],
      actions: [
        mixins.list({ permissions: [permissions.allowAny] }),
        mixins.retrieve(),
        action('open', { permissions: [permissions.allowAny] }, async () => ({ data: 'opened' })),
        ping('closed')
      ]
    })
    // The route allows everything; single actions opt out.
    app.wsRest.route('/ws/unlocked/', {
      ...itemModel,
      permissions: [permissions.allowAny],
      actions: [
        mixins.list(),
        mixins.delete({ permissions: [denyActions] }),
        action('secret', { permissions: [denyActions] }, async () => ({ data: 'leaked' }))
      ]
    })
  })
  const id = await seedItem(orm)
  const locked = await open(t, `${base}/ws/locked/`)
  t.equal((await locked.request('list')).response_status, 200, 'mixin override allows')
  expectDenied(t, await locked.request('retrieve', { pk: id }), 'retrieve', 'a mixin without override keeps the route\'s refusal')
  t.strictSame((await locked.request('open')).data, 'opened', 'action() override allows')
  expectDenied(t, await locked.request('closed'), 'closed')

  const unlocked = await open(t, `${base}/ws/unlocked/`)
  t.equal((await unlocked.request('list')).response_status, 200)
  expectDenied(t, await unlocked.request('delete', { pk: id }), 'delete', 'mixin override refuses')
  expectDenied(t, await unlocked.request('secret'), 'secret', 'action() override refuses')
  t.equal(await countItems(orm), 1)
})

// ---------------------------------------------------------------------------
// preAction hooks
// ---------------------------------------------------------------------------

const denyHook: PreActionHook = async () => { throw new PermissionDenied() }

t.test('a preAction hook added in a plugin applies to that plugin and its children, not to siblings or the parent', async (t) => {
  const { base } = await startApp(t, [Item], async (app) => {
    app.wsRest.route('/ws/parent/', { actions: [ping()] })
    await app.register(async (a) => {
      a.wsRest.addHook('preAction', denyHook)
      a.wsRest.route('/ws/a/', { actions: [ping()] })
      await a.register(async (child) => {
        child.wsRest.route('/ws/a/child/', { actions: [ping()] })
      })
    })
    await app.register(async (b) => {
      b.wsRest.route('/ws/b/', { actions: [ping()] })
    })
  })
  const expectations: Array<[string, number]> = [
    ['/ws/a/', 403], ['/ws/a/child/', 403], ['/ws/b/', 200], ['/ws/parent/', 200]
  ]
  for (const [path, status] of expectations) {
    const client = await open(t, `${base}${path}`)
    const reply = await client.request('ping')
    t.equal(reply.response_status, status, `${path} → ${status}`)
    if (status === 403) expectDenied(t, reply, 'ping')
  }
})

t.test('a preAction hook added on the root applies everywhere; outer hooks run first', async (t) => {
  const calls: string[] = []
  const record = (tag: string): PreActionHook => async (ctx) => { calls.push(`${tag}:${ctx.action}`) }
  const { base } = await startApp(t, [Item], async (app) => {
    app.wsRest.addHook('preAction', record('root'))
    // Root hook that denies on request: proves a root hook can refuse inside a nested plugin.
    app.wsRest.addHook('preAction', async (_ctx, args) => { if (args.deny === true) throw new PermissionDenied() })
    app.wsRest.route('/ws/root/', { actions: [ping()] })
    await app.register(async (a) => {
      a.wsRest.addHook('preAction', record('a'))
      await a.register(async (child) => {
        child.wsRest.route('/ws/a/child/', { actions: [ping()] })
      })
    })
    await app.register(async (b) => {
      b.wsRest.route('/ws/b/', { actions: [ping('pong')] })
    })
  })
  const root = await open(t, `${base}/ws/root/`)
  t.equal((await root.request('ping')).response_status, 200)
  t.strictSame(calls.splice(0), ['root:ping'])

  const nested = await open(t, `${base}/ws/a/child/`)
  t.equal((await nested.request('ping')).response_status, 200)
  t.strictSame(calls.splice(0), ['root:ping', 'a:ping'], 'root hook first, then the plugin\'s')
  expectDenied(t, await nested.request('ping', { deny: true }), 'ping', 'a root hook can refuse in a nested plugin')

  const sibling = await open(t, `${base}/ws/b/`)
  calls.length = 0
  t.equal((await sibling.request('pong')).response_status, 200)
  t.strictSame(calls, ['root:pong'], 'a sibling gets the root hook, not plugin a\'s')
  expectDenied(t, await sibling.request('pong', { deny: true }), 'pong')
})

t.test('a root preAction hook added after a child plugin has loaded still applies to its routes, like Fastify\'s hooks', async (t) => {
  const calls: string[] = []
  const { base } = await startApp(t, [Item], async (app) => {
    await app.register(async (child) => {
      child.get('/http/child', async () => 'ok')
      child.wsRest.route('/ws/child/', { actions: [ping()] })
    })
    // Both hooks are added after the child plugin finished loading (awaited above).
    app.addHook('onRequest', async (request) => { calls.push(`http ${request.url}`) })
    app.wsRest.addHook('preAction', async (ctx) => { calls.push(`ws ${ctx.request.url}`) })
  })
  const client = await open(t, `${base}/ws/child/`)
  t.equal((await client.request('ping')).response_status, 200)
  t.strictSame(calls, ['http /ws/child/', 'ws /ws/child/'], 'Fastify applied its onRequest hook, and the preAction hook followed the same rule')
})

t.test('a preAction hook added after the app is listening is refused, as Fastify\'s addHook is', async (t) => {
  const { app, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/used/', { actions: [ping()] })
    app.wsRest.route('/ws/fresh/', { actions: [ping()] })
  })
  const used = await open(t, `${base}/ws/used/`)
  t.equal((await used.request('ping')).response_status, 200, 'a message before the late hook')

  // Fastify refuses app.addHook once listening (FST_ERR_INSTANCE_ALREADY_LISTENING); a late
  // preAction hook would otherwise reach only the routes that have not run a message yet.
  let err: { code?: string } | undefined
  try { app.wsRest.addHook('preAction', denyHook) } catch (e) { err = e as { code?: string } }
  t.ok(err !== undefined, 'addHook after listen throws')
  t.match(err?.code, /^FST_/, 'with a coded error')

  // Whatever the rule, two routes of one context must agree on the hooks they run.
  const fresh = await open(t, `${base}/ws/fresh/`)
  const usedStatus = (await used.request('ping')).response_status
  const freshStatus = (await fresh.request('ping')).response_status
  t.equal(freshStatus, usedStatus, `routes of one context run the same hooks (used ${usedStatus}, fresh ${freshStatus})`)
})

t.test('preAction hooks run after permissions and before validation; what they throw decides the reply', async (t) => {
  let hookCalls = 0
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.addHook('preAction', async (ctx, args) => {
      hookCalls++
      if (args.mode === 'deny') throw new PermissionDenied()
      if (args.mode === 'invalid') throw new ValidationError({ mode: ['Not today.'] })
      if (args.mode === 'crash') throw new Error('hook blew up with a secret')
    })
    app.wsRest.route('/ws/hooked/', {
      actions: [
        action('typed', { schema: Type.Object({ n: Type.Integer(), mode: Type.Optional(Type.String()) }) },
          async (_ctx, args) => ({ data: args.n })),
        action('forbidden', { permissions: [denyActions] }, async () => ({ data: 'ran' }))
      ]
    })
  })
  const client = await open(t, `${base}/ws/hooked/`)

  expectDenied(t, await client.request('forbidden', { mode: 'deny' }), 'forbidden')
  t.equal(hookCalls, 0, 'a refused permission stops before the hook')

  // Invalid args (n missing) but the hook denies first → 403, not 400.
  expectDenied(t, await client.request('typed', { mode: 'deny' }), 'typed', 'the hook refuses before validation')
  t.strictSame((await client.request('typed', { mode: 'invalid', n: 1 })).errors, [{ mode: ['Not today.'] }], 'ValidationError from a hook → 400 fields')
  const crashed = await client.request('typed', { mode: 'crash', n: 1 })
  t.strictSame([crashed.response_status, crashed.errors], [500, ['Internal server error']], 'a plain Error from a hook → 500')
  t.notMatch(JSON.stringify(crashed), /secret/, 'nothing of the error leaks')
  const fine = await client.request('typed', { n: 7 })
  t.strictSame([fine.response_status, fine.data], [200, 7], 'control: the hook passes, the handler runs')
  t.equal((await client.request('typed')).response_status, 400, 'control: a passing hook leaves validation to reject')
})

// ---------------------------------------------------------------------------
// The upgrade request, as handlers and permissions see it
// ---------------------------------------------------------------------------

t.test('handlers, permissions and hooks see the upgrade request: headers, query, request.user', async (t) => {
  const requests = new Set<FastifyRequest>()
  const seenByPermission: unknown[] = []
  const { base } = await startApp(t, [Item], (app: FastifyInstance) => {
    app.decorateRequest('user', null)
    app.addHook('onRequest', async (request: FastifyRequest, _reply: FastifyReply) => {
      if (request.headers.authorization === 'Bearer t-alice') setUser(request, { name: 'alice' })
    })
    app.wsRest.addHook('preAction', async (ctx) => { requests.add(ctx.request) })
    app.wsRest.route('/ws/whoami/', {
      permissions: [{
        canConnect: (request) => { requests.add(request); return true },
        hasPermission: (ctx: ActionContext) => {
          requests.add(ctx.request)
          seenByPermission.push({ team: ctx.request.headers['x-team'], room: queryOf(ctx.request).room, user: userOf(ctx.request) })
          return true
        }
      }],
      actions: [action('whoami', {}, async (ctx) => {
        requests.add(ctx.request)
        return { data: { team: ctx.request.headers['x-team'], room: queryOf(ctx.request).room, user: userOf(ctx.request), url: ctx.request.url } }
      })]
    })
  })
  const client = await open(t, `${base}/ws/whoami/?room=7`, { headers: { 'x-team': 'blue', authorization: 'Bearer t-alice' } })
  const first = await client.request('whoami')
  t.strictSame(first.data, { team: 'blue', room: '7', user: { name: 'alice' }, url: '/ws/whoami/?room=7' })
  t.strictSame(seenByPermission, [{ team: 'blue', room: '7', user: { name: 'alice' } }])
  await client.request('whoami')
  t.equal(requests.size, 1, 'canConnect, hasPermission, the hook and the handler all saw the one upgrade request, on every message')

  const anonymous = await open(t, `${base}/ws/whoami/`)
  // undefined fields vanish in JSON: no team header, no room, and the decorated default user.
  t.strictSame((await anonymous.request('whoami')).data, { user: null, url: '/ws/whoami/' },
    'another socket sees its own request (no user, no headers)')
})

// ---------------------------------------------------------------------------
// The example server's /ws/secure/
// ---------------------------------------------------------------------------

t.test('example /ws/secure/: token checked at the upgrade; reader may read, only admin may delete', async (t) => {
  const { base, orm } = await startExample(t)
  t.equal(await upgradeStatus(`${base}/ws/secure/`), 403, 'no token → 403')
  t.equal(await upgradeStatus(`${base}/ws/secure/?token=bad`), 403, 'bad token → 403')
  t.equal(await upgradeStatus(`${base}/ws/secure/?token=Admin`), 403, 'tokens are case-sensitive')

  const plain = await open(t, `${base}/ws/`)
  const created = await plain.request('create', { data: { username: 'victim', password1: 'pw', password2: 'pw' } })
  t.equal(created.response_status, 201)
  const pk = created.data.id as number

  const reader = await open(t, `${base}/ws/secure/?token=reader`)
  const listed = await reader.request('list')
  t.strictSame([listed.response_status, listed.data], [200, [{ id: pk, username: 'victim', email: '' }]])
  t.strictSame((await reader.request('retrieve', { pk })).data, { id: pk, username: 'victim', email: '' })
  expectDenied(t, await reader.request('delete', { pk }), 'delete', 'reader may not delete')
  expectDenied(t, await reader.request('delete', { pk: 424242 }), 'delete', 'refused before lookup: missing pk is 403 too')
  t.equal(await orm.em.fork().count(User, {}), 1, 'the row is still there')

  const admin = await open(t, `${base}/ws/secure/?token=admin`)
  const deleted = await admin.request('delete', { pk })
  t.strictSame([deleted.response_status, deleted.data, deleted.errors], [204, null, []])
  t.equal((await reader.request('retrieve', { pk })).response_status, 404, 'gone for everyone')
  t.equal((await admin.request('delete', { pk: 424242 })).response_status, 404, 'admin on a missing pk → 404')
})

t.test('an unknown action meets the route\'s permissions first, as DCRF: a refused client gets 403, an allowed one 405', async (t) => {
  const onlyAnn: Permission = { hasPermission: (ctx) => ctx.request.headers['x-user'] === 'ann' }
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, permissions: [onlyAnn], actions: [ping()] })
  })
  const bob = await open(t, `${base}/items/`, { headers: { 'x-user': 'bob' } })
  const refused = await bob.request('nope')
  t.strictSame([refused.response_status, refused.errors, refused.action], [403, DENIED, 'nope'], 'refused: 403, nothing about which actions exist')
  const ann = await open(t, `${base}/items/`, { headers: { 'x-user': 'ann' } })
  const unknown = await ann.request('nope')
  t.strictSame([unknown.response_status, unknown.errors], [405, ['Method "nope" not allowed.']], 'allowed: 405')
  t.strictSame((await ann.request('ping')).data, { ran: 'ping' }, 'in order, and the socket goes on')
})

// ------------------------------------------------------------------ object permissions (DRF's has_object_permission)

/** Everyone may read; only the "owner" — the user whose name the item carries — may change it. */
const ownerOnly: Permission = {
  hasObjectPermission: (ctx, action, object) =>
    permissions.SAFE_ACTIONS.includes(action) || object.name === ctx.request.headers['x-user']
}

t.test('hasObjectPermission: after the lookup, on alone and grouped writes and coalesced reads; a refusal is a 403 that writes nothing', async (t) => {
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      schema: { ...itemModel.schema, update: ItemCreate },
      permissions: [ownerOnly],
      actions: [mixins.retrieve(), mixins.patch(), mixins.delete()]
    })
  })
  const ids = await seedItems(orm, 'ann', 'bob')
  const ann = await open(t, `${base}/items/`, { headers: { 'x-user': 'ann' } })
  t.strictSame((await ann.request('retrieve', { pk: ids[1] })).data, { id: ids[1], name: 'bob' }, 'reading another\'s row: allowed')
  const refused = await ann.request('patch', { pk: ids[1], data: { name: 'mine now' } })
  t.strictSame([refused.response_status, refused.errors], [403, DENIED])
  t.strictSame([(await ann.request('delete', { pk: ids[1] })).response_status], [403])
  t.strictSame((await ann.request('patch', { pk: ids[0], data: { name: 'ann' } })).response_status, 200, 'her own row: allowed')

  // Many sockets at once (group commit): each request is answered by its own object check.
  const clients = await Promise.all(['ann', 'bob', 'ann', 'bob'].map(async (user) => await open(t, `${base}/items/`, { headers: { 'x-user': user } })))
  clients.forEach((client, i) => client.send({ action: 'patch', request_id: i, pk: ids[0], data: { name: 'ann' } }))
  const statuses = await Promise.all(clients.map(async (client) => (await client.next()).response_status))
  t.strictSame(statuses, [200, 403, 200, 403], 'the owner\'s writes pass, the others\' are refused, each alone')
  const names = (await orm.em.fork().find(Item, {}, { orderBy: { id: 'asc' } })).map((item) => item.name)
  t.strictSame(names, ['ann', 'bob'], 'nothing refused was written')
})

t.test('hasObjectPermission on events: a subscriber gets no event about a row it may not see', async (t) => {
  const noSecrets: Permission = { hasObjectPermission: (_ctx, _action, object) => !String(object.name).startsWith('secret') }
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, permissions: [noSecrets], actions: [mixins.subscribeList()] })
  })
  const [id] = await seedItems(orm, 'plain')
  const client = await open(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_list', request_id: 's' })
  await renameItem(orm, id, 'secret plans')
  await renameItem(orm, id, 'public again')
  t.strictSame((await client.next()).data, { id, name: 'public again' }, 'the secret change sent nothing; the next one arrives')
})

t.test('isAuthenticatedOrReadOnly: anyone may read, only a user may write; custom actions are safe only when named', async (t) => {
  const { base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      onRequest: async (request: FastifyRequest) => {
        const user = request.headers['x-user']
        ;(request as unknown as { user: unknown }).user = typeof user === 'string' ? { name: user } : null
      },
      permissions: [permissions.authenticatedOrReadOnly('search')],
      actions: [mixins.list(), mixins.create(), ping('search'), ping('export')]
    })
  })
  const anonymous = await open(t, `${base}/items/`)
  t.equal((await anonymous.request('list')).response_status, 200)
  t.equal((await anonymous.request('search')).response_status, 200, 'a custom action named safe')
  t.strictSame([(await anonymous.request('export')).response_status, (await anonymous.request('create', { data: { name: 'x' } })).response_status], [403, 403])
  const user = await open(t, `${base}/items/`, { headers: { 'x-user': 'ann' } })
  t.equal((await user.request('create', { data: { name: 'x' } })).response_status, 201)
})
