/**
 * An AsyncAPI 3.0 document of the declared routes: every route a channel, every action a
 * `send` operation whose `reply` is its answer (or the error reply), and every event a
 * subscription brings a `receive` operation. Built from the routes' TypeBox schemas
 * (which are JSON Schema) and from what each action says it takes and answers
 * (`ActionDefinition.describe`); nothing here runs at message time.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Type, type TProperties, type TSchema } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { ActionDefinition } from '../action.js'
import type { CompiledRoute, DeclaredRoute, RouteOptions } from '../route.js'
import type { PluginState } from '../state.js'
import type { ActionDoc, RouteDoc } from './describe.js'
import { checkAsyncApiOptions, type AsyncApiInfo, type AsyncApiOptions, type JsonObject, type ResolvedAsyncApi } from './options.js'

/** The generated document: plain JSON, ready for `JSON.stringify`. */
export interface AsyncApiDocument extends JsonObject {
  asyncapi: '3.0.0'
  info: AsyncApiInfo
  servers?: Record<string, JsonObject>
  defaultContentType: 'application/json'
  channels: Record<string, JsonObject>
  operations: Record<string, JsonObject>
  components: JsonObject
}

const SCHEMAS = '#/components/schemas/'
const REQUEST_ID = { description: 'Any JSON value, echoed verbatim on every reply to this message (`null` when absent).' }
const ECHOED_ID = { description: 'The request\'s `request_id`, as it was sent.' }
const EVENT_ID = { description: 'The `request_id` of the message that subscribed.' }

// JSON Schema draft 7 (AsyncAPI's schema dialect), by what a keyword holds. Anything else
// in a TypeBox schema (`trim`, `errorMessage`, `$id`, later drafts' keywords) is dropped.
const SCHEMA_VALUED = new Set(['additionalProperties', 'additionalItems', 'contains', 'propertyNames', 'not', 'if', 'then', 'else'])
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf'])
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions'])
const PLAIN = new Set([
  'enum', 'const', 'default', 'examples', 'title', 'description', 'format', 'pattern',
  'minLength', 'maxLength', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf',
  'minItems', 'maxItems', 'uniqueItems', 'minProperties', 'maxProperties', 'required',
  'readOnly', 'writeOnly', 'contentMediaType', 'contentEncoding', '$comment', 'deprecated', 'externalDocs'
])
const JSON_TYPES = new Set(['array', 'boolean', 'integer', 'null', 'number', 'object', 'string'])

/** A name the document's keys accept (`^[\w\d.\-_]+$`). */
function key (text: string): string {
  return text.replace(/[^\w.-]+/g, '_') || '_'
}

/** An entity's property metadata, as far as the document needs it. */
interface PropertyMeta {
  runtimeType?: string
  columnTypes?: unknown[]
  type?: unknown
  nullable?: boolean
}

/** The JSON values of a property (as filter values and keys arrive). */
function valueSchema (prop: PropertyMeta | undefined): TSchema {
  const base = ((): TSchema => {
    switch (prop?.runtimeType) {
      case 'number': return /int|serial/i.test(String(prop.columnTypes?.[0] ?? prop.type ?? '')) ? Type.Integer() : Type.Number()
      case 'boolean': return Type.Boolean()
      case 'Date': return Type.String({ format: 'date-time' })
      case 'bigint': return Type.Union([Type.Integer(), Type.String({ pattern: '^-?\\d+$' })])
      case 'string': return Type.String()
      default: return Type.Unknown()
    }
  })()
  return prop?.nullable === true ? Type.Union([base, Type.Null()]) : base
}

/** A lookup value as detail actions accept it (numbers may come as numeric strings, see generic.ts). */
function lookupSchema (prop: PropertyMeta | undefined, description: string): TSchema {
  switch (prop?.runtimeType) {
    case 'number': return Type.Union([Type.Integer(), Type.String({ pattern: '^-?\\d{1,15}$' })], { description })
    case 'bigint': return Type.Union([Type.Integer(), Type.String({ pattern: '^-?\\d{1,19}$' })], { description })
    default: return Type.Union([Type.String(), Type.Number()], { description })
  }
}

