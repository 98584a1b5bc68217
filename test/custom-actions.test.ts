/**
 * Custom actions (`action(name, { schema }, handler)`): argument validation, results,
 * errors, the per-message EntityManager and transactions, routes without an entity,
 * detached actions and their cancellation — and the registration errors of the plugin
 * and its routes. Real sockets, in-memory SQLite.
 */
import type { EntityManager, MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import wsRest, {
  action,
  mixins,
  NotFound,
  PermissionDenied,
  ValidationError,
  type WsRestOptions
} from '../index.js'
import { Item, ItemPublic } from './helpers/item.js'
import { deferred, within, type Teardown } from './helpers/async.js'
import { openClient as open } from './helpers/client.js'
import { initOrm } from './helpers/database.js'
import { thrownBy } from './helpers/throws.js'
import { startApp } from './helpers/server.js'

/** An app with the plugin but no ORM at all, listening on an ephemeral port. */
async function startBare (
  t: Teardown,
  declare: (app: FastifyInstance) => void | Promise<void>,
  fastifyOptions: FastifyServerOptions = { logger: false },
  options: WsRestOptions = {}
): Promise<{ app: FastifyInstance, base: string }> {
  const app = Fastify(fastifyOptions)
  t.teardown(async () => await app.close())
  await app.register(wsRest, options)
  await declare(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, base: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

async function countItems (orm: MikroORM): Promise<number> {
  return await orm.em.fork().count(Item, {})
}

// ---------------------------------------------------------------------------
// Arguments and results
// ---------------------------------------------------------------------------

const GreetArgs = Type.Object({
  name: Type.String({ minLength: 1 }),
  count: Type.Integer({ minimum: 1 }),
  loud: Type.Optional(Type.Boolean())
})

t.test('args are validated by the TypeBox schema; failures are DRF-shaped 400s', async (t) => {
  const received: unknown[] = []
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [action('greet', { schema: GreetArgs }, async (_ctx, args) => {
        received.push(args)
        return { data: `${args.loud === true ? 'HELLO' : 'hello'} ${args.name} x${args.count}` }
      })]
    })
  })
  const client = await open(t, `${base}/ws/`)

  const ok = await client.request('greet', { name: 'ada', count: 2 })
  t.strictSame(ok, { errors: [], data: 'hello ada x2', action: 'greet', response_status: 200, request_id: ok.request_id })

  const missing = await client.request('greet', { count: 2 })
  t.strictSame(missing, {
    errors: [{ name: ['This field is required.'] }], data: null, action: 'greet', response_status: 400, request_id: missing.request_id
  }, 'missing field → 400 keyed by it')

  t.strictSame((await client.request('greet')).errors, [{ name: ['This field is required.'], count: ['This field is required.'] }],
    'every failing field at once')
  t.strictSame((await client.request('greet', { name: '', count: 'two' })).errors,
    [{ name: ['This field may not be blank.'], count: ['A valid integer is required.'] }], 'DRF wording per failure')
  t.strictSame((await client.request('greet', { name: 'ada', count: 0 })).errors,
    [{ count: ['Ensure this value is greater than or equal to 1.'] }])
  t.strictSame((await client.request('greet', { name: 'ada', count: 1, loud: 'yes' })).errors, [{ loud: ['Must be a valid boolean.'] }])
  t.equal(received.length, 1, 'the handler ran only for the valid message')

  // Unknown extra keys are ignored (docs/protocol.md), not a 400.
  const extra = await client.request('greet', { name: 'bob', count: 1, loud: true, colour: 'red' })
  t.strictSame([extra.response_status, extra.data], [200, 'HELLO bob x1'])
  // The validated args hold only what the schema declares, so a handler never sees (or spreads) undeclared keys.
  t.strictSame(received.at(-1), { name: 'bob', count: 1, loud: true }, 'undeclared keys stripped from args')
})

