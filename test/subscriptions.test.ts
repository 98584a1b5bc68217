/**
 * Subscriptions over real sockets: `subscribe_instance` / `unsubscribe_instance` exactly
 * as docs/protocol.md says, filtered-list subscriptions (rows entering and leaving the filter),
 * the route's scope and permissions applied to every delivery, and subscriptions released
 * when a socket closes.
 *
 * "No event" is proven without sleeping: after the change that must send nothing, a
 * second change is made that must send an event, and the next event received has to be
 * that one.
 */
import type { FastifyRequest } from 'fastify'
import t from 'tap'
import { action, MemoryLayer, mixins, type Permission, type RouteOptions } from '../index.js'
import { eventually, within, type Teardown } from './helpers/async.js'
import { openClient } from './helpers/client.js'
import { Item, itemModel, removeItem, renameItem, seedItems } from './helpers/item.js'
import { startApp, startExample, type Running } from './helpers/server.js'

const crud = [mixins.create(), mixins.retrieve(), mixins.patch(), mixins.delete()]

/** An app serving Item at /items/ with `options` (actions, filter fields, permissions…). */
async function startItems (t: Teardown, options: Omit<RouteOptions, 'entity' | 'schema'>): Promise<Running> {
  return await startApp(t, [Item], (app) => { app.wsRest.route('/items/', { ...itemModel, ...options }) })
}

// ------------------------------------------------------------------ subscribe_instance (docs/protocol.md)

t.test('subscribe_instance → 201; update and delete events carry the subscription\'s request_id; no event for creates', async (t) => {
  const { base } = await startExample(t)
  const writer = await openClient(t, `${base}/ws/`)
  const subscriber = await openClient(t, `${base}/ws/`)
  const created = await writer.request('create', { data: { username: 'ann', password1: 'pw', password2: 'pw' } })
  const id = created.data.id as number

  const reply = await subscriber.ask({ action: 'subscribe_instance', request_id: 'sub-1', pk: id })
  t.strictSame(reply, { errors: [], data: null, action: 'subscribe_instance', response_status: 201, request_id: 'sub-1' })
  t.strictSame(Object.keys(reply), ['errors', 'data', 'action', 'response_status', 'request_id'], 'exactly the five keys, in order')

  // Another user's create never reaches an instance subscription.
  await writer.request('create', { data: { username: 'bob', password1: 'pw', password2: 'pw' } })
  await writer.request('patch', { pk: id, data: { email: 'ann@example.com' } })
  const update = await subscriber.next()
  t.strictSame(update, {
    errors: [],
    data: { id, username: 'ann', email: 'ann@example.com' },
    action: 'update',
    response_status: 200,
    request_id: 'sub-1'
  }, 'the update, shaped by the response schema (no password), with the subscription\'s request_id')
  t.strictSame(Object.keys(update), ['errors', 'data', 'action', 'response_status', 'request_id'])

  await writer.request('delete', { pk: id })
  t.strictSame(await subscriber.next(), { errors: [], data: { pk: id }, action: 'delete', response_status: 204, request_id: 'sub-1' })
})

t.test('the subscriber\'s own change reaches it too (reply first or event first, both arrive)', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/`)
  const id = (await client.request('create', { data: { username: 'ann', password1: 'pw', password2: 'pw' } })).data.id
  await client.ask({ action: 'subscribe_instance', request_id: 'mine', pk: id })
  client.send({ action: 'patch', request_id: 'p', pk: id, data: { email: 'x@y.z' } })
  const frames = await client.take(2)
  const event = frames.find((f) => f.request_id === 'mine')
  const reply = frames.find((f) => f.request_id === 'p')
  t.equal(reply?.response_status, 200)
  t.strictSame(event?.data, { id, username: 'ann', email: 'x@y.z' })
  t.equal(event?.action, 'update')
})

t.test('subscribe_instance without request_id → 400 keyed request_id; missing or invalid pk → 400 / 404', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/`)
  const id = (await client.request('create', { data: { username: 'ann', password1: 'pw', password2: 'pw' } })).data.id

  t.strictSame(await client.ask({ action: 'subscribe_instance', pk: id }), {
    errors: [{ request_id: ['This field is required.'] }], data: null, action: 'subscribe_instance', response_status: 400, request_id: null
  })
  const noPk = await client.ask({ action: 'subscribe_instance', request_id: 's' })
  t.equal(noPk.response_status, 400)
  t.strictSame(noPk.errors, [{ pk: ['This field is required.'] }])
  for (const pk of [999, { $gt: 0 }, [id], 'abc']) {
    const reply = await client.ask({ action: 'subscribe_instance', request_id: 's', pk })
    t.strictSame([reply.response_status, reply.errors], [404, ['Not found']], `pk ${JSON.stringify(pk)} → 404`)
  }
  // The refused subscriptions left nothing behind: a change sends no event, and the socket still works.
  await client.request('patch', { pk: id, data: { email: 'a@b.c' } })
  t.equal((await client.request('retrieve', { pk: id })).data.email, 'a@b.c', 'no stray event came before this reply')
})