/** The `filter` argument over `fields`: a value (equality) or an object of operators per field. */
function filterSchema (props: Record<string, PropertyMeta>, fields: readonly string[]): TSchema {
  const properties: TProperties = {}
  for (const field of fields) {
    const value = valueSchema(props[field])
    const operators: TProperties = {}
    for (const op of ['$eq', '$ne', '$gt', '$gte', '$lt', '$lte']) operators[op] = Type.Optional(value)
    for (const op of ['$in', '$nin']) operators[op] = Type.Optional(Type.Array(value, { maxItems: 1000 }))
    if (props[field]?.runtimeType === 'string') {
      operators.$contains = Type.Optional(Type.String({ description: 'Case-insensitive substring; % and _ taken literally.' }))
    }
    properties[field] = Type.Optional(Type.Union([value, Type.Object(operators, { minProperties: 1, additionalProperties: false })]))
  }
  return Type.Object(properties, {
    additionalProperties: false,
    description: 'Field filters, combined with AND: a value (equality) or an object of operators.'
  })
}

/** Builds one document; it owns the components, so equal schemas become one `$ref`. */
class DocumentBuilder {
  readonly schemas: Record<string, JsonObject | boolean> = {}
  readonly channels: Record<string, JsonObject> = {}
  readonly operations: Record<string, JsonObject> = {}
  /** Component names of route schemas, by schema object and variant (`''`, or `patch` for Partial(update)). */
  private readonly named = new Map<object, Map<string, string>>()
  /** Component names of TypeBox `$id`s (a `$ref` may name one before it is seen). */
  private readonly ids = new Map<string, string>()
  private readonly unresolved = new Set<string>()
  private readonly usedKeys = new Set<string>()

  /** A fresh key (of channels, operations) based on `name`. */
  uniqueKey (name: string): string {
    let candidate = key(name)
    for (let i = 2; this.usedKeys.has(candidate); i++) candidate = `${key(name)}_${i}`
    this.usedKeys.add(candidate)
    return candidate
  }

  private componentName (name: string): string {
    let candidate = key(name)
    for (let i = 2; candidate in this.schemas; i++) candidate = `${key(name)}_${i}`
    this.schemas[candidate] = {}
    return candidate
  }

  /**
   * A `$ref` to a component holding `schema` (of `variant`, built by `make`); the same
   * schema object (shared by routes) gets one component. Named by its `$id`, its `title`,
   * or `base`.
   */
  component (schema: TSchema, base: string, variant = '', make: () => TSchema = () => schema): TSchema {
    let variants = this.named.get(schema)
    if (variants === undefined) this.named.set(schema, (variants = new Map()))
    let name = variants.get(variant)
    if (name === undefined) {
      const id = variant === '' && typeof schema.$id === 'string' ? schema.$id : undefined
      name = id !== undefined
        ? this.idName(id)
        : this.componentName(variant === '' && typeof schema.title === 'string' ? schema.title : base)
      variants.set(variant, name)
      this.unresolved.delete(name)
      this.schemas[name] = this.convert(plain(make()), true)
    }
    return Type.Unsafe({ $ref: SCHEMAS + name })
  }

  private idName (id: string): string {
    let name = this.ids.get(id)
    if (name === undefined) {
      name = this.componentName(id)
      this.ids.set(id, name)
      this.unresolved.add(name)
    }
    return name
  }

  /** TypeBox → JSON Schema draft 7: symbol keys gone, TypeBox's own keywords dropped, `$id`s made components. */
  json (schema: TSchema | undefined): JsonObject | boolean {
    return schema === undefined ? {} : this.convert(plain(schema))
  }

