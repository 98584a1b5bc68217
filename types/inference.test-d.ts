/**
 * Type-level tests: checked by `tsc --noEmit` (tsconfig includes types/), never run.
 *
 * Each check fails the type-check when the inference it names breaks: `expectType<T>(v)`
 * fails when `v` is not assignable to T, `assertEqual<Equal<A, B>>()` when A and B are not
 * exactly the same type, and every `// @ts-expect-error` line fails when it stops being an
 * error (so wrong usage keeps being rejected).
 */
import { defineEntity } from '@mikro-orm/core'
import { Type, type Static } from '@sinclair/typebox'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import wsRest, {
  action,
  mixins,
  permissions,
  type ActionContext,
  type ActionDefinition,
  type Permission,
  type PreActionHook,
  type WsRest
} from '../index.js'

/** Compile-time: `value` is assignable to T. */
function expectType<T> (value: T): T { return value }

/** Exact type equality (not mere assignability: `any`, optionality and readonly all count). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false

/** Compile-time: the type argument is `true` — use with {@link Equal}. */
function assertEqual<T extends true> (): void {}

// ---------------------------------------------------------------------------
// action(): handler args inferred from the TypeBox schema
// ---------------------------------------------------------------------------

const RenameArgs = Type.Object({
  name: Type.String(),
  count: Type.Integer(),
  ratio: Type.Number(),
  loud: Type.Optional(Type.Boolean()),
  tags: Type.Array(Type.String()),
  mode: Type.Union([Type.Literal('fast'), Type.Literal('safe')]),
  nested: Type.Object({ inner: Type.String() })
})

export const rename: ActionDefinition = action('rename', { schema: RenameArgs }, async (ctx, args) => {
  expectType<string>(args.name)
  expectType<number>(args.count)
  const ok: Equal<typeof args.name, string> = true
  const okCount: Equal<typeof args.count, number> = true
  assertEqual<Equal<typeof args.ratio, number>>()
  assertEqual<Equal<typeof args.loud, boolean | undefined>>()
  assertEqual<Equal<typeof args.tags, string[]>>()
  assertEqual<Equal<typeof args.mode, 'fast' | 'safe'>>()
  assertEqual<Equal<typeof args.nested.inner, string>>()
  assertEqual<Equal<typeof args, Static<typeof RenameArgs>>>()
  // The context is the documented one.
  assertEqual<Equal<typeof ctx, ActionContext>>()
  expectType<AbortSignal>(ctx.signal)
  expectType<FastifyRequest>(ctx.request)

  // @ts-expect-error — a field the schema does not declare
  void args.missing
  // @ts-expect-error — args.name is a string, not a number
  expectType<number>(args.name)
  // @ts-expect-error — args.count is a number, not a string
  const wrong: string = args.count
  // @ts-expect-error — an optional field may be undefined
  expectType<boolean>(args.loud)
  // @ts-expect-error — not one of the literals
  expectType<typeof args.mode>('slow')

  return { data: { ok, okCount, wrong } }
})

// Destructured args keep their types.
export const destructured = action('greet', { schema: Type.Object({ who: Type.String(), times: Type.Integer() }) },
  ({ request }, { who, times }) => {
    assertEqual<Equal<typeof who, string>>()
    assertEqual<Equal<typeof times, number>>()
    return { data: `${request.url} ${who.repeat(times)}` }
  })

// Without a schema, args are an open record of unknowns: nothing is assumed.
export const untyped = action('untyped', {}, async (_ctx, args) => {
  assertEqual<Equal<typeof args, Record<string, unknown>>>()
  // @ts-expect-error — unknown, so it must be narrowed before use
  expectType<string>(args.name)
  return {}
})

// The short form (no options) too.
export const short = action('short', (_ctx, args) => {
  assertEqual<Equal<typeof args, Record<string, unknown>>>()
  return { data: null, status: 204 }
})

// Options other than schema are typed, and the handler must return an ActionResult.
export const options = action('opts', { detached: true, transaction: true, permissions: [permissions.allowAny] }, () => ({}))

// @ts-expect-error — detached is a boolean
export const badOption = action('bad', { detached: 'yes' }, () => ({}))

