/**
 * The example's relations, as docs/example.md states them: `/ws/tags/` and `/ws/posts/`
 * over real sockets — the nested post shape in every reply and event, related ids in
 * input with DRF's texts, filters, ordering and search across the relations, filtered
 * subscriptions following a post's author, and the cascades of deleting a user or a tag.
 */
import t from 'tap'
import type { Teardown } from './helpers/async.js'
import { openClient, type TestClient } from './helpers/client.js'
import { startExample } from './helpers/server.js'

interface World {
  base: string
  posts: TestClient
  users: { ann: number, bob: number }
  tags: { red: number, green: number, blue: number }
}

/** The example with users ann and bob and tags red, green, blue. */
async function world (t: Teardown): Promise<World> {
  const { base } = await startExample(t)
  const userClient = await openClient(t, `${base}/ws/`)
  const user = async (username: string): Promise<number> =>
    (await userClient.request('create', { data: { username, email: `${username}@private.example`, password1: 'pw', password2: 'pw' } })).data.id
  const tagClient = await openClient(t, `${base}/ws/tags/`)
  const tag = async (name: string): Promise<number> => {
    const reply = await tagClient.request('create', { data: { name } })
    if (reply.response_status !== 201) throw new Error(JSON.stringify(reply))
    return reply.data.id
  }
  return {
    base,
    posts: await openClient(t, `${base}/ws/posts/`),
    users: { ann: await user('ann'), bob: await user('bob') },
    tags: { red: await tag('red'), green: await tag('green'), blue: await tag('blue') }
  }
}

async function createPost (client: TestClient, data: Record<string, unknown>): Promise<any> {
  const reply = await client.request('create', { data })
  if (reply.response_status !== 201) throw new Error(JSON.stringify(reply))
  return reply.data
}

t.test('a post in every reply: {id, title, body, author: {id, username}, tags: [{id, name}] by id}, nothing else', async (t) => {
  const { posts, users, tags } = await world(t)
  const post = await createPost(posts, { title: 'Hello', author: users.ann, tags: [tags.blue, tags.red] })
  const expected = {
    id: post.id,
    title: 'Hello',
    body: '',
    author: { id: users.ann, username: 'ann' },
    tags: [{ id: tags.red, name: 'red' }, { id: tags.blue, name: 'blue' }]
  }
  t.strictSame(post, expected)
  t.strictSame((await posts.request('retrieve', { pk: post.id })).data, expected)
  t.strictSame((await posts.request('list')).data, [expected])
  t.notOk(JSON.stringify(post).includes('private.example'), 'never the author\'s email')

  // A full update without body and tags keeps them (DRF: fields that are not required).
  await posts.request('patch', { pk: post.id, data: { body: 'kept' } })
  const updated = await posts.request('update', { pk: post.id, data: { title: 'Hello again', author: users.bob } })
  t.equal(updated.response_status, 200)
  t.strictSame(updated.data, { ...expected, title: 'Hello again', body: 'kept', author: { id: users.bob, username: 'bob' } })
})

t.test('related ids in input: DRF\'s texts, one message per field, every failing field at once', async (t) => {
  const { posts, users, tags } = await world(t)
  const errorsOf = async (data: Record<string, unknown>): Promise<unknown> => {
    const reply = await posts.request('create', { data })
    t.equal(reply.response_status, 400, JSON.stringify(data))
    return reply.errors
  }
  t.strictSame(await errorsOf({ title: 'x', author: 999 }), [{ author: ['Invalid pk "999" - object does not exist.'] }])
  t.strictSame(await errorsOf({ title: 'x', author: users.ann, tags: [tags.red, 999] }), [{ tags: ['Invalid pk "999" - object does not exist.'] }])
  t.strictSame(await errorsOf({ title: 'x', author: 'abc' }), [{ author: ['Incorrect type. Expected pk value, received str.'] }])
  t.strictSame(await errorsOf({ title: 'x', author: { id: 1 } }), [{ author: ['Incorrect type. Expected pk value, received dict.'] }])
  t.strictSame(await errorsOf({ title: 'x', author: [1] }), [{ author: ['Incorrect type. Expected pk value, received list.'] }])
  t.strictSame(await errorsOf({ title: '', author: 999, tags: [998] }), [{
    title: ['This field may not be blank.'],
    author: ['Invalid pk "999" - object does not exist.'],
    tags: ['Invalid pk "998" - object does not exist.']
  }])
  const numeric = await posts.request('create', { data: { title: 'numeric', author: String(users.ann) } })
  t.equal(numeric.response_status, 201, 'a numeric string is the id, as in DRF')
  t.strictSame(numeric.data.author, { id: users.ann, username: 'ann' })
  const patched = await posts.request('patch', { pk: numeric.data.id, data: { tags: [999] } })
  t.strictSame([patched.response_status, patched.errors], [400, [{ tags: ['Invalid pk "999" - object does not exist.'] }]])
})