t.test('a handler\'s { data, status } is the reply; status defaults to 200 and data to null', async (t) => {
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('accepted', {}, async () => ({ data: { queued: true }, status: 202 })),
        action('data_only', {}, async () => ({ data: [1, 'two', { three: 3 }] })),
        action('status_only', {}, async () => ({ status: 204 })),
        action('nothing', {}, async () => ({})),
        action('sync', {}, () => ({ data: 'no promise needed' })),
        action('falsy', {}, async () => ({ data: 0 })),
        // A server bug (data JSON cannot encode) must still answer, as a 500.
        action('bigint', {}, async () => ({ data: { n: 10n } })),
        // The short form: no options object.
        action('short', async (_ctx, args) => ({ data: Object.keys(args) }))
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  const pick = (r: { response_status: number, data: unknown, errors: unknown[] }): unknown[] => [r.response_status, r.data, r.errors]
  t.strictSame(pick(await client.request('accepted')), [202, { queued: true }, []])
  t.strictSame(pick(await client.request('data_only')), [200, [1, 'two', { three: 3 }], []])
  t.strictSame(pick(await client.request('status_only')), [204, null, []])
  t.strictSame(pick(await client.request('nothing')), [200, null, []])
  t.strictSame(pick(await client.request('sync')), [200, 'no promise needed', []])
  t.strictSame(pick(await client.request('falsy')), [200, 0, []], 'a falsy data is kept, not turned into null')
  t.strictSame(pick(await client.request('bigint')), [500, null, ['Internal server error']], 'unencodable data → 500')
  t.strictSame(pick(await client.request('short', { a: 1, b: 2 })), [200, ['a', 'b'], []], 'args without a schema: every key but action/request_id')
})

t.test('a handler throwing a plain Error → 500 "Internal server error", nothing leaked, logged server-side', async (t) => {
  const logged: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { logged.push(String(chunk)); done() } })
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('crash', {}, async () => { throw new Error('SELECT password FROM secret_table') }),
        action('crash_sync', {}, () => { throw new TypeError('undefined is not a function at secret.ts:1') }),
        action('ping', {}, async () => ({ data: 'pong' }))
      ]
    })
  }, { logger: { level: 'error', stream } })
  const client = await open(t, `${base}/ws/`)

  for (const name of ['crash', 'crash_sync']) {
    const reply = await client.request(name)
    t.strictSame(reply, { errors: ['Internal server error'], data: null, action: name, response_status: 500, request_id: reply.request_id })
    t.notMatch(JSON.stringify(reply), /secret|SELECT|\bat\b|\.ts/, 'no message, SQL or stack in the reply')
  }
  t.equal((await client.request('ping')).data, 'pong', 'the socket survives the crash')
  t.ok(logged.some((line) => line.includes('SELECT password FROM secret_table')), 'the cause is in the server log')
})

t.test('ValidationError / NotFound / PermissionDenied thrown by a handler → 400 / 404 / 403', async (t) => {
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('invalid', {}, async () => { throw new ValidationError({ name: ['Already taken.'], nested: { inner: ['Bad.'] } }) }),
        action('invalid_field', {}, async () => { throw ValidationError.field('pk', 'This field is required.') }),
        action('missing', {}, async () => { throw new NotFound() }),
        action('denied', {}, async () => { throw new PermissionDenied() })
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  const pick = (r: { response_status: number, data: unknown, errors: unknown[] }): unknown[] => [r.response_status, r.errors, r.data]
  t.strictSame(pick(await client.request('invalid')), [400, [{ name: ['Already taken.'], nested: { inner: ['Bad.'] } }], null])
  t.strictSame(pick(await client.request('invalid_field')), [400, [{ pk: ['This field is required.'] }], null])
  t.strictSame(pick(await client.request('missing')), [404, ['Not found'], null])
  t.strictSame(pick(await client.request('denied')), [403, ['You do not have permission to perform this action.'], null])
})

// ---------------------------------------------------------------------------
// The EntityManager and transactions
// ---------------------------------------------------------------------------

