/**
 * Multiplexed routes: one socket carrying several streams, each a route definition of
 * its own, in the envelope DCRF front ends use behind a demultiplexer
 * (`{"stream": "users", "payload": <request>}` both ways).
 *
 * Each stream gets its own consumer on the socket — its own action order, cancellation
 * scopes and subscriptions, whose events arrive wrapped in that stream's envelope.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Connection } from './consumer.js'
import { InvalidOption, PermissionDenied, UnknownStream, wireErrors } from './errors.js'
import { canConnect, type Permission } from './permissions.js'
import { encodeEnvelope, encodeReply, envelopeError, FrameError, parseJson, toEnvelope, toRequest } from './protocol.js'
import { compileRoute, refuseConnect, registerUpgrade, type UpgradeOptions } from './declare-route.js'
import { positiveInteger } from './option-checks.js'
import type { CompiledRoute, RouteOptions } from './route.js'
import { Session, type FrameReceiver } from './session.js'
import type { PluginState } from './state.js'

/** Options of `app.wsRest.multiplex(path, options)`. */
export interface MultiplexOptions extends UpgradeOptions {
  /** Stream name → the route that serves it (any route options: entity, schema, actions, permissions…). */
  streams: Record<string, RouteOptions<any, any, any, any>>
  /** Checked at connect (`canConnect`) for the socket as a whole. Each stream's own permissions apply to its actions. */
  permissions?: Permission[]
  /** Largest frame accepted, in bytes (default: the plugin's `maxPayload`). */
  maxPayload?: number
}

/** Route options that act on the upgrade request, which a stream does not have of its own. */
const UPGRADE_ONLY = ['onRequest', 'preValidation', 'preHandler', 'config', 'maxPayload'] as const

/** A stream whose own `canConnect` refused this socket: every frame on it gets 403, the others work. */
const REFUSED = Symbol('refused')

/** The consumers of one multiplexed socket, by stream. */
class Multiplexer implements FrameReceiver {
  private readonly consumers = new Map<string, Connection | typeof REFUSED>()

  constructor (
    private readonly session: Session,
    streams: Map<string, CompiledRoute>,
    refused: Set<string>,
    state: PluginState,
    private readonly maxDepth: number
  ) {
    for (const [name, route] of streams) {
      this.consumers.set(name, refused.has(name) ? REFUSED : new Connection(session, route, state, name))
    }
    for (const consumer of this.consumers.values()) if (consumer instanceof Connection) consumer.open()
  }

  receive (text: string, allowed: boolean): void {
    const value = parseJson(text, this.maxDepth)
    if (value instanceof FrameError) {
      const { stream, error } = envelopeError(value)
      return this.replyError(stream, error.error, error.action, error.requestId)
    }
    const envelope = toEnvelope(value)
    if (envelope instanceof FrameError) return this.refuse(envelope)
    const consumer = this.consumers.get(envelope.stream)
    if (consumer instanceof Connection) {
      consumer.dispatch(toRequest(envelope.payload), allowed)
      return
    }
    const request = toRequest(envelope.payload)
    const echo = request instanceof FrameError ? { action: null, requestId: null } : request
    const error = consumer === REFUSED ? new PermissionDenied() : new UnknownStream(envelope.stream)
    this.replyError(envelope.stream, error, echo.action ?? null, echo.requestId)
  }

  /** A frame that names no stream: answered on stream `null`. */
  refuse (error: FrameError): void {
    this.replyError(null, error.error, error.action, error.requestId)
  }

  private replyError (stream: string | null, error: Error & { statusCode?: number }, action: unknown, requestId: unknown): void {
    const reply = encodeReply({ action, status: error.statusCode ?? 400, data: null, errors: wireErrors(error), requestId })
    this.session.send(encodeEnvelope(stream, reply))
  }

  release (): void {
    for (const consumer of this.consumers.values()) if (consumer instanceof Connection) consumer.release()
  }

  async drain (timeoutMs: number): Promise<void> {
    await Promise.all([...this.consumers.values()].map(async (c) => c instanceof Connection ? await c.drain(timeoutMs) : undefined))
  }
}

/** Compile every stream's route and register the multiplexed upgrade route on `instance`. */
export function declareMultiplex (instance: FastifyInstance, state: PluginState, path: string, options: MultiplexOptions): void {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new InvalidOption('path', 'must be a string starting with "/"')
  if (options === null || typeof options !== 'object' || options.streams === null || typeof options.streams !== 'object') {
    throw new InvalidOption('streams', 'must be an object mapping stream names to route options')
  }
  const names = Object.keys(options.streams)
  if (names.length === 0) throw new InvalidOption('streams', 'must map at least one stream')
  const streams = new Map<string, CompiledRoute>()
  for (const name of names) {
    const stream = options.streams[name]
    // The upgrade belongs to the multiplexed route: a stream's own upgrade hooks would never
    // run, and a stream guarded only by one would be open to anyone. Refuse them loudly.
    for (const option of UPGRADE_ONLY) {
      if (stream?.[option] !== undefined) {
        throw new InvalidOption(`streams.${name}.${option}`, 'applies to the upgrade: set it on the multiplexed route (or use the stream\'s permissions)')
      }
    }
    streams.set(name, compileRoute(instance, state, `${path}#${name}`, stream))
  }
  const permissions = options.permissions ?? []
  const limits = {
    maxPayload: positiveInteger('maxPayload', options.maxPayload, state.options.maxPayload),
    maxOutbound: state.options.maxOutbound,
    maxActionsPerSecond: state.options.maxActionsPerSecond
  }
  // Streams a socket's upgrade request may not use, decided with the app's hooks done.
  const refusedStreams = new WeakMap<FastifyRequest, Set<string>>()

  registerUpgrade(instance, state, path, options, async (request, reply) => {
    if (!(await canConnect(permissions, request))) {
      await refuseConnect(reply)
      return
    }
    const refused = new Set<string>()
    for (const [name, route] of streams) if (!(await canConnect(route.permissions, request))) refused.add(name)
    refusedStreams.set(request, refused)
  }, (socket, request) => {
    const session = new Session(socket, request, limits, state)
    session.attach(new Multiplexer(session, streams, refusedStreams.get(request) ?? new Set(), state, state.options.maxDepth))
  })
  state.declared.push({
    kind: 'multiplex',
    path: instance.prefix + path,
    streams: [...streams].map(([name, route]) => ({ name, route, options: options.streams[name] }))
  })
}