t.test('filters, ordering and search across relations', async (t) => {
  const { posts, users, tags } = await world(t)
  const a1 = await createPost(posts, { title: 'Zeta', author: users.ann, tags: [tags.red] })
  const b1 = await createPost(posts, { title: 'Alpha', body: 'about ann', author: users.bob, tags: [tags.red, tags.green] })
  const a2 = await createPost(posts, { title: 'Mid', author: users.ann, tags: [] })
  const ids = async (args: Record<string, unknown>): Promise<number[]> => {
    const reply = await posts.request('list', args)
    t.equal(reply.response_status, 200, JSON.stringify(args))
    return (reply.data as Array<{ id: number }>).map((p) => p.id)
  }
  t.strictSame(await ids({ filter: { author: users.ann } }), [a1.id, a2.id])
  t.strictSame(await ids({ filter: { author: { $in: [users.bob] } } }), [b1.id])
  t.strictSame(await ids({ filter: { author: { $ne: users.ann } } }), [b1.id])
  t.strictSame(await ids({ filter: { tags: tags.red } }), [a1.id, b1.id])
  t.strictSame(await ids({ filter: { tags: { $in: [tags.red, tags.green] } } }), [a1.id, b1.id], 'a post with both tags once')
  t.strictSame(await ids({ filter: { 'author.username': 'bob' } }), [b1.id])
  t.strictSame(await ids({ ordering: ['-author.username', 'title'] }), [b1.id, a2.id, a1.id])
  t.strictSame(await ids({ ordering: 'title' }), [b1.id, a2.id, a1.id])
  t.strictSame(await ids({ search: 'ANN' }), [a1.id, b1.id, a2.id], 'search over title, body and author.username')
  const bad = await posts.request('list', { filter: { 'author.email': 'x' } })
  t.strictSame([bad.response_status, bad.errors], [400, [{ filter: ['Unknown field "author.email".'] }]], 'only declared paths')
})

t.test('subscribe_list filtered by author: create when a post arrives, update while it stays, delete when it leaves', async (t) => {
  const { posts, users, tags, base } = await world(t)
  const subscriber = await openClient(t, `${base}/ws/posts/`)
  const instance = await openClient(t, `${base}/ws/posts/`)
  t.equal((await subscriber.ask({ action: 'subscribe_list', request_id: 'ann', filter: { author: users.ann } })).response_status, 201)

  const mine = await createPost(posts, { title: 'Mine', author: users.ann })
  const created = await subscriber.next()
  t.strictSame(created, { errors: [], data: mine, action: 'create', response_status: 201, request_id: 'ann' })
  await instance.ask({ action: 'subscribe_instance', request_id: 'i', pk: mine.id })

  const theirs = await createPost(posts, { title: 'Theirs', author: users.bob })
  await posts.request('patch', { pk: theirs.id, data: { author: users.ann } })
  const moved = await subscriber.next()
  t.strictSame([moved.action, moved.data.id, moved.data.author], ['create', theirs.id, { id: users.ann, username: 'ann' }], 'moved to ann: create')

  await posts.request('patch', { pk: mine.id, data: { tags: [tags.green] } })
  const retrieved = (await posts.request('retrieve', { pk: mine.id })).data
  t.strictSame(await subscriber.next(), { errors: [], data: retrieved, action: 'update', response_status: 200, request_id: 'ann' }, 'a tags-only patch: update with the new tags')
  t.strictSame((await instance.next()).data, retrieved, 'the instance event is the retrieve too')

  await posts.request('patch', { pk: theirs.id, data: { author: users.bob } })
  t.strictSame(await subscriber.next(), { errors: [], data: { pk: theirs.id }, action: 'delete', response_status: 204, request_id: 'ann' }, 'moved away: delete')
  await posts.request('delete', { pk: mine.id })
  t.strictSame((await subscriber.next()).data, { pk: mine.id }, 'deleted: delete')
})

t.test('deleting a user deletes their posts, each publishing delete; deleting a tag updates each post that had it', async (t) => {
  const { posts, users, tags, base } = await world(t)
  // Subscribed before the posts exist: a change's event is published after its reply (the
  // writer is answered first), so a subscription made after the reply may still see the create.
  const watcher = await openClient(t, `${base}/ws/posts/`)
  await watcher.ask({ action: 'subscribe_list', request_id: 'green', filter: { tags: tags.green } })
  const p1 = await createPost(posts, { title: 'One', author: users.ann, tags: [tags.red, tags.green] })
  const p2 = await createPost(posts, { title: 'Two', author: users.bob, tags: [tags.green] })
  t.strictSame((await watcher.take(2)).map((e) => [e.action, e.data.id]), [['create', p1.id], ['create', p2.id]], 'both enter the list filtered by the tag')
  t.equal((await watcher.ask({ action: 'subscribe_instance', request_id: 'p1', pk: p1.id })).response_status, 201)

  const tagClient = await openClient(t, `${base}/ws/tags/`)
  t.strictSame((await tagClient.request('create', { data: { name: 'red' } })).errors, [{ name: ['tag with this name already exists.'] }], 'a duplicate tag: 400 keyed name')
  t.equal((await tagClient.request('delete', { pk: tags.green })).response_status, 204)
  const events = await watcher.take(3)
  const instanceEvent = events.find((e) => e.request_id === 'p1')
  t.strictSame(instanceEvent?.data.tags, [{ id: tags.red, name: 'red' }], 'p1 lost the tag: update')
  t.strictSame(events.filter((e) => e.request_id === 'green').map((e) => [e.action, e.data.pk]).sort(),
    [['delete', p1.id], ['delete', p2.id]].sort(), 'the list filtered by the tag: both leave')

  const userClient = await openClient(t, `${base}/ws/`)
  t.equal((await userClient.request('delete', { pk: users.ann })).response_status, 204)
  t.strictSame(await watcher.next(), { errors: [], data: { pk: p1.id }, action: 'delete', response_status: 204, request_id: 'p1' }, 'the post went with its author')
  t.strictSame((await posts.request('list')).data.map((p: { id: number }) => p.id), [p2.id])
})