  /** One schema node of TypeBox's JSON; `root` is the component itself (its `$id` names it, not a `$ref`). */
  private convert (node: unknown, root = false): JsonObject | boolean {
    if (typeof node === 'boolean') return node
    if (node === null || typeof node !== 'object' || Array.isArray(node)) return {}
    const schema = node as JsonObject
    // A schema with an $id is TypeBox's unit of reference (Type.Ref, Type.Recursive): a component.
    if (!root && typeof schema.$id === 'string') {
      const name = this.idName(schema.$id)
      if (this.unresolved.delete(name)) this.schemas[name] = this.convert(schema, true)
      return { $ref: SCHEMAS + name }
    }
    // `type` first: TypeBox puts a schema's options before it, a reader looks for it first.
    const out: JsonObject = 'type' in schema ? jsonType(schema.type) : {}
    for (const [keyword, value] of Object.entries(schema)) {
      if (keyword === '$ref') {
        if (typeof value === 'string') out.$ref = value.startsWith('#') ? value : SCHEMAS + this.idName(value)
      } else if (keyword === 'type') {
        continue
      } else if (keyword === 'items') {
        out.items = Array.isArray(value) ? value.map((v) => this.convert(v)) : this.convert(value)
      } else if (keyword === 'dependencies' && typeof value === 'object' && value !== null) {
        out.dependencies = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, Array.isArray(v) ? v : this.convert(v)]))
      } else if (SCHEMA_VALUED.has(keyword)) {
        out[keyword] = this.convert(value)
      } else if (SCHEMA_LISTS.has(keyword) && Array.isArray(value)) {
        out[keyword] = value.map((v) => this.convert(v))
      } else if (SCHEMA_MAPS.has(keyword) && typeof value === 'object' && value !== null) {
        out[keyword] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.convert(v)]))
      } else if (PLAIN.has(keyword) || keyword.startsWith('x-')) {
        out[keyword] = value
      }
    }
    return out
  }

  /** Components no route schema embeds but a `Type.Ref` names: documented as any value. */
  finish (): void {
    for (const name of this.unresolved) this.schemas[name] = { description: `TypeBox schema "${name}", not embedded in any route's schemas.` }
  }
}

/** A TypeBox schema as plain JSON: its symbol keys (Kind, OptionalKind, …) do not survive. */
function plain (schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema))
}

/** TypeBox's non-JSON types as what goes over the wire (a Date as its ISO string); the others as any value. */
function jsonType (type: unknown): JsonObject {
  const map = (t: unknown): string | undefined =>
    t === 'Date' ? 'string' : t === 'bigint' ? 'integer' : typeof t === 'string' && JSON_TYPES.has(t) ? t : undefined
  if (Array.isArray(type)) {
    const types = [...new Set(type.map(map).filter((t) => t !== undefined))]
    return types.length === 0 ? {} : { type: types }
  }
  const mapped = map(type)
  if (mapped === undefined) return {}
  return type === 'Date' ? { type: mapped, format: 'date-time' } : { type: mapped }
}

/** The describers' view of one route: its schemas registered as components on first use. */
function routeDoc (builder: DocumentBuilder, route: CompiledRoute, options: RouteOptions): RouteDoc {
  const model = route.model
  if (model === undefined) {
    // A route without an entity has only custom actions, which describe themselves.
    return { response: Type.Unknown(), input: () => Type.Unknown(), lookup: {}, pk: Type.Unknown(), version: {}, query: {}, ordering: {} }
  }
  const schema = options.schema ?? { response: Type.Unknown() }
  const entity = model.entityName
  const props = model.meta.properties as unknown as Record<string, PropertyMeta>
  const query: TProperties = {}
  if ((options.filterFields ?? []).length > 0) query.filter = Type.Optional(filterSchema(props, options.filterFields ?? []))
  if ((options.searchFields ?? []).length > 0) {
    query.search = Type.Optional(Type.String({ description: `Case-insensitive substring of any of: ${(options.searchFields ?? []).join(', ')}.` }))
  }
  // The primary key is always orderable (every ordering ends with it).
  const orderable = [...new Set([...(options.orderingFields ?? []), model.primaryKey])]
  const field = Type.Unsafe<string>({ type: 'string', enum: orderable.flatMap((f) => [f, `-${f}`]) })
  const versionProperty = model.meta.versionProperty as string | undefined
  return {
    get response () {
      return builder.component(schema.response, entity)
    },
    input (kind) {
      const own = kind === 'create' ? schema.create : schema.update
      if (own === undefined) return Type.Unknown()
      if (kind !== 'patch') return builder.component(own, `${entity}${kind === 'create' ? 'Create' : 'Update'}`)
      return builder.component(own, `${entity}Patch`, 'patch', () => Type.Partial(own))
    },
    lookup: { [model.lookupArg]: lookupSchema(props[model.lookupField], `The object's ${model.lookupField}.`) },
    // Events carry the key as published rows hold it: a bigint as its string.
    pk: props[model.primaryKey]?.runtimeType === 'bigint' ? Type.String() : valueSchema(props[model.primaryKey]),
    version: versionProperty === undefined
      ? {}
      : { version: Type.Optional(Type.Unsafe({ ...valueSchema(props[versionProperty]), description: 'The version the client read: a different current version is a 409.' })) },
    query,
    ordering: {
      ordering: Type.Optional(Type.Union([field, Type.Array(field, { minItems: 1, maxItems: 8 })], {
        description: 'A field, descending with "-"; or a list of them. Ties are broken by primary key.'
      }))
    }
  }
}

