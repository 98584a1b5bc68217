/**
 * Custom observers and groups: the app publishes its own events (`app.wsRest.publish`),
 * routes an entity's changes to groups of its own (`app.wsRest.observe(entity, {groups})`),
 * and custom actions subscribe sockets to groups with request_id tracking
 * (`ctx.subscribe` / `ctx.unsubscribe`) — enough for DCRF's `subscribe_many` /
 * `unsubscribe_many` pattern. Over real sockets.
 */
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { action, groups, mixins, type ActionContext } from '../index.js'
import { thrownBy } from './helpers/throws.js'
import { openClient } from './helpers/client.js'
import { Item, itemModel, renameItem, seedItems } from './helpers/item.js'
import { startApp } from './helpers/server.js'

/** A chat route: `join {room}` subscribes to the room's group, `leave` unsubscribes; `say` publishes. */
function chat (app: FastifyInstance): void {
  app.wsRest.route('/chat/', {
    actions: [
      action('join', { schema: Type.Object({ room: Type.String() }) }, async (ctx, { room }) => {
        const added = await ctx.subscribe(`room:${room}`)
        return { status: added ? 201 : 200 }
      }),
      action('leave', { schema: Type.Object({ room: Type.Optional(Type.String()) }) }, (ctx, { room }) => {
        return { data: { removed: ctx.unsubscribe(room === undefined ? { requestId: ctx.requestId } : { groups: `room:${room}` }) } }
      }),
      action('say', { schema: Type.Object({ room: Type.String(), text: Type.String() }) }, (ctx, { room, text }) => {
        app.wsRest.publish(`room:${room}`, { text }, { action: 'message' })
        return {}
      })
    ]
  })
}

t.test('app.wsRest.publish reaches the sockets subscribed to the group, with their subscription\'s request_id', async (t) => {
  const { app, base } = await startApp(t, [Item], chat)
  const alice = await openClient(t, `${base}/chat/`)
  const bob = await openClient(t, `${base}/chat/`)
  t.strictSame(await alice.ask({ action: 'join', request_id: 'a-lobby', room: 'lobby' }),
    { errors: [], data: null, action: 'join', response_status: 201, request_id: 'a-lobby' })
  await bob.ask({ action: 'join', request_id: 'b-lobby', room: 'lobby' })
  await bob.ask({ action: 'join', request_id: 'b-other', room: 'other' })
  t.equal((await bob.ask({ action: 'join', request_id: 'b-other', room: 'other' })).response_status, 200,
    'the same group and request_id again: nothing added')

  app.wsRest.publish('room:lobby', { text: 'hello' }, { action: 'message' })
  t.strictSame(await alice.next(), { errors: [], data: { text: 'hello' }, action: 'message', response_status: 200, request_id: 'a-lobby' })
  t.strictSame(await bob.next(), { errors: [], data: { text: 'hello' }, action: 'message', response_status: 200, request_id: 'b-lobby' })

  app.wsRest.publish('room:other', { text: 'psst' }, { action: 'whisper', status: 201 })
  t.strictSame(await bob.next(), { errors: [], data: { text: 'psst' }, action: 'whisper', response_status: 201, request_id: 'b-other' },
    'exactly one event: the repeated join did not duplicate it')
  app.wsRest.publish('room:lobby', 'plain', {})
  t.strictSame((await alice.next()).action, 'event', 'default action "event"')
  t.strictSame((await bob.next()).data, 'plain')

  // A socket's own action can publish; it reaches itself too.
  alice.send({ action: 'say', request_id: 'say', room: 'lobby', text: 'me' })
  const frames = await alice.take(2)
  t.strictSame(frames.map((f) => f.request_id).sort(), ['a-lobby', 'say'])
  t.equal((await bob.next()).data.text, 'me')
})

t.test('ctx.unsubscribe by group or by request_id; the socket\'s other subscriptions keep working', async (t) => {
  const { app, base } = await startApp(t, [Item], chat)
  const client = await openClient(t, `${base}/chat/`)
  await client.ask({ action: 'join', request_id: 'one', room: 'a' })
  await client.ask({ action: 'join', request_id: 'two', room: 'b' })
  await client.ask({ action: 'join', request_id: 'two', room: 'c' })
  t.strictSame((await client.ask({ action: 'leave', request_id: 'x', room: 'a' })).data, { removed: 1 })
  t.strictSame((await client.ask({ action: 'leave', request_id: 'two' })).data, { removed: 2 })
  app.wsRest.publish('room:a', 1)
  app.wsRest.publish('room:b', 2)
  app.wsRest.publish('room:c', 3)
  t.strictSame((await client.ask({ action: 'join', request_id: 'three', room: 'd' })).response_status, 201,
    'no event arrived before this reply: every subscription is gone')
  app.wsRest.publish('room:d', 4)
  t.strictSame((await client.next()).data, 4)
})

