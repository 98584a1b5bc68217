/**
 * The benchmark's baseline: the same work as the plugin server, written by hand the obvious
 * way with @fastify/websocket and MikroORM 6. Per message: JSON.parse, switch on the
 * action, a forked EntityManager, findOne / findAndCount / create + flush / assign + flush /
 * remove + flush, the public fields picked by hand, the 5-key DCRF reply. No tricks, no
 * input validation beyond picking the known fields, no subscriptions.
 *
 * - `/ws/`: create, retrieve, update, patch, delete, list (limit 20, offset 0, by id).
 * - `/ws/docs/`: list of every doc (20) with its owner and labels, as a careful app writes
 *   it: one `find` populating both relations (MikroORM loads each with one query for the
 *   whole list, not one per row), then `{id, title, owner: {id, name}, labels: [{id, name}]}`
 *   picked by hand, labels ordered by id (the plugin's order, so both send the same rows).
 * - `/ws/echo/`: parse the frame and answer a constant object: the floor a WebSocket
 *   handler costs without any framework or database (see the overhead measurement).
 * - `/ws/users/`, `/ws/users-scrypt/`: sign-up create: hash `password1` (the same function as
 *   the plugin's hook), `em.create`, flush, reply `{id, username, email}`.
 * - `/ws/tasks/`: list (limit 20, offset 0, by id) of the owner given in the upgrade URL's
 *   `?owner=N`, read once per connection.
 *
 * Run: `node --expose-gc --import tsx bench/server-baseline.ts` (settings: server-common.ts).
 */
import websocket, { type WebSocket } from '@fastify/websocket'
import Fastify from 'fastify'
import { Doc, NOOP_DATA, Note, openOrm, type DocView, type NoteView } from './entity.js'
import { BenchUser, signUpRow, Task, type HashKind, type SignUp, type TaskView } from './entity-hooked.js'
import { benchRoutes, scopeOf, settings, start } from './server-common.js'

const config = settings()
const orm = await openOrm(config.db)
const app = Fastify({ logger: false })
app.addHook('onClose', async () => { await orm.close() })
await app.register(websocket)

interface Message {
  action?: string
  request_id?: unknown
  pk?: number
  limit?: number
  offset?: number
  data?: { title?: string, body?: string, done?: boolean }
}

function publicView (note: Note): NoteView {
  return { id: note.id, title: note.title, body: note.body, done: note.done }
}

function docView (doc: Doc): DocView {
  const owner = doc.owner
  const labels = doc.labels.getItems().map((label) => ({ id: label.id, name: label.name }))
  labels.sort((a, b) => a.id - b.id)
  return { id: doc.id, title: doc.title, owner: { id: owner.id, name: owner.name }, labels }
}

function reply (socket: WebSocket, message: Message, status: number, data: unknown, errors: unknown[] = []): void {
  socket.send(JSON.stringify({
    errors,
    data,
    action: message.action ?? null,
    response_status: status,
    request_id: message.request_id ?? null
  }))
}

/** The message in `raw`, or undefined once the 400 for invalid JSON is sent. */
function parse (socket: WebSocket, raw: string): Message | undefined {
  try {
    return JSON.parse(raw) as Message
  } catch {
    reply(socket, {}, 400, null, ['Invalid JSON.'])
    return undefined
  }
}

