/**
 * Start servers for tests: the example app, or a bare app with the plugin and whatever
 * routes a test declares, each on an ephemeral port with a fresh database of its own
 * (in-memory SQLite, or PostgreSQL when DATABASE_URL is set: see database.ts), closed in
 * teardown.
 */
import type { Teardown } from './async.js'
import type { MikroORM } from '@mikro-orm/core'
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import wsRest, { type WsRestOptions } from '../../index.js'
import { buildApp } from '../../example/app.js'
import { createDatabase, initOrm } from './database.js'

/** What a test needs to reach a running server. */
export interface Running {
  app: FastifyInstance
  orm: MikroORM
  /** `ws://127.0.0.1:PORT` */
  base: string
}


async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return `ws://127.0.0.1:${port}`
}

/** The example server on a fresh, empty database. */
export async function startExample (t: Teardown): Promise<Running> {
  const database = await createDatabase(t)
  const { app, orm } = await buildApp(database.exampleOptions)
  t.teardown(async () => await app.close())
  return { app, orm, base: await listen(app) }
}

/**
 * A bare app with the plugin registered on `entities` (fresh database, schema created);
 * `declare` adds routes before it listens.
 */
export async function startApp (
  t: Teardown,
  entities: any[],
  declare: (app: FastifyInstance, orm: MikroORM) => void | Promise<void>,
  options: Omit<WsRestOptions, 'orm'> = {}
): Promise<Running> {
  const orm = await initOrm(t, entities)
  const app = Fastify({ logger: false })
  app.addHook('onClose', async () => { await orm.close() })
  t.teardown(async () => await app.close())
  await app.register(wsRest, { ...options, orm })
  await declare(app, orm)
  return { app, orm, base: await listen(app) }
}
