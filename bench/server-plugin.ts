/**
 * The benchmark's plugin server: fastify-ws-rest through its public API only, so whatever
 * lib/ does shows up in the numbers.
 *
 * - `/ws/`: create, retrieve, update, patch, delete, paginated list (first page of 20),
 *   subscribe_instance (for the fan-out test).
 * - `/ws/docs/`: list (all 20 docs) with each doc's owner and labels nested as objects, the
 *   `nested` op: the populate hints come from the response schema, as an app declares them.
 * - `/ws/noop/`: one custom action, `noop`, that touches no database and answers a constant
 *   object: the plugin's own per-message cost (see the overhead measurement in run.ts).
 * - `/ws/users/`, `/ws/users-scrypt/`: a sign-up create whose `prepareCreate` hook maps
 *   `password1` to a hashed `password` (SHA-256, or scrypt): `create_hooked`, `create_scrypt`.
 * - `/ws/tasks/`: a paginated list scoped by `getQueryset` to the owner in the upgrade URL
 *   (`?owner=3`): `list_scoped`.
 *
 * Run: `node --expose-gc --import tsx bench/server-plugin.ts` (settings: server-common.ts).
 */
import Fastify from 'fastify'
import wsRest, { action, mixins, RedisLayer } from '../index.js'
import { Doc, DocNested, NOOP_DATA, Note, NoteCreate, NotePublic, NoteUpdate, openOrm } from './entity.js'
import { BenchUser, signUpRow, Task, TaskPublic, UserCreate, UserPublic, type HashKind } from './entity-hooked.js'
import { benchRoutes, scopeOf, settings, start } from './server-common.js'

const config = settings()
const orm = await openOrm(config.db)
const app = Fastify({ logger: false })
app.addHook('onClose', async () => { await orm.close() })

await app.register(wsRest, {
  orm,
  // The fan-out test opens up to 50,000 subscribed sockets on one instance, 20,000 or more
  // from each loopback address: far past the per-process, per-address and per-client defaults.
  maxConnections: 200_000,
  maxConnectionsPerIp: 200_000,
  maxSubscriptionsPerClient: 1_000_000,
  // A load generator pipelines far more than a person's 1,000 actions per second on one socket:
  // the bench measures throughput, not the throttle (whose 429s would be counted as fast replies).
  maxActionsPerSecond: 10_000_000,
  ...(config.layer === 'redis' ? { broadcast: new RedisLayer({ url: config.redisUrl, prefix: config.redisPrefix }) } : {})
})

app.wsRest.route('/ws/', {
  entity: Note,
  schema: { create: NoteCreate, update: NoteUpdate, response: NotePublic },
  actions: [
    mixins.create(), mixins.retrieve(), mixins.update(), mixins.patch(), mixins.delete(),
    mixins.paginatedList({ defaultLimit: 20 }),
    mixins.subscribeInstance()
  ]
})

app.wsRest.route('/ws/docs/', {
  entity: Doc,
  schema: { response: DocNested },
  actions: [mixins.list()]
})

app.wsRest.route('/ws/noop/', {
  actions: [action('noop', () => ({ data: NOOP_DATA }))]
})

// Sign-up: validate {username, email, password1}, then the hook turns password1 into a
// hashed password, once per request and before any transaction (group commit stays on).
const signUpRoutes: Array<[string, HashKind]> = [['/ws/users/', 'sha256'], ['/ws/users-scrypt/', 'scrypt']]
for (const [path, hash] of signUpRoutes) {
  app.wsRest.route(path, {
    entity: BenchUser,
    schema: { create: UserCreate, response: UserPublic },
    prepareCreate: async (_ctx, data) => await signUpRow(data, hash),
    actions: [mixins.create()]
  })
}

// Each connection sees its owner's tasks only: sockets of the same owner share reads (a plain condition).
app.wsRest.route('/ws/tasks/', {
  entity: Task,
  schema: { response: TaskPublic },
  getQueryset: (ctx) => ({ owner: scopeOf(ctx.request.query) }),
  actions: [mixins.paginatedList({ defaultLimit: 20 })]
})

benchRoutes(app, orm)
await start(app, orm, config)