t.test('publish checks its input: data must be JSON, group a string', async (t) => {
  const { app } = await startApp(t, [Item], chat)
  t.match(thrownBy(() => app.wsRest.publish('g', { n: 1n })), { name: 'TypeError' }, 'a BigInt fails the caller, never a subscriber')
  t.match(thrownBy(() => app.wsRest.publish(5 as unknown as string, {})), { code: 'FST_WSREST_INVALID_OPTION' })
})

t.test('subscribe_many / unsubscribe_many (the DCRF pattern) with the built-in per-row groups', async (t) => {
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.observe(Item)
    app.wsRest.route('/items/', {
      ...itemModel,
      actions: [
        ...[mixins.create(), mixins.patch()],
        action('subscribe_many', { schema: Type.Object({ pks: Type.Array(Type.Integer(), { maxItems: 100 }) }) }, async (ctx, { pks }) => {
          await ctx.subscribe(pks.map((pk) => groups.instance(Item, pk)))
          return { status: 201 }
        }),
        action('unsubscribe_many', {}, (ctx: ActionContext) => {
          ctx.unsubscribe({ requestId: ctx.requestId })
          return { status: 204 }
        })
      ]
    })
  })
  const [one, two, three] = await seedItems(orm, 'one', 'two', 'three')
  const client = await openClient(t, `${base}/items/`)
  t.equal((await client.ask({ action: 'subscribe_many', request_id: 'many', pks: [one, two] })).response_status, 201)
  await renameItem(orm, three, 'three-1')
  await renameItem(orm, two, 'two-1')
  t.strictSame(await client.next(), { errors: [], data: { id: two, name: 'two-1' }, action: 'update', response_status: 200, request_id: 'many' },
    'row three (not subscribed) sent nothing; row two arrives shaped by the route\'s response schema')
  const em = orm.em.fork()
  em.remove(await em.findOneOrFail(Item, one))
  await em.flush()
  t.strictSame(await client.next(), { errors: [], data: { pk: one }, action: 'delete', response_status: 204, request_id: 'many' })

  t.equal((await client.ask({ action: 'unsubscribe_many', request_id: 'many' })).response_status, 204)
  await renameItem(orm, two, 'two-2')
  t.equal((await client.request('create', { data: { name: 'after' } })).response_status, 201, 'no event before this reply')
})

t.test('app.wsRest.observe(entity, {groups}): changes also go to the app\'s own groups (DCRF\'s groups_for_signal)', async (t) => {
  const { orm, base } = await startApp(t, [Item], (app) => {
    // Group items by their first letter; a change reaches the groups of the row before and after it.
    const byLetter = (name: unknown): string => `letter:${String(name).slice(0, 1)}`
    app.wsRest.observe(Item, { groups: (change) => new Set([change.before, change.after].filter((r) => r !== null).map((r) => byLetter(r?.name))) })
    app.wsRest.route('/items/', {
      ...itemModel,
      actions: [
        action('watch_letter', { schema: Type.Object({ letter: Type.String({ minLength: 1, maxLength: 1 }) }) }, async (ctx, { letter }) => {
          await ctx.subscribe(`letter:${letter}`)
          return { status: 201 }
        })
      ]
    })
  })
  const client = await openClient(t, `${base}/items/`)
  await client.ask({ action: 'watch_letter', request_id: 'a', letter: 'a' })
  const [bee] = await seedItems(orm, 'bee')
  const [ant] = await seedItems(orm, 'ant')
  t.strictSame(await client.next(), { errors: [], data: { id: ant, name: 'ant' }, action: 'create', response_status: 201, request_id: 'a' },
    '"bee" went to letter:b only')
  await renameItem(orm, bee, 'apis')
  t.strictSame(await client.next(), { errors: [], data: { id: bee, name: 'apis' }, action: 'create', response_status: 201, request_id: 'a' },
    'an update that brings the row into the group arrives as a create, as DCRF\'s observer sends it')
  await renameItem(orm, bee, 'aphid')
  t.strictSame(await client.next(), { errors: [], data: { id: bee, name: 'aphid' }, action: 'update', response_status: 200, request_id: 'a' },
    'a change of a row staying in the group: update, shaped')
  await renameItem(orm, ant, 'bug')
  t.strictSame(await client.next(), { errors: [], data: { pk: ant }, action: 'delete', response_status: 204, request_id: 'a' },
    'an update that takes the row out of the group: delete')
  const em = orm.em.fork()
  em.remove(await em.findOneOrFail(Item, bee))
  await em.flush()
  t.strictSame(await client.next(), { errors: [], data: { pk: bee }, action: 'delete', response_status: 204, request_id: 'a' })
})

