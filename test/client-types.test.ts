/**
 * The typed client: `createClient<typeof users>` infers every action's arguments and reply
 * data from the example's route definition (an `import type` only), at compile time — the
 * `@ts-expect-error` lines below are the type-level test: `npm test` runs `tsc` first, and
 * a line that stops being an error (a wrong field accepted) fails it. At run time the
 * same calls go to the example server.
 */
import { Type } from '@sinclair/typebox'
import t from 'tap'
import WebSocket from 'ws'
import { createClient, WsRestError, type ClientFor, type ModelEvent } from '../client/index.js'
import type { posts, users } from '../example/app.js'
import { action, defineRoute, mixins } from '../index.js'
import { Item } from './helpers/item.js'
import { within } from './helpers/async.js'
import { startExample } from './helpers/server.js'

type UserPublic = { id: number, username: string, email: string }

/** Exact type equality (optionality and readonly count). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function assertEqual<T extends true> (): void {}

/**
 * Routes declared for their types only (never served): a `Type.Date()` in a response,
 * and a custom subscribing action.
 */
const dated = defineRoute({
  entity: Item,
  schema: { response: Type.Object({ id: Type.Integer(), at: Type.Date(), log: Type.Array(Type.Object({ when: Type.Date() })), maybe: Type.Optional(Type.Date()) }) },
  actions: [
    mixins.retrieve(), mixins.list(), mixins.subscribeInstance(),
    action('watch', { schema: Type.Object({ room: Type.String() }) }, async () => ({ data: { since: new Date() } }))
  ]
})

/** A renamed and a computed field (route option `fields`), typed by the response schema. */
const renamed = defineRoute({
  entity: Item,
  schema: { response: Type.Object({ id: Type.Integer(), pk: Type.Integer(), label: Type.String() }) },
  fields: { pk: { source: 'id' }, label: { get: (item) => `#${item.name}` } },
  actions: [mixins.retrieve(), mixins.subscribeInstance()]
})

