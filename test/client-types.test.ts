/**
 * The typed client: `createClient<typeof users>` infers every action's arguments and reply
 * data from the example's route definition (an `import type` only), at compile time — the
 * `@ts-expect-error` lines below are the type-level test: `npm test` runs `tsc` first, and
 * a line that stops being an error (a wrong field accepted) fails it. At run time the
 * same calls go to the example server.
 */
import t from 'tap'
import WebSocket from 'ws'
import { createClient, WsRestError, type ModelEvent } from '../client/index.js'
import type { users } from '../example/app.js'
import { within } from './helpers/async.js'
import { startExample } from './helpers/server.js'

type UserPublic = { id: number, username: string, email: string }

t.test('typed helpers per action: arguments and results from the route definition', async (t) => {
  const { base } = await startExample(t)
  const client = createClient<typeof users>(`${base}/ws/`, { WebSocket })
  t.teardown(async () => await client.close())

  const ann = await client.actions.create({ data: { username: 'ann', password1: 'pw', password2: 'pw' } })
  const id: number = ann.id
  const name: string = ann.username
  t.same(ann, { id, username: name, email: '' }, 'the reply shaped by the response schema')
  // @ts-expect-error the password never leaves the server: the response schema has no such field
  t.equal(ann.password, undefined)

  const all: UserPublic[] = await client.request('list', { filter: { username: 'ann' } })
  t.same(all.map((u) => u.id), [id])
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
  t.same(events.map((e) => e.action), ['update', 'delete'])
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