t.test('ctx.em is usable and forked per message', async (t) => {
  const ems: EntityManager[] = []
  const { base, orm } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('add', { schema: Type.Object({ name: Type.String() }) }, async (ctx, { name }) => {
          ems.push(ctx.em)
          t.equal(ctx.em, ctx.em, 'one EntityManager for the whole message')
          const item = ctx.em.create(Item, { name })
          await ctx.em.flush()
          return { data: { id: item.id, name: item.name }, status: 201 }
        }),
        // Changes a loaded row without flushing: with a shared identity map the next
        // message would see the dirty value; with a fork per message it must not.
        action('dirty', { schema: Type.Object({ id: Type.Integer() }) }, async (ctx, { id }) => {
          ems.push(ctx.em)
          const item = await ctx.em.findOneOrFail(Item, id)
          item.name = 'dirty, never flushed'
          return {}
        }),
        action('get', { schema: Type.Object({ id: Type.Integer() }) }, async (ctx, { id }) => {
          ems.push(ctx.em)
          const item = await ctx.em.findOne(Item, id)
          if (item === null) throw new NotFound()
          return { data: { id: item.id, name: item.name } }
        })
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  const added = await client.request('add', { name: 'first' })
  t.strictSame([added.response_status, added.data], [201, { id: 1, name: 'first' }])
  t.equal(await countItems(orm), 1, 'the row is in the database')
  t.equal((await client.request('dirty', { id: 1 })).response_status, 200)
  t.strictSame((await client.request('get', { id: 1 })).data, { id: 1, name: 'first' }, 'the next message does not see the unflushed change')
  t.equal((await client.request('get', { id: 99 })).response_status, 404)
  t.equal(ems.length, 4)
  t.equal(new Set(ems).size, 4, 'a different EntityManager per message')
  t.notOk(ems.includes(orm.em as unknown as EntityManager), 'never the global EntityManager')
})

t.test('transaction: true rolls back everything the handler wrote when it throws', async (t) => {
  const NameArgs = Type.Object({ name: Type.String() })
  const { base, orm } = await startApp(t, [Item], (app) => {
    /** Write two rows in two flushes, then fail with `err`. */
    const writeThenThrow = (name: string, transaction: boolean, err: () => Error) =>
      action(name, { schema: NameArgs, transaction }, async (ctx, args) => {
        ctx.em.create(Item, { name: `${args.name}-1` })
        await ctx.em.flush()
        ctx.em.create(Item, { name: `${args.name}-2` })
        await ctx.em.flush()
        throw err()
      })
    app.wsRest.route('/ws/', {
      actions: [
        writeThenThrow('tx_crash', true, () => new Error('boom')),
        writeThenThrow('tx_invalid', true, () => new ValidationError({ name: ['Rejected after writing.'] })),
        writeThenThrow('no_tx_crash', false, () => new Error('boom')),
        action('tx_ok', { schema: NameArgs, transaction: true }, async (ctx, args) => {
          ctx.em.create(Item, { name: args.name })
          await ctx.em.flush()
          return { status: 201 }
        })
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)

  t.equal((await client.request('tx_crash', { name: 'a' })).response_status, 500)
  t.equal(await countItems(orm), 0, 'a crash rolled back both flushed rows')
  const invalid = await client.request('tx_invalid', { name: 'b' })
  t.strictSame([invalid.response_status, invalid.errors], [400, [{ name: ['Rejected after writing.'] }]])
  t.equal(await countItems(orm), 0, 'a ValidationError rolled back too')

  // Control: without a transaction the same flushes stay, so the zero above is the rollback's doing.
  t.equal((await client.request('no_tx_crash', { name: 'c' })).response_status, 500)
  t.equal(await countItems(orm), 2, 'without transaction: both flushes committed')
  t.equal((await client.request('tx_ok', { name: 'd' })).response_status, 201)
  const names = (await orm.em.fork().find(Item, {}, { orderBy: { id: 'asc' } })).map((i) => i.name)
  t.strictSame(names, ['c-1', 'c-2', 'd'], 'a transaction that returns commits')
})

t.test('a custom action on a route without an entity needs no ORM', async (t) => {
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/math/', {
      actions: [
        action('add', { schema: Type.Object({ a: Type.Number(), b: Type.Number() }) }, async (ctx, { a, b }) => {
          return { data: { sum: a + b, hasModel: ctx.model !== undefined } }
        }),
        // Touching ctx.em where there is no ORM is a server-side mistake: a 500, not a crash.
        action('uses_em', {}, async (ctx) => { ctx.em.clear(); return {} })
      ]
    })
  })
  const client = await open(t, `${base}/ws/math/`)
  const sum = await client.request('add', { a: 2, b: 3.5 })
  t.strictSame([sum.response_status, sum.data], [200, { sum: 5.5, hasModel: false }])
  t.strictSame((await client.request('add', { a: 2 })).errors, [{ b: ['This field is required.'] }])
  const em = await client.request('uses_em')
  t.strictSame([em.response_status, em.errors], [500, ['Internal server error']])
  t.equal((await client.request('add', { a: 1, b: 1 })).data.sum, 2, 'the socket keeps working')
})

