/**
 * Serializers: what an entity looks like in replies and events, compiled once per
 * response schema from the schema and the entity's metadata (DRF's ModelSerializer).
 *
 * The schema is the whole contract. A property it does not declare never leaves the
 * server, whatever the EntityManager has loaded. A relation is sent as the schema
 * declares it: a to-one declared as a scalar is the related primary key, declared as
 * an object it is the related entity shaped by that object schema (recursively); a
 * to-many declared as an array of scalars is the related keys, of objects the related
 * entities shaped — always ordered by primary key, so a reply and an event agree. What
 * must be loaded for that (populate hints) is derived here, at declaration.
 *
 * Computed and renamed fields (DRF's `source=` and `SerializerMethodField`) are declared
 * beside the schema, in the route's `fields`, and the schema types them for clients.
 */
import { ReferenceKind, type EntityMetadata, type EntityProperty, type MetadataStorage } from '@mikro-orm/core'
import { Kind, type TSchema } from '@sinclair/typebox'
import { createHash } from 'node:crypto'
import type { ActionContext } from './context.js'
import { InvalidOption } from './errors.js'
import { metadataOf } from './orm-compat.js'
import { compileShaper } from './shape.js'

/** A field taken from another property (a dotted path may cross to-one relations): DRF's `source=`. */
export interface SourceField {
  source: string
}

/** A field computed from the entity (synchronously); `ctx` is the action's in replies, undefined in events. */
export interface ComputedField<E = any> {
  get: (entity: E, ctx: ActionContext | undefined) => unknown
  /** Relations `get` reads, to be loaded first (populate hints such as `'author'`). */
  populate?: string[]
}

/** The route option `fields`: output fields not (or not directly) stored on the entity. */
export type OutputFields<E = any> = Record<string, SourceField | ComputedField<E>>

/** A compiled serializer. */
export interface Serializer {
  /** The plain JSON value of one entity. */
  readonly shape: (entity: unknown, ctx?: ActionContext) => unknown
  /** Relations to load before shaping (MikroORM populate hints); empty when none. */
  readonly populate: readonly string[]
  /**
   * Whether shaping needs the entity itself (a nested or to-many relation, a computed
   * or renamed field, a getter or another property a row snapshot does not hold);
   * otherwise a row snapshot of the entity's own columns shapes the same.
   */
  readonly needsEntity: boolean
  /** Equal for serializers that shape alike, on every instance running the same code: names a rendering in events. */
  readonly key: string
}

type Shape = (value: unknown, ctx: ActionContext | undefined) => unknown

const TO_ONE = new Set<string>([ReferenceKind.MANY_TO_ONE, ReferenceKind.ONE_TO_ONE])
const TO_MANY = new Set<string>([ReferenceKind.ONE_TO_MANY, ReferenceKind.MANY_TO_MANY])

/** MikroORM's internal helper of an entity or reference, if `value` is one. */
function helperOf (value: unknown): { getPrimaryKey: () => unknown } | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const target = typeof (value as { unwrap?: unknown }).unwrap === 'function' ? (value as { unwrap: () => unknown }).unwrap() : value
  return (target as { __helper?: { getPrimaryKey: () => unknown } }).__helper
}

/** The primary key of a related entity or reference, as JSON carries it (bigints as strings); plain values pass. */
export function relatedKey (value: unknown): unknown {
  const helper = helperOf(value)
  const key = helper === undefined ? value : helper.getPrimaryKey()
  return typeof key === 'bigint' ? key.toString() : key
}

/** The entity behind a reference wrapper (`ref()`), or the value itself. */
function unwrapped (value: unknown): unknown {
  return typeof value === 'object' && value !== null && typeof (value as { unwrap?: unknown }).unwrap === 'function'
    ? (value as { unwrap: () => unknown }).unwrap()
    : value
}

/** The schema a value is shaped by, with a nullable union (`Type.Union([X, Type.Null()])`) seen through. */
function nonNull (schema: TSchema): TSchema {
  if (schema[Kind] !== 'Union' || !Array.isArray(schema.anyOf)) return schema
  const members = (schema.anyOf as TSchema[]).filter((s) => s[Kind] !== 'Null')
  return members.length === 1 ? members[0] : schema
}

function isObjectSchema (schema: TSchema): boolean {
  return schema[Kind] === 'Object' && typeof schema.properties === 'object' && schema.properties !== null
}

function compareKeys (a: unknown, b: unknown): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b
  const x = String(a)
  const y = String(b)
  return x < y ? -1 : x > y ? 1 : 0
}