/** The five-key reply of an action or event. */
function replySchema (action: JsonObject, status: JsonObject, data: JsonObject | boolean, requestId: JsonObject): JsonObject {
  return {
    type: 'object',
    required: ['errors', 'data', 'action', 'response_status', 'request_id'],
    properties: { errors: { type: 'array', maxItems: 0 }, data, action, response_status: status, request_id: requestId }
  }
}

/** The request: `action`, `request_id`, and the action's arguments at the top level. */
function requestSchema (name: string, args: JsonObject | boolean, requiresRequestId: boolean): JsonObject {
  const properties: JsonObject = { action: { type: 'string', const: name }, request_id: REQUEST_ID }
  const required = ['action', ...(requiresRequestId ? ['request_id'] : [])]
  if (typeof args === 'boolean' || !isPlainObjectSchema(args)) {
    return { type: 'object', required, properties, ...(args === true || (typeof args === 'object' && Object.keys(args).length === 0) ? {} : { allOf: [args] }) }
  }
  for (const [k, v] of Object.entries((args.properties ?? {}) as JsonObject)) if (!(k in properties)) properties[k] = v
  const own = ((args.required ?? []) as string[]).filter((k) => !required.includes(k))
  return { ...args, type: 'object', required: [...required, ...own], properties }
}

/** An object schema whose properties can be merged with the request's own keys. */
function isPlainObjectSchema (schema: JsonObject): boolean {
  if (['allOf', 'anyOf', 'oneOf', 'not', '$ref', 'if'].some((k) => k in schema)) return false
  return schema.type === 'object' || (schema.type === undefined && schema.properties !== undefined)
}

/** Where a route's messages go: the channel, and (for a stream) the envelope around them. */
interface Target {
  channel: string
  /** The stream of a multiplexed route; its messages are `{"stream", "payload"}`. */
  stream?: string
}

/** The message as sent on the target: bare, or inside the stream's envelope. */
function onTarget (target: Target, payload: JsonObject): JsonObject {
  if (target.stream === undefined) return payload
  return {
    type: 'object',
    required: ['stream', 'payload'],
    properties: { stream: { type: 'string', const: target.stream }, payload }
  }
}

/** Add the messages and operations of one route's actions to `target`'s channel. */
function describeActions (builder: DocumentBuilder, target: Target, route: CompiledRoute, options: RouteOptions): void {
  const doc = routeDoc(builder, route, options)
  const channel = builder.channels[target.channel]
  const channelRef = { $ref: `#/channels/${target.channel}` }
  const prefix = target.stream === undefined ? '' : `${key(target.stream)}.`
  const correlationId = { $ref: `#/components/correlationIds/${target.stream === undefined ? 'requestId' : 'streamRequestId'}` }
  const where = target.stream === undefined ? '' : ` (stream "${target.stream}")`
  const message = (name: string, body: JsonObject): { $ref: string } => {
    // Action names are free text: two may come to the same key, or one's event to another's request.
    let id = name
    for (let i = 2; id in channel.messages; i++) id = `${name}_${i}`
    channel.messages[id] = { name: id, contentType: 'application/json', ...body }
    return { $ref: `#/channels/${target.channel}/messages/${id}` }
  }

  for (const { def } of route.actions.values()) {
    const described = describe(def, doc)
    const name = key(def.name)
    const status = described.status === undefined
      ? { type: 'integer', minimum: 100, maximum: 399, description: 'The handler\'s status (200 unless it gives another).' }
      : { type: 'integer', const: described.status }
    const data = described.data === undefined ? { description: 'Whatever the action answers (JSON).' } : builder.json(described.data)
    const request = message(`${prefix}${name}.request`, {
      title: `${def.name} request${where}`,
      summary: described.summary,
      correlationId,
      payload: onTarget(target, requestSchema(def.name, builder.json(described.args), described.requiresRequestId === true))
    })
    const reply = message(`${prefix}${name}.reply`, {
      title: `${def.name} reply${where}`,
      summary: def.stream ? 'One reply per page, all with the request\'s request_id; no end marker.' : undefined,
      correlationId,
      payload: onTarget(target, replySchema({ type: 'string', const: def.name }, status, data, ECHOED_ID))
    })
    const operation = builder.uniqueKey(`${target.channel}.${prefix}${name}`)
    builder.operations[operation] = {
      action: 'send',
      channel: channelRef,
      title: def.name,
      summary: described.summary,
      description: described.description,
      messages: [request],
      reply: { channel: channelRef, messages: [reply, { $ref: `#/channels/${target.channel}/messages/error` }] }
    }

    const events = described.events === true
      ? [{ action: 'event', status: undefined, data: undefined, summary: 'An event of a group this action subscribed to (app.wsRest.publish, or a model change).' }]
      : (described.events ?? [])
    for (const event of events) {
      const id = `${prefix}${name}.${key(event.action)}`
      const eventMessage = message(id, {
        title: `${event.action} event of ${def.name}${where}`,
        summary: event.summary,
        payload: onTarget(target, replySchema(
          described.events === true ? { type: 'string' } : { type: 'string', const: event.action },
          event.status === undefined ? { type: 'integer' } : { type: 'integer', const: event.status },
          event.data === undefined ? { description: 'The event\'s data (JSON).' } : builder.json(event.data),
          EVENT_ID
        ))
      })
      builder.operations[builder.uniqueKey(`${operation}.${event.action}`)] = {
        action: 'receive',
        channel: channelRef,
        title: `${def.name} → ${event.action}`,
        summary: event.summary ?? `${event.action} events of a ${def.name} subscription.`,
        messages: [eventMessage]
      }
    }
  }
}