t.test('observe refuses what is not an entity; a route without a model still gets custom events', async (t) => {
  const { app } = await startApp(t, [Item], chat)
  t.match(thrownBy(() => app.wsRest.observe({} as never)), { code: 'FST_WSREST_INVALID_OPTION' })
  t.match(thrownBy(() => app.wsRest.observe(Item, { groups: 5 as never })), { code: 'FST_WSREST_INVALID_OPTION' })
})

t.test('a per-subscriber handler (DCRF\'s observer handler) decides what each subscriber gets, from the event rendered once', async (t) => {
  const seen: unknown[] = []
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.observe(Item, { groups: () => ['items'] })
    app.wsRest.route('/items/', {
      ...itemModel,
      actions: [
        action('watch', async (ctx: ActionContext) => {
          const mine = String(ctx.request.headers['x-user'])
          await ctx.subscribe('items', {
            // Only rows named after this subscriber, in a frame of the app's own making.
            handler (event, sub) {
              seen.push(event.change?.before)
              if (String((event.data as { name?: string }).name).startsWith(mine)) {
                sub.reply({ item: event.data, was: event.change?.change }, 200, { action: 'mine' })
              }
            }
          })
          return { status: 201 }
        })
      ]
    })
  })
  const ann = await openClient(t, `${base}/items/`, { headers: { 'x-user': 'ann' } })
  const bob = await openClient(t, `${base}/items/`, { headers: { 'x-user': 'bob' } })
  await ann.ask({ action: 'watch', request_id: 'w' })
  await bob.ask({ action: 'watch', request_id: 'w' })
  const [bobs] = await seedItems(orm, 'bob-1')
  const [anns] = await seedItems(orm, 'ann-1')
  t.strictSame(await ann.next(), { errors: [], data: { item: { id: anns, name: 'ann-1' }, was: 'create' }, action: 'mine', response_status: 200, request_id: 'w' },
    'ann got only her row, shaped by the route and wrapped by her handler')
  t.strictSame((await bob.next()).data, { item: { id: bobs, name: 'bob-1' }, was: 'create' })
  await renameItem(orm, anns, 'ann-2')
  t.strictSame((await ann.next()).data, { item: { id: anns, name: 'ann-2' }, was: 'update' })
  t.ok(seen.some((row) => (row as { name?: string } | null)?.name === 'ann-1'), 'the handler sees the row before the change too')
})

t.test('an observer serializer (DCRF\'s @model_observer.serializer) shapes its groups\' events once, by schema or function', async (t) => {
  const { orm, base } = await startApp(t, [Item], (app) => {
    app.wsRest.observe(Item, { groups: () => ['names'], serializer: Type.Object({ name: Type.String() }) })
    app.wsRest.observe(Item, { groups: () => ['upper'], serializer: (row) => ({ shout: String(row.name).toUpperCase() }) })
    app.wsRest.route('/items/', {
      ...itemModel,
      actions: [action('watch', { schema: Type.Object({ group: Type.String() }) }, async (ctx, { group }) => {
        await ctx.subscribe(group)
        return { status: 201 }
      })]
    })
  })
  const names = await openClient(t, `${base}/items/`)
  const upper = await openClient(t, `${base}/items/`)
  await names.ask({ action: 'watch', request_id: 'n', group: 'names' })
  await upper.ask({ action: 'watch', request_id: 'u', group: 'upper' })
  const [id] = await seedItems(orm, 'ann')
  t.strictSame(await names.next(), { errors: [], data: { name: 'ann' }, action: 'create', response_status: 201, request_id: 'n' }, 'the schema\'s shape, not the route\'s')
  t.strictSame((await upper.next()).data, { shout: 'ANN' }, 'a function of the row')
  const em = orm.em.fork()
  em.remove(await em.findOneOrFail(Item, id))
  await em.flush()
  t.strictSame((await names.next()).data, { pk: id }, 'a delete still carries {pk}')
})