/** Compiles serializers for the entities of one MikroORM instance. */
export class SerializerCompiler {
  constructor (private readonly metadata: MetadataStorage) {}

  /** The serializer of `meta`'s entity by `schema`, with `fields`. Called at declaration, never per message. */
  compile (meta: EntityMetadata, schema: TSchema, fields: OutputFields = {}): Serializer {
    const populate = new Set<string>()
    const state = { needsEntity: false }
    const shape = this.object(meta, schema, fields, populate, '', state, 0)
    return { shape, populate: [...populate], needsEntity: state.needsEntity, key: serializerKey(meta, schema, fields) }
  }

  private object (meta: EntityMetadata, schema: TSchema, fields: OutputFields, populate: Set<string>, prefix: string, state: { needsEntity: boolean }, depth: number): Shape {
    if (depth > 8) throw new InvalidOption('schema.response', `nests relations deeper than 8 levels at "${prefix}"`)
    if (!isObjectSchema(schema)) {
      if (Object.keys(fields).length > 0) throw new InvalidOption('fields', 'need an object response schema')
      const plain = compileShaper(schema)
      return (value) => plain(value)
    }
    const properties = schema.properties as Record<string, TSchema>
    for (const name of Object.keys(fields)) {
      if (properties[name] === undefined) {
        throw new InvalidOption(`fields.${name}`, 'is not declared in the response schema; declare it there, so clients know its type')
      }
    }
    const entries: Array<[string, Shape]> = Object.entries(properties).map(([name, sub]) => {
      const field = fields[name]
      if (field !== undefined) return [name, this.field(meta, name, field, sub, populate, prefix, state, depth)]
      const prop = (meta.properties as Record<string, EntityProperty | undefined>)[name]
      if (prop !== undefined && prop.kind !== ReferenceKind.SCALAR && prop.kind !== ReferenceKind.EMBEDDED) {
        const relation = this.relation(prop, sub, populate, prefix + name, state, depth)
        return [name, (entity, ctx) => relation((entity as Record<string, unknown>)[name], ctx)]
      }
      // A row snapshot (changes.ts) holds only persisted, visible properties: anything else
      // the schema declares (a getter on the entity class, a `persist: false` or hidden
      // property) is read from the entity, in events as in replies.
      if (prop === undefined || prop.persist === false || prop.hidden === true) state.needsEntity = true
      const plain = compileShaper(sub)
      return [name, (entity) => plain((entity as Record<string, unknown>)[name])]
    })
    return (value, ctx) => {
      if (typeof value !== 'object' || value === null) return value
      const out: Record<string, unknown> = {}
      for (const [name, shape] of entries) {
        const v = shape(value, ctx)
        // An absent optional property stays absent rather than becoming `null`.
        if (v !== undefined) out[name] = v
      }
      return out
    }
  }

  /** A relation property shaped by the schema declared for it. */
  private relation (prop: EntityProperty, schema: TSchema, populate: Set<string>, path: string, state: { needsEntity: boolean }, depth: number): Shape {
    const target = metadataOf(this.metadata, prop.type)
    if (target === undefined) throw new InvalidOption('schema.response', `"${path}": the related entity ${prop.type} is not known to MikroORM`)
    if (TO_ONE.has(prop.kind)) {
      const declared = nonNull(schema)
      if (!isObjectSchema(declared)) {
        // The key is on the row itself (owning side): nothing to load, and a row snapshot carries it.
        if (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner !== true) {
          populate.add(path)
          state.needsEntity = true
        }
        return (value) => value === null || value === undefined ? null : relatedKey(value)
      }
      populate.add(path)
      state.needsEntity = true
      const nested = this.object(target, declared, {}, populate, `${path}.`, state, depth + 1)
      return (value, ctx) => value === null || value === undefined ? null : nested(loaded(unwrapped(value), path), ctx)
    }
    if (TO_MANY.has(prop.kind)) {
      const declared = nonNull(schema)
      if (declared[Kind] !== 'Array' || declared.items === undefined) {
        throw new InvalidOption('schema.response', `"${path}" is a to-many relation; declare it as an array (of keys or of objects)`)
      }
      populate.add(path)
      state.needsEntity = true
      const items = nonNull(declared.items as TSchema)
      const item: Shape = isObjectSchema(items)
        ? this.object(target, items, {}, populate, `${path}.`, state, depth + 1)
        : (value) => relatedKey(value)
      return (value, ctx) => {
        const collection = value as { isInitialized?: () => boolean, getItems?: () => unknown[] } | undefined
        if (collection?.getItems === undefined) return []
        // Never `[]` by accident: an unloaded collection here is a missing populate hint, a bug to surface.
        if (collection.isInitialized?.() !== true) throw new Error(`fastify-ws-rest: "${path}" was not loaded before serializing`)
        return [...collection.getItems()]
          .sort((a, b) => compareKeys(relatedKey(a), relatedKey(b)))
          .map((entity) => item(loaded(entity, path), ctx))
      }
    }
    // Embedded and other kinds: shaped as plain values.
    const plain = compileShaper(schema)
    return (value) => plain(value)
  }