// ---------------------------------------------------------------------------
// Detached actions
// ---------------------------------------------------------------------------

t.test('a detached action runs concurrently with later actions on the same socket', async (t) => {
  const gate = deferred<string>()
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        // Waits for a value that only the later `release` action provides: if it were not
        // detached, `release` would queue behind it and neither would ever answer.
        action('wait', { detached: true }, async () => ({ data: await within(gate.promise, 'gate') })),
        action('release', { schema: Type.Object({ value: Type.String() }) }, async (_ctx, { value }) => {
          gate.resolve(value)
          return { data: 'released' }
        }),
        action('ping', {}, async () => ({ data: 'pong' }))
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  client.send({ action: 'wait', request_id: 'waiter' })
  client.send({ action: 'ping', request_id: 'p' })
  client.send({ action: 'release', request_id: 'releaser', value: 'opened' })
  const [first, second, third] = await client.take(3)
  t.strictSame([first.request_id, first.data], ['p', 'pong'], 'a later action answered while the detached one waited')
  t.strictSame([second.request_id, second.data], ['releaser', 'released'])
  t.strictSame([third.request_id, third.action, third.response_status, third.data], ['waiter', 'wait', 200, 'opened'],
    'the detached action finished after, with its own request_id')
})

t.test('non-detached actions on one socket run one after another, in arrival order', async (t) => {
  // Control for the test above: the same shape without `detached` is serialised.
  const order: string[] = []
  let inFlight = 0
  let maxInFlight = 0
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [action('step', { schema: Type.Object({ n: Type.Integer() }) }, async (_ctx, { n }) => {
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        // Yield to the event loop a few times so overlapping runs would interleave.
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
        order.push(`end-${n}`)
        inFlight--
        return { data: n }
      })]
    })
  })
  const client = await open(t, `${base}/ws/`)
  for (let n = 1; n <= 4; n++) client.send({ action: 'step', request_id: n, n })
  const replies = await client.take(4)
  t.strictSame(replies.map((r) => r.request_id), [1, 2, 3, 4])
  t.strictSame(order, ['end-1', 'end-2', 'end-3', 'end-4'])
  t.equal(maxInFlight, 1, 'never two at once')
})

t.test('a detached action is cancelled when its socket closes: ctx.signal fires abort', async (t) => {
  const started = deferred<AbortSignal>()
  const aborted = deferred<void>()
  const finished = deferred<void>()
  const signals: AbortSignal[] = []
  let replyAfterClose: boolean | undefined
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('hang', { detached: true }, async (ctx) => {
          signals.push(ctx.signal)
          if (ctx.signal.aborted) throw new Error('aborted before it started')
          ctx.signal.addEventListener('abort', () => aborted.resolve(), { once: true })
          started.resolve(ctx.signal)
          // Stays in flight until the socket goes away (bounded, so a bug cannot hang the run).
          await within(aborted.promise, 'abort of the detached action')
          replyAfterClose = ctx.reply('anyone there?')
          finished.resolve()
          return { data: 'too late' }
        }),
        action('ping', {}, async (ctx) => { signals.push(ctx.signal); return { data: 'pong' } })
      ]
    })
  })
  const doomed = await open(t, `${base}/ws/`)
  const bystander = await open(t, `${base}/ws/`)
  doomed.send({ action: 'hang', request_id: 'h' })
  const signal = await within(started.promise, 'the detached action to start')
  t.equal(signal.aborted, false, 'not aborted while the socket is open')
  t.equal((await doomed.request('ping')).data, 'pong', 'the socket still answers while it hangs')
  t.equal((await bystander.request('ping')).data, 'pong')

  doomed.close()
  await within(aborted.promise, 'ctx.signal abort after the client closed')
  t.equal(signal.aborted, true, 'the handler\'s signal is aborted')
  await within(finished.promise, 'the handler to return after abort')
  t.equal(replyAfterClose, false, 'ctx.reply reports the socket is gone instead of throwing')
  const bystanderSignal = signals.at(-1)!
  t.equal(bystanderSignal.aborted, false, 'another socket\'s signal is untouched')
  t.equal((await bystander.request('ping')).data, 'pong', 'another socket keeps working')
})