t.test('subscribing twice with the same request_id does not duplicate events; two request_ids get one event each', async (t) => {
  const { orm, base } = await startItems(t, { actions: [...crud, mixins.subscribeInstance()] })
  const [id, marker] = await seedItems(orm, 'one', 'marker')
  const client = await openClient(t, `${base}/items/`)
  for (const rid of ['a', 'a', 'b']) {
    t.equal((await client.ask({ action: 'subscribe_instance', request_id: rid, pk: id })).response_status, 201)
  }
  await client.ask({ action: 'subscribe_instance', request_id: 'm', pk: marker })
  await renameItem(orm, id, 'two')
  await renameItem(orm, marker, 'marker-2')
  const events = await client.take(3)
  t.strictSame(events.map((e) => [e.request_id, e.data.name]), [['a', 'two'], ['b', 'two'], ['m', 'marker-2']],
    'one event per request_id, then the marker: no duplicate for the repeated subscription')
})

t.test('unsubscribe_instance: with request_id removes only that subscription; without, all of that row\'s; others keep working', async (t) => {
  const { orm, base } = await startItems(t, { actions: [...crud, mixins.subscribeInstance()] })
  const [one, two] = await seedItems(orm, 'one', 'two')
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_instance', request_id: 'a', pk: one })
  await client.ask({ action: 'subscribe_instance', request_id: 'b', pk: one })
  await client.ask({ action: 'subscribe_instance', request_id: 'c', pk: two })

  t.strictSame(await client.ask({ action: 'unsubscribe_instance', request_id: 'a', pk: one }),
    { errors: [], data: null, action: 'unsubscribe_instance', response_status: 204, request_id: 'a' })
  await renameItem(orm, one, 'one-1')
  await renameItem(orm, two, 'two-1')
  t.strictSame((await client.take(2)).map((e) => [e.request_id, e.data.name]), [['b', 'one-1'], ['c', 'two-1']],
    'b still receives row one, c row two; a no longer')

  t.equal((await client.ask({ action: 'unsubscribe_instance', pk: one })).response_status, 204, 'without request_id')
  await renameItem(orm, one, 'one-2')
  await renameItem(orm, two, 'two-2')
  t.strictSame((await client.take(1)).map((e) => [e.request_id, e.data.name]), [['c', 'two-2']],
    'nothing for row one any more; the other row\'s subscription (DCRF drops it) keeps working')

  t.equal((await client.ask({ action: 'unsubscribe_instance', request_id: 'zzz', pk: two })).response_status, 204,
    'not subscribed with that request_id: still 204')
  const missing = await client.ask({ action: 'unsubscribe_instance', request_id: 'zzz', pk: 12345 })
  t.strictSame([missing.response_status, missing.errors, missing.data], [404, ['Not found'], null], 'a pk with no row: 404, as DCRF (it looks the row up)')
  const noPk = await client.ask({ action: 'unsubscribe_instance', request_id: 'x' })
  t.strictSame([noPk.response_status, noPk.errors], [400, [{ pk: ['This field is required.'] }]])
})

