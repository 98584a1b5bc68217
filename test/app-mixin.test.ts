/**
 * A mixin written by an app, not by this package: `bulk_create`, defined below in one
 * place — its behaviour, its wire (what it takes and answers, computed from the route it
 * is used on) and its AsyncAPI description — from what index.ts exports. Used on a route
 * over real sockets, it is as typed in the client (the `@ts-expect-error` lines are the
 * type-level test: `npm test` runs `tsc` first) and as documented in the AsyncAPI document
 * as a built-in mixin.
 */
import { DiagnosticSeverity, Parser } from '@asyncapi/parser'
import { Type, type TSchema } from '@sinclair/typebox'
import t from 'tap'
import WebSocket from 'ws'
import { createClient, WsRestError, type ClientFor, type ModelEvent } from '../client/index.js'
import {
  defineRoute,
  mixins,
  modelAction,
  modelOf,
  serializerOf,
  ValidationError,
  type ActionDefinition,
  type ActionDescriber,
  type ActionWire,
  type MixinOptions,
  type RouteInput,
  type RouteObject
} from '../index.js'
import { deferred, within, type Teardown } from './helpers/async.js'
import { Item, itemModel } from './helpers/item.js'
import { startApp, type Running } from './helpers/server.js'

/** Exact type equality (optionality and readonly count). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function assertEqual<T extends true> (): void {}

// ------------------------------------------------------------------ the app's mixin

/** What `bulk_create` takes and answers on the route it is used on: a list of create inputs; the created objects. */
interface BulkCreateWire<Response extends TSchema | undefined = undefined> extends ActionWire {
  readonly args: Record<'data', Array<RouteInput<this['route'], 'create'>>>
  readonly data: Array<RouteObject<this['route'], Response>>
}

/**
 * `bulk_create {data: [...]}` → 201 with the created objects, in order. Each is validated
 * by the route's `schema.create`; all are written in one transaction, so one invalid item
 * creates none (400).
 */
function bulkCreate<const Response extends TSchema | undefined = undefined> (options: MixinOptions<Response> = {}): ActionDefinition<'bulk_create', BulkCreateWire<Response>> {
  const serializer = serializerOf(options)
  const describe: ActionDescriber = (route) => ({
    summary: 'Create several objects at once, all or none.',
    args: Type.Object({ data: Type.Array(route.input('create'), { minItems: 1 }) }),
    status: 201,
    data: Type.Array(options.response ?? route.response)
  })
  return modelAction('bulk_create', async (ctx, args) => {
    const model = modelOf(ctx)
    if (!Array.isArray(args.data) || args.data.length === 0) throw ValidationError.field('data', 'Expected a non-empty list of items.')
    const created = []
    for (const item of args.data) created.push(await model.create(ctx, await model.validate('create', item, ctx)))
    return { status: 201, data: await model.render(ctx, created, serializer(model, ctx)) }
  }, { transaction: true, input: 'create', permissions: options.permissions, describe })
}

// ------------------------------------------------------------------ a route using it

const items = defineRoute({ ...itemModel, actions: [bulkCreate(), mixins.list(), mixins.subscribeList()] })
/** The mixin's own response schema replaces the route's, in its reply type too. */
const idsOnly = defineRoute({ ...itemModel, actions: [bulkCreate({ response: Type.Object({ id: Type.Integer() }) })] })

async function startItems (t: Teardown): Promise<Running> {
  return await startApp(t, [Item], (app) => { app.wsRest.route('/ws/items/', items) })
}

// Compile-time only: never run. The reply and argument types come from the wire above.
void (async (client: ClientFor<typeof items>, ids: ClientFor<typeof idsOnly>) => {
  const created = await client.actions.bulk_create({ data: [{ name: 'a' }] })
  assertEqual<Equal<typeof created, Array<{ id: number, name: string }>>>()
  // @ts-expect-error each item is the route's create input: `name`, not `title`
  await client.request('bulk_create', { data: [{ title: 'a' }] })
  // @ts-expect-error `data` is a list of items, not one
  await client.request('bulk_create', { data: { name: 'a' } })
  // @ts-expect-error the reply is a list of objects, not one
  created.name.toUpperCase()
  const bare = await ids.request('bulk_create', { data: [{ name: 'a' }] })
  assertEqual<Equal<typeof bare, Array<{ id: number }>>>()
  // @ts-expect-error a route without the mixin has no such action
  await ids.request('list')
})

t.test('an app\'s mixin over real sockets: typed replies, one transaction, events to subscribers', async (t) => {
  const { base } = await startItems(t)
  const client = createClient<typeof items>(`${base}/ws/items/`, { WebSocket })
  t.teardown(async () => await client.close())

  // A subscriber sees each created row, as from a built-in create.
  const seen: Array<ModelEvent<{ id: number, name: string }>> = []
  const both = deferred()
  await client.subscribe('subscribe_list', {}, (event) => {
    seen.push(event)
    if (seen.length === 2) both.resolve()
  })

  const created = await client.actions.bulk_create({ data: [{ name: 'first' }, { name: 'second' }] })
  t.same(created.map((item) => item.name), ['first', 'second'], 'the created objects, in order, shaped by the response schema')
  t.ok(created.every((item) => Number.isInteger(item.id)), 'with their keys')
  await within(both.promise, 'the two create events')
  t.same(seen.map((e) => [e.action, e.action === 'delete' ? null : e.data.name]), [['create', 'first'], ['create', 'second']])

  // One invalid item: 400, and the transaction creates none of them.
  const refused = await client.actions.bulk_create({ data: [{ name: 'third' }, { name: '' }] }).then(() => undefined, (err: unknown) => err)
  t.ok(refused instanceof WsRestError, 'an invalid item is refused')
  t.equal((refused as WsRestError).status, 400)
  const names = (await client.request('list')).map((item) => item.name)
  t.same(names, ['first', 'second'], 'the valid item beside it was rolled back with it')
})

t.test('an app\'s mixin is in the AsyncAPI document like a built-in one', async (t) => {
  const { app } = await startItems(t)
  const doc = app.wsRest.asyncapi()
  const { diagnostics } = await new Parser().parse(JSON.parse(JSON.stringify(doc)))
  t.strictSame(diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).map((d) => d.message), [], 'a valid document')

  const operation = Object.values(doc.operations).find((op) => op.title === 'bulk_create')
  t.ok(operation, 'a send operation for bulk_create')
  t.equal(operation?.summary, 'Create several objects at once, all or none.')
  const channel = doc.channels[Object.keys(doc.channels).find((id) => doc.channels[id].address === '/ws/items/') as string]
  const request = channel.messages['bulk_create.request'].payload
  t.same(request.required, ['action', 'data'], 'data is required')
  t.equal(request.properties.data.type, 'array')
  const item = request.properties.data.items.$ref as string
  t.match(item, /^#\/components\/schemas\//, 'its items are the route\'s create schema, as a component')
  t.same(Object.keys(doc.components.schemas[item.split('/').pop() as string].properties), ['name'])
  const reply = channel.messages['bulk_create.reply'].payload
  t.equal(reply.properties.response_status.const, 201)
  t.equal(reply.properties.data.type, 'array', 'the reply is a list of the route\'s objects')
})