t.test('ctx.signal first read after the socket closed is already aborted', async (t) => {
  const closedMeanwhile = deferred<void>()
  const read = deferred<boolean>()
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      onDisconnect: () => { closedMeanwhile.resolve() },
      actions: [
        action('late', { detached: true }, async (ctx) => {
          // The signal is made when first asked for: asked only now, it must still say the socket is gone.
          await within(closedMeanwhile.promise, 'the socket to close')
          read.resolve(ctx.signal.aborted)
          return { data: 'too late' }
        })
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  client.send({ action: 'late', request_id: 'l' })
  client.close()
  t.equal(await within(read.promise, 'the action to read its signal'), true)
})

t.test('a detached action that fails answers with its error and request_id; the socket keeps working', async (t) => {
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('bad_job', { detached: true }, async () => { throw new Error('detached secret') }),
        action('missing_job', { detached: true, schema: Type.Object({ id: Type.Integer() }) }, async () => { throw new NotFound() }),
        action('ping', {}, async () => ({ data: 'pong' }))
      ]
    })
  })
  const client = await open(t, `${base}/ws/`)
  const crashed = await client.request('bad_job')
  t.strictSame([crashed.response_status, crashed.errors, crashed.action], [500, ['Internal server error'], 'bad_job'])
  t.strictSame((await client.request('missing_job')).errors, [{ id: ['This field is required.'] }], 'detached args are validated too')
  t.strictSame((await client.request('missing_job', { id: 1 })).errors, ['Not found'])
  t.equal((await client.request('ping')).data, 'pong')
})

t.test('ctx exposes the message: action, requestId, log, and extra replies through ctx.reply', async (t) => {
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [action('progress', { schema: Type.Object({ steps: Type.Integer() }) }, async (ctx, { steps }) => {
        ctx.log.debug('progress running') // the logger is there to use
        for (let i = 1; i <= steps; i++) ctx.reply({ step: i }, 202)
        return { data: { action: ctx.action, requestId: ctx.requestId } }
      })]
    })
  })
  const client = await open(t, `${base}/ws/`)
  client.send({ action: 'progress', request_id: { job: 7 }, steps: 2 })
  const replies = await client.take(3)
  t.strictSame(replies.map((r) => [r.response_status, r.request_id, r.data]), [
    [202, { job: 7 }, { step: 1 }],
    [202, { job: 7 }, { step: 2 }],
    [200, { job: 7 }, { action: 'progress', requestId: { job: 7 } }]
  ], 'ctx.reply frames carry the message\'s request_id, then the final reply')
})

t.test('ctx.cancellable / ctx.cancel: one action stops another\'s work on the same socket only', async (t) => {
  const started = new Map<string, ReturnType<typeof deferred<AbortSignal>>>()
  const startedOn = (who: string): ReturnType<typeof deferred<AbortSignal>> => {
    if (!started.has(who)) started.set(who, deferred<AbortSignal>())
    return started.get(who)!
  }
  const { base } = await startBare(t, (app) => {
    app.wsRest.route('/ws/', {
      actions: [
        action('job', { detached: true, schema: Type.Object({ who: Type.String() }) }, async (ctx, { who }) => {
          const signal = ctx.cancellable('jobs')
          startedOn(who).resolve(signal)
          await within(new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true })), `cancel of ${who}`)
          return { data: `${who} cancelled` }
        }),
        action('cancel_jobs', {}, async (ctx) => { ctx.cancel('jobs'); return { data: null } })
      ]
    })
  })
  const a = await open(t, `${base}/ws/`)
  const b = await open(t, `${base}/ws/`)
  a.send({ action: 'job', request_id: 'ja', who: 'a' })
  b.send({ action: 'job', request_id: 'jb', who: 'b' })
  const signalA = await within(startedOn('a').promise, 'job a to start')
  const signalB = await within(startedOn('b').promise, 'job b to start')

  a.send({ action: 'cancel_jobs', request_id: 'c' })
  const [first, second] = await a.take(2)
  t.strictSame(new Set([first.request_id, second.request_id]), new Set(['c', 'ja']))
  t.strictSame([first, second].find((r) => r.request_id === 'ja')?.data, 'a cancelled')
  t.equal(signalA.aborted, true)
  t.equal(signalB.aborted, false, 'the other socket\'s scope of the same name is untouched')

  // b's job is still in flight; cancelling on b ends it.
  t.equal((await b.request('cancel_jobs')).response_status, 200)
  t.equal((await b.next()).data, 'b cancelled')
})