/** What an action says about itself; one that says nothing takes and answers anything. */
function describe (def: ActionDefinition, route: RouteDoc): ActionDoc {
  return def.describe?.(route) ?? { args: def.schema }
}

/** The channel of a route path: `:name` parameters become `{name}`. */
function addChannel (builder: DocumentBuilder, path: string, body: JsonObject): string {
  const trimmed = path.replace(/^\/+|\/+$/g, '').replace(/[:*?]|\([^)]*\)/g, '')
  const id = builder.uniqueKey(trimmed === '' ? 'root' : trimmed.replace(/\//g, '_'))
  const names: string[] = []
  const address = path
    .replace(/:([A-Za-z_$][\w$]*)(\([^)]*\))?\??/g, (_, name: string) => { names.push(name); return `{${name}}` })
    .replace(/\*/g, () => { names.push('wildcard'); return '{wildcard}' })
  builder.channels[id] = {
    address,
    ...body,
    messages: {},
    ...(names.length === 0 ? {} : { parameters: Object.fromEntries(names.map((n) => [n, { description: `The path parameter "${n}".` }])) }),
    bindings: { ws: { method: 'GET', bindingVersion: '0.1.0' } }
  }
  return id
}

const ERROR_REPLY: JsonObject = {
  type: 'object',
  title: 'Error reply',
  required: ['errors', 'data', 'action', 'response_status', 'request_id'],
  properties: {
    errors: {
      type: 'array',
      minItems: 1,
      description: 'Messages (`["Not found"]`), or one object of every failing field (`[{"username": ["This field is required."]}]`); nested fields nest.',
      items: {
        anyOf: [
          { type: 'string' },
          { type: 'object', additionalProperties: { anyOf: [{ type: 'array', items: { type: 'string' } }, { type: 'object' }] } }
        ]
      }
    },
    data: { type: 'null' },
    action: { type: ['string', 'null'], description: 'The request\'s action; `null` when the frame had none (not JSON, not an object, no `action`).' },
    response_status: {
      type: 'integer',
      minimum: 400,
      maximum: 599,
      description: '400 validation or bad frame, 403 permission denied, 404 not found, 405 unknown action, 409 conflict, 429 throttled, 500 server error (an HTTP action relays its route\'s status).'
    },
    request_id: ECHOED_ID
  }
}