t.test('a row deleted and events after unsubscribe: nothing arrives once the reply to unsubscribe is out', async (t) => {
  const { orm, base } = await startItems(t, { actions: [...crud, mixins.subscribeInstance()] })
  const [id, marker] = await seedItems(orm, 'one', 'marker')
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_instance', request_id: 'a', pk: id })
  await client.ask({ action: 'subscribe_instance', request_id: 'm', pk: marker })
  await client.ask({ action: 'unsubscribe_instance', request_id: 'a', pk: id })
  await removeItem(orm, id)
  await removeItem(orm, marker)
  t.strictSame(await client.next(), { errors: [], data: { pk: marker }, action: 'delete', response_status: 204, request_id: 'm' })
})

// ------------------------------------------------------------------ subscribe_list (filtered lists)

t.test('subscribe_list with a filter: rows entering the filter are creates, staying updates, leaving deletes', async (t) => {
  const { orm, base } = await startItems(t, { filterFields: ['id', 'name'], searchFields: ['name'], actions: [...crud, mixins.subscribeList()] })
  const [apple] = await seedItems(orm, 'apple')
  const client = await openClient(t, `${base}/items/`)
  t.strictSame(await client.ask({ action: 'subscribe_list', request_id: 'fruit', filter: { name: { $contains: 'AN' } } }),
    { errors: [], data: null, action: 'subscribe_list', response_status: 201, request_id: 'fruit' })

  const [banana, cherry] = await seedItems(orm, 'banana', 'cherry')
  t.strictSame(await client.next(), { errors: [], data: { id: banana, name: 'banana' }, action: 'create', response_status: 201, request_id: 'fruit' },
    'a created row that matches → create; cherry (no match) sends nothing')
  await renameItem(orm, apple, 'mango')
  t.strictSame(await client.next(), { errors: [], data: { id: apple, name: 'mango' }, action: 'create', response_status: 201, request_id: 'fruit' },
    'a row updated into the filter → create')
  await renameItem(orm, banana, 'bananas')
  t.strictSame(await client.next(), { errors: [], data: { id: banana, name: 'bananas' }, action: 'update', response_status: 200, request_id: 'fruit' },
    'a matching row that still matches → update')
  await renameItem(orm, banana, 'kiwi')
  t.strictSame(await client.next(), { errors: [], data: { pk: banana }, action: 'delete', response_status: 204, request_id: 'fruit' },
    'a row updated out of the filter → delete with {pk}')
  await renameItem(orm, cherry, 'cherry-2')
  await removeItem(orm, banana)
  await removeItem(orm, apple)
  t.strictSame(await client.next(), { errors: [], data: { pk: apple }, action: 'delete', response_status: 204, request_id: 'fruit' },
    'rows never (or no longer) matching send nothing; a matching row deleted → delete')
})

t.test('subscribe_list: search, operators, several subscriptions per socket, unsubscribe_list', async (t) => {
  const { orm, base } = await startItems(t, { filterFields: ['id', 'name'], searchFields: ['name'], actions: [...crud, mixins.subscribeList()] })
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_list', request_id: 'all' })
  await client.ask({ action: 'subscribe_list', request_id: 'search', search: 'x_' })
  await client.ask({ action: 'subscribe_list', request_id: 'in', filter: { name: { $in: ['a', 'b'] } } })

  await seedItems(orm, 'ax_1')
  t.strictSame((await client.take(2)).map((e) => e.request_id).sort(), ['all', 'search'], '"_" is taken literally by search')
  await seedItems(orm, 'axy')
  t.strictSame((await client.take(1)).map((e) => e.request_id), ['all'])
  await seedItems(orm, 'b')
  t.strictSame((await client.take(2)).map((e) => e.request_id).sort(), ['all', 'in'])

  t.strictSame(await client.ask({ action: 'unsubscribe_list', request_id: 'all' }),
    { errors: [], data: null, action: 'unsubscribe_list', response_status: 204, request_id: 'all' })
  await seedItems(orm, 'a')
  t.strictSame((await client.take(1)).map((e) => e.request_id), ['in'], 'only the unsubscribed one stopped')
  t.equal((await client.ask({ action: 'unsubscribe_list' })).response_status, 204, 'without request_id: all of them')
  await client.request('create', { data: { name: 'a' } })
  t.equal((await client.request('create', { data: { name: 'b' } })).response_status, 201, 'no event came before these replies')
})