t.test('typed helpers per action: arguments and results from the route definition', async (t) => {
  const { base } = await startExample(t)
  const client = createClient<typeof users>(`${base}/ws/`, { WebSocket })
  t.teardown(async () => await client.close())

  const ann = await client.actions.create({ data: { username: 'ann', password1: 'pw', password2: 'pw' } })
  const id: number = ann.id
  const name: string = ann.username
  t.strictSame(ann, { id, username: name, email: '' }, 'the reply shaped by the response schema')
  // @ts-expect-error the password never leaves the server: the response schema has no such field
  t.equal(ann.password, undefined)

  const all: UserPublic[] = await client.request('list', { filter: { username: 'ann' } })
  t.strictSame(all.map((u) => u.id), [id])
  const ordered = await client.request('list', { ordering: ['-username', 'id'] })
  t.strictSame(ordered.map((u) => u.id), [id], 'an array ordering is accepted by the server too')
  const patched = await client.actions.patch({ pk: id, data: { email: 'ann@example.com' } })
  t.equal(patched.email, 'ann@example.com')
  const deleted: null = await client.actions.delete({ pk: id })
  t.equal(deleted, null)

  // What the compiler refuses (never run: each would also be refused by the server).
  void (async () => {
    // @ts-expect-error a field the create schema does not have
    await client.actions.create({ data: { usrname: 'x', password1: 'pw', password2: 'pw' } })
    // @ts-expect-error a required field missing
    await client.actions.create({ data: { username: 'x', password1: 'pw' } })
    // @ts-expect-error a wrong type
    await client.actions.update({ pk: 1, data: { username: 1, email: '' } })
    // @ts-expect-error patch needs the lookup argument
    await client.actions.patch({ data: { email: 'x' } })
    // @ts-expect-error no such action on the route
    await client.request('rename', {})
    // @ts-expect-error no such helper either
    await client.actions.rename()

    // Optimistic concurrency: the server takes `version` on update, patch and delete.
    await client.actions.patch({ pk: 1, version: 3, data: { email: 'x' } })
    await client.actions.update({ pk: 1, version: '2024-01-01T00:00:00.000Z', data: { username: 'x', email: '' } })
    await client.actions.delete({ pk: 1, version: 3 })
    // @ts-expect-error a version is a number or a string
    await client.actions.delete({ pk: 1, version: true })
    // @ts-expect-error retrieve takes no version
    await client.actions.retrieve({ pk: 1, version: 3 })

    // Ordering: one field or a list of 1 to 8.
    await client.request('list', { ordering: '-username' })
    await client.request('list', { ordering: ['-username', 'id'] })
    // @ts-expect-error an empty list is refused (400)
    await client.request('list', { ordering: [] })
    // @ts-expect-error more than 8 is refused (400)
    await client.request('list', { ordering: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] })

    // Filter values: a scalar or an object of operators.
    await client.request('list', { filter: { id: { $in: [1, 2] }, username: { $contains: 'an' }, email: null } })
    // @ts-expect-error no such operator
    await client.request('list', { filter: { id: { $like: '%' } } })
    // @ts-expect-error $in takes a list
    await client.request('list', { filter: { id: { $in: 1 } } })
  })

  // filter keys from the route's filterFields, which defineRoute keeps literal.
  void (async (typed: ClientFor<typeof posts>) => {
    await typed.request('list', { filter: { id: 1, author: { $in: [1, 2] }, 'author.username': { $contains: 'a' } } })
    // @ts-expect-error not one of the route's filterFields
    await typed.request('list', { filter: { body: 'x' } })
    // @ts-expect-error not one of the route's filterFields (subscribe_list too)
    await typed.subscribe('subscribe_list', { filter: { body: 'x' } }, () => {})
  })

  // Dates arrive as ISO strings: the client's types say string, not Date.
  void (async (typed: ClientFor<typeof dated>) => {
    const row = await typed.actions.retrieve({ pk: 1 })
    assertEqual<Equal<typeof row, { id: number, at: string, log: Array<{ when: string }>, maybe?: string }>>()
    const rows = await typed.request('list')
    assertEqual<Equal<typeof rows[number]['at'], string>>()
    await typed.subscribe('subscribe_instance', { pk: 1 }, (event) => {
      if (event.action !== 'delete') assertEqual<Equal<typeof event.data.at, string>>()
    })
    const watched = await typed.request('watch', { room: 'a' })
    assertEqual<Equal<typeof watched, { since: string }>>()
    // A custom subscribing action names its unsubscribe action (or null: none).
    await typed.subscribe('watch', { room: 'a' }, () => {}, { unsubscribeAction: null })
    // @ts-expect-error a custom subscribing action needs unsubscribeAction
    await typed.subscribe('watch', { room: 'a' }, () => {})
  })

  // Relations and computed fields: nested objects and arrays as the response schema declares them.
  void (async (typed: ClientFor<typeof posts>, computed: ClientFor<typeof renamed>) => {
    const post = await typed.actions.retrieve({ pk: 1 })
    assertEqual<Equal<typeof post, { id: number, title: string, body: string, author: { id: number, username: string }, tags: Array<{ id: number, name: string }> }>>()
    // @ts-expect-error the author's email is never in a post's reply
    void post.author.email
    await typed.actions.create({ data: { title: 't', author: 1, tags: [1, 2] } })
    // @ts-expect-error tags are given by key
    await typed.actions.create({ data: { title: 't', author: 1, tags: [{ id: 1 }] } })
    const row = await computed.actions.retrieve({ pk: 1 })
    assertEqual<Equal<typeof row, { id: number, pk: number, label: string }>>()
    await computed.subscribe('subscribe_instance', { pk: 1 }, (event) => {
      if (event.action !== 'delete') assertEqual<Equal<typeof event.data.label, string>>()
    })
  })

  await t.rejects(client.actions.retrieve({ pk: 999_999 }), WsRestError, 'errors reject as at run time')
})

t.test('typed subscriptions: events are the route\'s objects, or {pk} for deletes', async (t) => {
  const { base } = await startExample(t)
  const client = createClient<typeof users>(`${base}/ws/`, { WebSocket })
  t.teardown(async () => await client.close())
  const bob = await client.actions.create({ data: { username: 'bob', password1: 'pw', password2: 'pw' } })

  const events: Array<ModelEvent<UserPublic>> = []
  let arrived: () => void = () => {}
  const two = new Promise<void>((resolve) => { arrived = resolve })
  await client.subscribe('subscribe_instance', { pk: bob.id }, (event) => {
    if (event.action === 'delete') {
      const pk: string | number = event.data.pk
      t.equal(pk, bob.id)
    } else {
      const username: string = event.data.username
      t.equal(username, 'bob')
    }
    events.push(event)
    if (events.length === 2) arrived()
  })
  await client.actions.patch({ pk: bob.id, data: { email: 'bob@example.com' } })
  await client.actions.delete({ pk: bob.id })
  await within(two, 'the update and the delete')
  t.strictSame(events.map((e) => e.action), ['update', 'delete'])
})

t.test('a multiplexed client is typed per stream', async (t) => {
  const { base } = await startExample(t)
  const client = createClient<{ users: typeof users }>(`${base}/ws/multiplex/`, { WebSocket, multiplex: true })
  t.teardown(async () => await client.close())
  const stream = client.stream('users')
  const cat = await stream.actions.create({ data: { username: 'cat', password1: 'pw', password2: 'pw' } })
  const found = await stream.request('retrieve', { pk: cat.id })
  t.equal(found.username, 'cat')
  void (() => {
    // @ts-expect-error the example's multiplexed socket has no stream "orders"
    client.stream('orders')
  })
})