// ---------------------------------------------------------------------------
// Registration errors
// ---------------------------------------------------------------------------

/** A fresh app (not listening) with the plugin registered, closed at the end. */
async function bareApp (t: Teardown, options: WsRestOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await app.register(wsRest, options)
  return app
}

t.test('duplicate action names on one route fail at declaration with FST_WSREST_DUPLICATE_ACTION', async (t) => {
  const app = await bareApp(t)
  const h = async (): Promise<{ data: null }> => ({ data: null })
  const customs = thrownBy(() => app.wsRest.route('/ws/a/', { actions: [action('rename', h), action('rename', h)] }))
  t.equal(customs.code, 'FST_WSREST_DUPLICATE_ACTION')
  t.match(customs.message, /"rename"/, 'names the action')
  t.match(customs.message, /\/ws\/a\//, 'names the route')

  // Routes take nested arrays (a mixin may return several actions); duplicates across them count too.
  const mixed = thrownBy(() => app.wsRest.route('/ws/b/', { actions: [action('ping', h), [action('pong', h), action('ping', h)]] }))
  t.equal(mixed.code, 'FST_WSREST_DUPLICATE_ACTION', 'nested arrays of actions are checked too')
})

t.test('duplicate mixin names, declared inside a plugin, fail the app at ready', async (t) => {
  const orm = await initOrm(t, [Item])
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close().catch(() => {}))
  await app.register(wsRest, { orm })
  // Not awaited: the failure must surface at ready(), as it would in an app's boot.
  void app.register(async (child) => {
    child.wsRest.route('/ws/', {
      entity: Item,
      schema: { response: ItemPublic },
      actions: [mixins.list(), mixins.retrieve(), action('list', async () => ({}))]
    })
  })
  const err = await app.ready().then(() => undefined, (e: { code?: string, message: string }) => e)
  t.equal(err?.code, 'FST_WSREST_DUPLICATE_ACTION')
  t.match(err?.message ?? '', /"list"/)
})

t.test('a mixin on a route without an entity fails at declaration, naming the option', async (t) => {
  const app = await bareApp(t)
  for (const mixin of [mixins.list(), mixins.retrieve(), mixins.create(), mixins.delete()]) {
    const err = thrownBy(() => app.wsRest.route('/ws/', { actions: [mixin] }))
    t.match(err.code, /^FST_WSREST_/, `${mixin.name}: coded error`)
    t.match(err.message, /entity/, `${mixin.name}: names the entity option`)
    t.match(err.message, new RegExp(`"${mixin.name}"`), `${mixin.name}: names the action`)
  }
})