t.test('subscribe_list validates like list: 400 keyed filter / search, and needs a request_id', async (t) => {
  const { base } = await startExample(t)
  const client = await openClient(t, `${base}/ws/`)
  const cases: Array<[Record<string, unknown>, Record<string, string[]>]> = [
    [{ filter: { password: 'x' } }, { filter: ['Unknown field "password".'] }],
    [{ filter: { id: { $like: '%' } } }, { filter: ['Unknown operator "$like" for field "id".'] }],
    [{ filter: { id: 'one' } }, { filter: ['Invalid value for "id": expected integer.'] }],
    [{ search: 5 }, { search: ['Expected a string.'] }]
  ]
  for (const [args, errors] of cases) {
    const reply = await client.ask({ action: 'subscribe_list', request_id: 'l', ...args })
    t.strictSame([reply.response_status, reply.errors], [400, [errors]], JSON.stringify(args))
  }
  const noId = await client.ask({ action: 'subscribe_list', filter: { id: 1 } })
  t.strictSame([noId.response_status, noId.errors], [400, [{ request_id: ['This field is required.'] }]])
})

t.test('subscribing again with the same request_id replaces the filter', async (t) => {
  const { orm, base } = await startItems(t, { filterFields: ['name'], actions: [...crud, mixins.subscribeList()] })
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_list', request_id: 'l', filter: { name: 'a' } })
  await client.ask({ action: 'subscribe_list', request_id: 'l', filter: { name: 'b' } })
  await seedItems(orm, 'a')
  await seedItems(orm, 'b')
  t.strictSame((await client.next()).data.name, 'b', 'the first filter is gone, and there is one subscription, not two')
})

// ------------------------------------------------------------------ scope and permissions on delivery

/** A route whose connections see only items with id ≤ their `?max=`. */
function scopedRoute (app: import('fastify').FastifyInstance): void {
  app.wsRest.route('/items/', {
    ...itemModel,
    getQueryset: (ctx) => ({ id: { $lte: Number((ctx.request.query as { max?: string }).max ?? 0) } }),
    actions: [...crud, mixins.subscribeList(), mixins.subscribeInstance()]
  })
}

t.test('events pass through getQueryset: nobody receives a row they could not list', async (t) => {
  const { orm, base } = await startApp(t, [Item], scopedRoute)
  const [one, two, three] = await seedItems(orm, 'one', 'two', 'three')
  const narrow = await openClient(t, `${base}/items/?max=2`)
  const wide = await openClient(t, `${base}/items/?max=100`)
  await narrow.ask({ action: 'subscribe_list', request_id: 'n' })
  await wide.ask({ action: 'subscribe_list', request_id: 'w' })
  t.equal((await narrow.ask({ action: 'subscribe_instance', request_id: 'i', pk: three })).response_status, 404,
    'an instance outside the scope cannot be subscribed to')

  await renameItem(orm, three, 'three-1')
  t.strictSame((await wide.next()).data, { id: three, name: 'three-1' })
  await renameItem(orm, two, 'two-1')
  t.strictSame((await narrow.next()).data, { id: two, name: 'two-1' }, 'narrow got nothing for row 3, then row 2')
  t.strictSame((await wide.next()).data, { id: two, name: 'two-1' })
  await removeItem(orm, three)
  t.strictSame((await wide.next()).data, { pk: three })
  await removeItem(orm, one)
  t.strictSame(await narrow.next(), { errors: [], data: { pk: one }, action: 'delete', response_status: 204, request_id: 'n' },
    'the delete of row 3 was not sent to narrow (it never saw row 3)')
})

t.test('a getQueryset that cannot be decided in memory is refused with a 400, never a subscription that hears nothing', async (t) => {
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      getQueryset: () => ({ name: { $like: 'a%' } }),
      actions: [...crud, mixins.subscribeList(), mixins.subscribeInstance()]
    })
  })
  const scoped = await openClient(t, `${base}/items/`)
  const [id] = await seedItems(orm, 'apple')
  const refused = { response_status: 400, errors: [{ non_field_errors: ['Live updates are not available for this route\'s scope.'] }] }
  const list = await scoped.ask({ action: 'subscribe_list', request_id: 's' })
  t.strictSame({ response_status: list.response_status, errors: list.errors }, refused, 'subscribe_list')
  const instance = await scoped.ask({ action: 'subscribe_instance', request_id: 'i', pk: id })
  t.strictSame({ response_status: instance.response_status, errors: instance.errors }, refused, 'subscribe_instance')
  t.equal((await scoped.request('retrieve', { pk: id })).data.name, 'apple', 'the scope still serves reads')
})

