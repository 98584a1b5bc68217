/**
 * Start servers for tests: the example app, or a bare app with the plugin and whatever
 * routes a test declares, each on an ephemeral port with in-memory SQLite, closed in teardown.
 */
import { MikroORM } from '@mikro-orm/sqlite'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import wsRest, { type WsRestOptions } from '../../index.js'
import { buildApp } from '../../example/app.js'

/** What a test needs to reach a running server. */
export interface Running {
  app: FastifyInstance
  orm: MikroORM
  /** `ws://127.0.0.1:PORT` */
  base: string
}

interface Teardown { teardown: (fn: () => unknown) => void }

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return `ws://127.0.0.1:${port}`
}

/** The example server on a fresh in-memory database. */
export async function startExample (t: Teardown): Promise<Running> {
  const { app, orm } = await buildApp({ db: ':memory:' })
  t.teardown(async () => await app.close())
  return { app, orm, base: await listen(app) }
}

/**
 * A bare app with the plugin registered on `entities` (in-memory SQLite, schema created);
 * `declare` adds routes before it listens.
 */
export async function startApp (
  t: Teardown,
  entities: any[],
  declare: (app: FastifyInstance, orm: MikroORM) => void | Promise<void>,
  options: Omit<WsRestOptions, 'orm'> = {}
): Promise<Running> {
  const orm = await MikroORM.init({ dbName: ':memory:', entities, debug: false, allowGlobalContext: false })
  await orm.schema.updateSchema()
  const app = Fastify({ logger: false })
  app.addHook('onClose', async () => { await orm.close() })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { ...options, orm })
  await declare(app, orm)
  return { app, orm, base: await listen(app) }
}