t.test('route options are checked at declaration', async (t) => {
  const app = await bareApp(t)
  const ping = action('ping', async () => ({}))
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['an entity but the plugin has no orm', () => app.wsRest.route('/ws/', { entity: Item, schema: { response: ItemPublic }, actions: [ping] }), /orm/],
    ['a path without a leading slash', () => app.wsRest.route('ws/', { actions: [ping] }), /path/],
    ['actions not an array', () => app.wsRest.route('/ws/', { actions: ping as never }), /actions/],
    ['an entry that is not an action', () => app.wsRest.route('/ws/', { actions: [{ name: 'x' } as never] }), /actions/],
    ['permissions not an array', () => app.wsRest.route('/ws/', { actions: [ping], permissions: {} as never }), /permissions/],
    ['an unknown hook name', () => app.wsRest.addHook('onMessage' as never, async () => {}), /addHook|onMessage/],
    ['a preAction hook that is not a function', () => app.wsRest.addHook('preAction', 'nope' as never), /preAction/]
  ]
  for (const [what, fn, names] of cases) {
    const err = thrownBy(fn)
    t.match(err.code, /^FST_WSREST_/, `${what}: coded error`)
    t.match(err.message, names, `${what}: names the option`)
  }

  // The route's own maxPayload and permission entries deserve the same fail-fast check as the plugin's.
  const routeLevel: Array<[string, () => unknown, RegExp]> = [
    ['route maxPayload -1', () => app.wsRest.route('/ws/mp1/', { actions: [ping], maxPayload: -1 }), /maxPayload/],
    ['route maxPayload not a number', () => app.wsRest.route('/ws/mp2/', { actions: [ping], maxPayload: 'big' as never }), /maxPayload/],
    ['a permission entry that is null', () => app.wsRest.route('/ws/p1/', { actions: [ping], permissions: [null as never] }), /permissions/]
  ]
  for (const [what, fn, names] of routeLevel) {
    let err: { code?: string, message: string } | undefined
    try { fn() } catch (e) { err = e as { code?: string, message: string } }
    t.match(err?.code, /^FST_WSREST_/, `${what}: coded error`)
    t.match(err?.message ?? '', names, `${what}: names the option`)
  }
})

t.test('an entity route\'s schemas are checked at declaration against its actions', async (t) => {
  const { orm } = await startApp(t, [Item], () => {})
  const app = await bareApp(t, { orm })
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['no schema.response', () => app.wsRest.route('/ws/1/', { entity: Item, schema: {} as never, actions: [mixins.list()] }), /schema\.response/],
    ['create without schema.create', () => app.wsRest.route('/ws/2/', { entity: Item, schema: { response: ItemPublic }, actions: [mixins.create()] }), /schema\.create/],
    ['update without schema.update', () => app.wsRest.route('/ws/3/', { entity: Item, schema: { response: ItemPublic }, actions: [mixins.update()] }), /schema\.update/],
    ['patch without schema.update', () => app.wsRest.route('/ws/4/', { entity: Item, schema: { response: ItemPublic }, actions: [mixins.patch()] }), /schema\.update/]
  ]
  for (const [what, fn, names] of cases) {
    const err = thrownBy(fn)
    t.match(err.code, /^FST_WSREST_/, `${what}: coded error`)
    t.match(err.message, names, `${what}: names the option`)
  }
  // Control: the same route with its schemas declares fine.
  t.doesNotThrow(() => app.wsRest.route('/ws/ok/', {
    entity: Item,
    schema: { create: Type.Object({ name: Type.String() }), update: Type.Object({ name: Type.String() }), response: ItemPublic },
    actions: [mixins.create(), mixins.update(), mixins.patch(), mixins.list()]
  }))
})

t.test('bad plugin options fail at register with a coded error naming the option', async (t) => {
  const cases: Array<[string, unknown]> = [
    ['maxPayload', { maxPayload: -1 }],
    ['maxPayload', { maxPayload: 1.5 }],
    ['maxPayload', { maxPayload: '1024' }],
    ['maxDepth', { maxDepth: 0 }],
    ['closeTimeout', { closeTimeout: Number.NaN }],
    ['orm', { orm: {} }],
    ['orm', { orm: null }],
    ['orm', { orm: { em: {} } }],
    ['websocket', { websocket: 'yes' }]
  ]
  for (const [option, options] of cases) {
    const app = Fastify({ logger: false })
    t.teardown(async () => await app.close().catch(() => {}))
    const err = await app.register(wsRest, options as WsRestOptions).ready().then(() => undefined, (e: { code?: string, message: string }) => e)
    const label = `${JSON.stringify(options)}`
    t.match(err?.code, /^FST_WSREST_/, `${label}: coded error`)
    t.match(err?.message ?? '', new RegExp(`"${option}"`), `${label}: names ${option}`)
  }
  // Control: valid options register fine, so the failures above are the options' doing.
  const app = Fastify({ logger: false })
  t.teardown(async () => await app.close())
  await t.resolves(async () => { await app.register(wsRest, { maxPayload: 1024, maxDepth: 8, closeTimeout: 100 }).ready() })
})