  /** A `fields` entry: a source path, or a computed value; shaped by its declared schema either way. */
  private field (meta: EntityMetadata, name: string, field: SourceField | ComputedField, schema: TSchema, populate: Set<string>, prefix: string, state: { needsEntity: boolean }, depth: number): Shape {
    state.needsEntity = true
    if ('get' in field && typeof field.get === 'function') {
      for (const hint of field.populate ?? []) populate.add(prefix + hint)
      const plain = compileShaper(schema)
      return (entity, ctx) => plain(field.get(entity, ctx))
    }
    if (!('source' in field) || typeof field.source !== 'string' || field.source === '') {
      throw new InvalidOption(`fields.${name}`, 'must be { source: "property.path" } or { get: (entity, ctx) => value }')
    }
    // Walk the path through to-one relations; the last step is shaped like a property of its own.
    const steps = field.source.split('.')
    let current = meta
    let path = prefix
    for (const step of steps.slice(0, -1)) {
      const prop = (current.properties as Record<string, EntityProperty | undefined>)[step]
      if (prop === undefined || !TO_ONE.has(prop.kind)) {
        throw new InvalidOption(`fields.${name}`, `source "${field.source}": "${step}" is not a to-one relation of ${current.className}`)
      }
      path += step
      populate.add(path)
      path += '.'
      current = metadataOf(this.metadata, prop.type) as EntityMetadata
    }
    const last = steps[steps.length - 1]
    const prop = (current.properties as Record<string, EntityProperty | undefined>)[last]
    if (prop === undefined) throw new InvalidOption(`fields.${name}`, `source "${field.source}": "${last}" is not a property of ${current.className}`)
    const leaf: Shape = prop.kind === ReferenceKind.SCALAR || prop.kind === ReferenceKind.EMBEDDED
      ? ((plain) => (value: unknown) => plain(value))(compileShaper(schema))
      : this.relation(prop, schema, populate, path + last, state, depth)
    return (entity, ctx) => {
      let value: unknown = entity
      for (const step of steps) {
        if (value === null || value === undefined) return null
        value = (unwrapped(value) as Record<string, unknown>)[step]
      }
      return leaf(value, ctx)
    }
  }
}

/**
 * Whether everything `populate` names is loaded on `entity` (nested paths through every
 * item): rows already loaded — by an identical list of another socket, or a grouped
 * write's batch — are not loaded again.
 */
export function isLoaded (entity: unknown, populate: readonly string[]): boolean {
  return populate.every((path) => pathLoaded(entity, path.split('.'), 0))
}

function pathLoaded (entity: unknown, steps: string[], at: number): boolean {
  if (at === steps.length) return true
  const value = (unwrapped(entity) as Record<string, unknown> | null)?.[steps[at]]
  if (value === null || value === undefined) return true
  const collection = value as { isInitialized?: (fully?: boolean) => boolean, getItems?: () => unknown[] }
  if (typeof collection.getItems === 'function' && typeof collection.isInitialized === 'function') {
    return collection.isInitialized(true) && collection.getItems().every((item) => pathLoaded(item, steps, at + 1))
  }
  const helper = (unwrapped(value) as { __helper?: { __initialized?: boolean } }).__helper
  if (helper !== undefined && helper.__initialized === false) return false
  return pathLoaded(value, steps, at + 1)
}

/** A related entity that must have been loaded: an uninitialized reference would show only its key. */
function loaded (entity: unknown, path: string): unknown {
  const helper = (entity as { __helper?: { __initialized?: boolean } } | null)?.__helper
  if (helper !== undefined && helper.__initialized === false) throw new Error(`fastify-ws-rest: "${path}" was not loaded before serializing`)
  return entity
}

/** A stable name for a serializer: the entity, the schema, and the fields (their code included). */
function serializerKey (meta: EntityMetadata, schema: TSchema, fields: OutputFields): string {
  const described = Object.entries(fields).map(([name, f]) =>
    [name, 'get' in f ? String(f.get) : (f as SourceField).source, 'populate' in f ? f.populate ?? [] : []])
  return createHash('sha1').update(JSON.stringify([meta.className, schema, described])).digest('base64url').slice(0, 16)
}