async function handle (socket: WebSocket, raw: string): Promise<void> {
  const message = parse(socket, raw)
  if (message === undefined) return
  const em = orm.em.fork()
  try {
    switch (message.action) {
      case 'retrieve': {
        const note = await em.findOne(Note, { id: message.pk })
        if (note === null) return reply(socket, message, 404, null, ['Not found'])
        return reply(socket, message, 200, publicView(note))
      }
      case 'list': {
        const limit = message.limit ?? 20
        const offset = message.offset ?? 0
        const [notes, count] = await em.findAndCount(Note, {}, { limit, offset, orderBy: { id: 'asc' } })
        return reply(socket, message, 200, { count, results: notes.map(publicView), limit, offset })
      }
      case 'create': {
        const { title = '', body = '', done = false } = message.data ?? {}
        const note = em.create(Note, { title, body, done })
        await em.persist(note).flush()
        return reply(socket, message, 201, publicView(note))
      }
      case 'update':
      case 'patch': {
        const note = await em.findOne(Note, { id: message.pk })
        if (note === null) return reply(socket, message, 404, null, ['Not found'])
        const { title, body, done } = message.data ?? {}
        em.assign(note, {
          ...(title === undefined ? {} : { title }),
          ...(body === undefined ? {} : { body }),
          ...(done === undefined ? {} : { done })
        })
        await em.flush()
        return reply(socket, message, 200, publicView(note))
      }
      case 'delete': {
        const note = await em.findOne(Note, { id: message.pk })
        if (note === null) return reply(socket, message, 404, null, ['Not found'])
        await em.remove(note).flush()
        return reply(socket, message, 204, null)
      }
      default:
        return reply(socket, message, 405, null, [`Method "${String(message.action)}" not allowed.`])
    }
  } catch {
    reply(socket, message, 500, null, ['Internal server error'])
  }
}

app.get('/ws/', { websocket: true }, (socket) => {
  socket.on('message', (raw) => { void handle(socket, raw.toString()) })
})

async function handleDocs (socket: WebSocket, raw: string): Promise<void> {
  const message = parse(socket, raw)
  if (message === undefined) return
  if (message.action !== 'list') return reply(socket, message, 405, null, [`Method "${String(message.action)}" not allowed.`])
  try {
    const docs = await orm.em.fork().find(Doc, {}, { populate: ['owner', 'labels'], orderBy: { id: 'asc' } })
    reply(socket, message, 200, docs.map(docView))
  } catch {
    reply(socket, message, 500, null, ['Internal server error'])
  }
}

app.get('/ws/docs/', { websocket: true }, (socket) => {
  socket.on('message', (raw) => { void handleDocs(socket, raw.toString()) })
})

app.get('/ws/echo/', { websocket: true }, (socket) => {
  socket.on('message', (raw) => {
    const message = parse(socket, raw.toString())
    if (message !== undefined) reply(socket, message, 200, NOOP_DATA)
  })
})

async function handleSignUp (socket: WebSocket, raw: string, hash: HashKind): Promise<void> {
  const message = parse(socket, raw)
  if (message === undefined) return
  if (message.action !== 'create') return reply(socket, message, 405, null, [`Method "${String(message.action)}" not allowed.`])
  try {
    const { username = '', email = '', password1 = '' } = (message.data ?? {}) as Partial<SignUp>
    const em = orm.em.fork()
    const user = em.create(BenchUser, await signUpRow({ username, email, password1 }, hash))
    await em.persist(user).flush()
    reply(socket, message, 201, { id: user.id, username: user.username, email: user.email })
  } catch {
    reply(socket, message, 500, null, ['Internal server error'])
  }
}

for (const [path, hash] of [['/ws/users/', 'sha256'], ['/ws/users-scrypt/', 'scrypt']] as Array<[string, HashKind]>) {
  app.get(path, { websocket: true }, (socket) => {
    socket.on('message', (raw) => { void handleSignUp(socket, raw.toString(), hash) })
  })
}

function taskView (task: Task): TaskView {
  return { id: task.id, owner: task.owner, title: task.title, done: task.done }
}

async function handleTasks (socket: WebSocket, raw: string, owner: number): Promise<void> {
  const message = parse(socket, raw)
  if (message === undefined) return
  if (message.action !== 'list') return reply(socket, message, 405, null, [`Method "${String(message.action)}" not allowed.`])
  try {
    const limit = message.limit ?? 20
    const offset = message.offset ?? 0
    const [tasks, count] = await orm.em.fork().findAndCount(Task, { owner }, { limit, offset, orderBy: { id: 'asc' } })
    reply(socket, message, 200, { count, results: tasks.map(taskView), limit, offset })
  } catch {
    reply(socket, message, 500, null, ['Internal server error'])
  }
}

app.get('/ws/tasks/', { websocket: true }, (socket, request) => {
  const owner = scopeOf(request.query)
  socket.on('message', (raw) => { void handleTasks(socket, raw.toString(), owner) })
})

benchRoutes(app, orm)
await start(app, orm, config)