t.test('permissions are checked again on every delivery: a revoked subscriber stops receiving, others do not', async (t) => {
  /** Each connection's upgrade request carries a flag its own actions flip. */
  const allowed = new WeakMap<FastifyRequest, boolean>()
  const gate: Permission = { hasPermission: (ctx, name) => name === 'grant' || allowed.get(ctx.request) !== false }
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', {
      ...itemModel,
      permissions: [gate],
      actions: [
        ...crud, mixins.subscribeList(),
        action('revoke', {}, (ctx) => { allowed.set(ctx.request, false); return {} }),
        action('grant', {}, (ctx) => { allowed.set(ctx.request, true); return {} })
      ]
    })
  })
  const revoked = await openClient(t, `${base}/items/`)
  const kept = await openClient(t, `${base}/items/`)
  await revoked.ask({ action: 'subscribe_list', request_id: 'r' })
  await kept.ask({ action: 'subscribe_list', request_id: 'k' })
  await revoked.ask({ action: 'revoke', request_id: 'x' })

  await seedItems(orm, 'while-revoked')
  t.equal((await kept.next()).data.name, 'while-revoked', 'the other subscriber still receives')
  await revoked.ask({ action: 'grant', request_id: 'y' })
  await seedItems(orm, 'after-grant')
  t.equal((await revoked.next()).data.name, 'after-grant', 'the revoked socket never got the event sent while it was refused')
  t.equal((await kept.next()).data.name, 'after-grant')
})

t.test('a permission that throws on delivery drops that event (logged), and later events still flow', async (t) => {
  // Its first check is the subscribe action's own; the second, the first event's, throws.
  let checks = 0
  const flaky: Permission = {
    hasPermission: (_ctx, name) => {
      if (name === 'subscribe_list' && ++checks === 2) throw new Error('auth service down')
      return true
    }
  }
  const { orm, base } = await startItems(t, { permissions: [flaky], actions: [...crud, mixins.subscribeList()] })
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'subscribe_list', request_id: 'l' })
  await seedItems(orm, 'dropped')
  await seedItems(orm, 'delivered')
  t.equal((await client.next()).data.name, 'delivered')
  t.equal(checks, 3, 'both events were checked')
})

// ------------------------------------------------------------------ no leaks

t.test('closing a socket releases its subscriptions and groups; 1,000 connect-subscribe-close cycles leave nothing', async (t) => {
  const layer = new MemoryLayer()
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.route('/items/', { ...itemModel, filterFields: ['name'], actions: [...crud, mixins.subscribeInstance(), mixins.subscribeList()] })
  }, { broadcast: layer })
  const [id] = await seedItems(orm, 'one')
  const watcher = await openClient(t, `${base}/items/`)
  await watcher.ask({ action: 'subscribe_instance', request_id: 'w', pk: id })
  const baseline = layer.groups().sort()
  t.equal(baseline.length, 1, 'the watcher listens to one group')

  const startHeap = process.memoryUsage().heapUsed
  for (let i = 0; i < 1000; i += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_, j) => {
      const client = await openClient(t, `${base}/items/`)
      await client.ask({ action: 'subscribe_instance', request_id: `i${i + j}`, pk: id })
      await client.ask({ action: 'subscribe_list', request_id: `l${i + j}`, filter: { name: `n${i + j}` } })
      client.close()
      await within(client.closed, 'close')
    }))
  }
  // The server learns of each close asynchronously, with no event a test can await.
  await eventually(() => layer.groups().length === baseline.length, 'groups released')
  t.strictSame(layer.groups().sort(), baseline, 'only the watcher\'s group is left')
  await renameItem(orm, id, 'two')
  t.strictSame((await watcher.next()).request_id, 'w', 'the remaining subscription still works')
  t.comment(`heap growth over 1,000 cycles: ${((process.memoryUsage().heapUsed - startHeap) / 1024 / 1024).toFixed(1)} MiB`)
})