// @ts-expect-error — status must be a number
export const badStatus = action('bad', {}, () => ({ status: 'ok' }))

// @ts-expect-error — a handler must return an ActionResult object, not a bare value
export const badResult = action('bad', {}, () => 'done')

// ---------------------------------------------------------------------------
// app.wsRest: present on every FastifyInstance once the package is imported
// ---------------------------------------------------------------------------

assertEqual<Equal<FastifyInstance['wsRest'], WsRest>>()

const Item = defineEntity({
  name: 'Item',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string(),
    note: p.string().nullable()
  })
})

const ItemCreate = Type.Object({ name: Type.String(), note: Type.Optional(Type.String()), count: Type.Integer() })
const ItemUpdate = Type.Object({ name: Type.String(), note: Type.String() })
const ItemPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

/** Never called: only its body is type-checked. */
export async function routeTyping (): Promise<void> {
  const app = Fastify()
  await app.register(wsRest, {})
  expectType<WsRest>(app.wsRest)

  app.wsRest.route('/ws/items/', {
    entity: Item,
    schema: { create: ItemCreate, update: ItemUpdate, response: ItemPublic },
    actions: [mixins.create(), mixins.list(), mixins.update(), mixins.patch(), rename],
    // performCreate's data is typed from schema.create.
    performCreate (ctx, data) {
      assertEqual<Equal<typeof data, Static<typeof ItemCreate>>>()
      expectType<string>(data.name)
      expectType<number>(data.count)
      assertEqual<Equal<typeof data.note, string | undefined>>()
      // @ts-expect-error — not in schema.create
      void data.password
      // @ts-expect-error — count is a number
      expectType<string>(data.count)
      return ctx.em.create(Item, { name: data.name, note: data.note ?? null })
    },
    // performUpdate's data is a Partial of schema.update (patch sends a subset).
    performUpdate (ctx, entity, data) {
      assertEqual<Equal<typeof data, Partial<Static<typeof ItemUpdate>>>>()
      ctx.em.assign(entity, data)
    }
  })

  // The entity type is inferred from `entity`: perform* hooks get it, and must return it.
  app.wsRest.route('/ws/typed-entity/', {
    entity: Item,
    schema: { create: ItemCreate, response: ItemPublic },
    actions: [mixins.create(), mixins.delete()],
    // @ts-expect-error — performCreate must return the route's entity
    performCreate () { return 'not an entity' },
    performDelete (ctx, entity) {
      expectType<number>(entity.id)
      expectType<string>(entity.name)
      assertEqual<Equal<typeof entity.note, string | null | undefined>>()
      // @ts-expect-error — not a property of Item
      void entity.password
      ctx.em.remove(entity)
    }
  })

  // Inside a plugin the facade is the same type, and hooks are typed.
  await app.register(async (child) => {
    expectType<WsRest>(child.wsRest)
    child.wsRest.addHook('preAction', async (ctx, args) => {
      assertEqual<Equal<typeof args, Record<string, unknown>>>()
      expectType<string>(ctx.action)
    })
    // @ts-expect-error — only 'preAction' exists
    child.wsRest.addHook('onMessage', async () => {})
    // @ts-expect-error — a route needs its actions
    child.wsRest.route('/ws/none/', {})
  })
}

// Permissions and hooks have the documented shapes.
export const readOnly: Permission = {
  canConnect: (request) => expectType<FastifyRequest>(request).headers.authorization !== undefined,
  hasPermission: async (ctx, actionName, args) => {
    expectType<ActionContext>(ctx)
    assertEqual<Equal<typeof actionName, string>>()
    assertEqual<Equal<typeof args, Record<string, unknown>>>()
    return actionName === 'list'
  }
}
export const composed: Permission = permissions.and(permissions.isAuthenticated, permissions.or(readOnly, permissions.not(permissions.allowAny)))
export const hook: PreActionHook = async (ctx) => { expectType<unknown>(ctx.requestId) }
// @ts-expect-error — hasPermission answers a boolean
export const badPermission: Permission = { hasPermission: () => 'yes' }