/** The document of `declared` routes. */
export function buildAsyncApi (declared: readonly DeclaredRoute[], options: AsyncApiOptions = {}): AsyncApiDocument {
  const builder = new DocumentBuilder()
  builder.schemas.ErrorReply = ERROR_REPLY
  const errorMessage = { $ref: '#/components/messages/ErrorReply' }
  let multiplexed = false

  for (const entry of declared) {
    if (entry.kind === 'route') {
      const entity = entry.route.model?.entityName
      const channel = addChannel(builder, entry.path, {
        title: entry.path,
        description: `WebSocket route${entity === undefined ? '' : ` on ${entity}`}. One JSON object per text frame; replies have exactly five keys. Extension: a subscribe frame may carry "resume": {key, seq?}; it is then answered by a "resume" message (200 resumed, 201 new, 410 refetch) before its reply, and its events carry a sixth key, "seq".`
      })
      builder.channels[channel].messages.error = errorMessage
      describeActions(builder, { channel }, entry.route, entry.options)
    } else {
      multiplexed = true
      const channel = addChannel(builder, entry.path, {
        title: entry.path,
        description: `Multiplexed WebSocket route, streams ${entry.streams.map((s) => `"${s.name}"`).join(', ')}: every frame both ways is {"stream": name, "payload": message}.`
      })
      builder.channels[channel].messages.error = { $ref: '#/components/messages/StreamErrorReply' }
      for (const stream of entry.streams) describeActions(builder, { channel, stream: stream.name }, stream.route, stream.options)
    }
  }
  builder.finish()

  const info = { ...defaultInfo(), ...definedOnly(options.info ?? {}) }
  const messages: JsonObject = {
    ErrorReply: {
      name: 'ErrorReply',
      title: 'Error reply',
      summary: 'The answer to a request that failed: errors, data null, status 4xx/5xx.',
      contentType: 'application/json',
      correlationId: { $ref: '#/components/correlationIds/requestId' },
      payload: { $ref: `${SCHEMAS}ErrorReply` }
    }
  }
  const correlationIds: JsonObject = {
    requestId: { description: 'The request_id a reply echoes.', location: '$message.payload#/request_id' }
  }
  if (multiplexed) {
    messages.StreamErrorReply = {
      name: 'StreamErrorReply',
      title: 'Error reply on a stream',
      summary: 'An error reply in the stream envelope: on the request\'s stream (an unmapped one too), or on stream null for a frame that is not an envelope.',
      contentType: 'application/json',
      correlationId: { $ref: '#/components/correlationIds/streamRequestId' },
      payload: {
        type: 'object',
        required: ['stream', 'payload'],
        properties: { stream: { type: ['string', 'null'] }, payload: { $ref: `${SCHEMAS}ErrorReply` } }
      }
    }
    correlationIds.streamRequestId = { description: 'The request_id a reply echoes, inside the stream envelope.', location: '$message.payload#/payload/request_id' }
  }
  const document: AsyncApiDocument = {
    asyncapi: '3.0.0',
    info,
    ...(options.servers === undefined ? {} : { servers: options.servers }),
    defaultContentType: 'application/json',
    channels: builder.channels,
    operations: builder.operations,
    components: { schemas: builder.schemas, messages, correlationIds }
  }
  // Plain JSON: no undefined fields, and no object shared by two places of it (or with the next document).
  return JSON.parse(JSON.stringify(document)) as AsyncApiDocument
}

function definedOnly<T extends object> (value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

let appInfo: AsyncApiInfo | undefined

/** The app's own name, version and description (package.json of the working directory), read once. */
function defaultInfo (): AsyncApiInfo {
  if (appInfo === undefined) {
    appInfo = { title: 'WebSocket API', version: '0.0.0' }
    try {
      const pkg = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as Record<string, unknown>
      if (typeof pkg.name === 'string') appInfo.title = pkg.name
      if (typeof pkg.version === 'string') appInfo.version = pkg.version
      if (typeof pkg.description === 'string') appInfo.description = pkg.description
    } catch {
      // No readable package.json: the generic defaults stand.
    }
  }
  return { ...appInfo }
}

/** `app.wsRest.asyncapi(options)`: the plugin option's info and servers, overridden by `options`. */
export function documentOf (state: PluginState, options?: AsyncApiOptions): AsyncApiDocument {
  const own = checkAsyncApiOptions('asyncapi options', options)
  const base: AsyncApiOptions = state.options.asyncapi ?? {}
  return buildAsyncApi(state.declared, {
    info: { ...base.info, ...definedOnly(own.info ?? {}) },
    servers: own.servers ?? base.servers
  })
}

/**
 * Serve the document at the plugin option's path. Built on each request, so routes
 * declared after registration are in it; without configured servers, the server is the
 * one the request reached (ws:// or wss://).
 */
export function serveAsyncApi (fastify: FastifyInstance, state: PluginState, served: ResolvedAsyncApi): void {
  fastify.get(served.path, async (request) => documentOf(state, {
    servers: served.servers ?? { default: { host: request.host, protocol: request.protocol === 'https' ? 'wss' : 'ws' } }
  }))
}
