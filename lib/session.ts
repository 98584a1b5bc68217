/**
 * One WebSocket: what belongs to the socket rather than to a route — the frame size
 * limit, binary frames, the bounded outbound buffer, the close, and graceful shutdown.
 *
 * A plain route has one consumer ({@link Connection}) per session; a multiplexed route
 * has one per stream, all sharing this socket.
 */
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Duplex } from 'node:stream'
import type { RawData, WebSocket } from 'ws'
import { BadFrame } from './errors.js'
import { FrameError } from './protocol.js'

/** The registration's open sockets, in all and by client IP, that a session joins and leaves (connection limits, shutdown). */
export interface OpenSockets {
  readonly sessions: Set<Session>
  readonly perIp: Map<string, number>
}

/** Close code sent to every socket when the server shuts down. */
export const CLOSE_GOING_AWAY = 1001
/** Close code for a frame over the size limit. */
export const CLOSE_TOO_BIG = 1009
/** Close code for a client that does not read what it is sent (its outbound buffer is full). */
export const CLOSE_SLOW_CONSUMER = 1013

/** Bytes held corked on one socket past which they are written at once (the socket stays corked for the rest of the tick). */
const FLUSH_AT = 64 * 1024

/**
 * Write batching, per socket and per tick (until process.nextTick: after the promise jobs
 * already queued, so the replies of a batch of coalesced reads, answered together, are all
 * in it). A socket's first frame of a tick is written at once: a fan-out, one frame to each
 * of many sockets, reaches the first of them as soon as before. Its later frames of the same
 * tick are held (the TCP socket corked) and written together when the tick ends: one TCP
 * write for them, not one each. Nothing is reordered — it is one stream — and ws's
 * bufferedAmount counts corked bytes, so the outbound bound sees them at once.
 */
let tick = 0
let tickEnding = false
/** TCP sockets corked this tick; uncorked together when it ends. */
const corked: Duplex[] = []

function endTick (): void {
  tick++
  tickEnding = false
  // Each uncork writes what its socket was held this tick, in one write.
  for (let i = 0; i < corked.length; i++) corked[i].uncork()
  corked.length = 0
}

/** Called before each frame `raw` is sent: true for its first of this tick (written at once); later ones are held. */
function holdAfterFirst (raw: Duplex, lastTick: number): boolean {
  if (lastTick !== tick) {
    if (!tickEnding) {
      tickEnding = true
      process.nextTick(endTick)
    }
    return true
  }
  // ws corks each frame's header and payload itself, uncorking to zero: only ours stays.
  if (raw.writableCorked === 0 && !raw.destroyed) {
    raw.cork()
    corked.push(raw)
  }
  return false
}

function byteLength (data: RawData): number {
  if (Array.isArray(data)) return data.reduce((n, b) => n + b.length, 0)
  return data instanceof ArrayBuffer ? data.byteLength : data.length
}

function toText (data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8') // the usual case: no copy
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  return Buffer.from(data).toString('utf8')
}

/** What a session hands frames to, and tells about the end. */
export interface FrameReceiver {
  /** A text frame within the size limit; `allowed` is false when it is over the socket's action rate (→ 429). */
  receive: (text: string, allowed: boolean) => void
  /** A frame that is not text (answered with an error, never parsed). */
  refuse: (error: FrameError) => void
  /** The socket closed (or is being dropped): release everything. */
  release: () => void
  /** Let in-flight actions finish, within `timeoutMs`. */
  drain: (timeoutMs: number) => Promise<void>
}

/** Limits of one session, resolved from the route and the plugin options. */
export interface SessionLimits {
  maxPayload: number
  maxOutbound: number
  maxActionsPerSecond: number
}

/**
 * A token bucket: `rate` tokens a second, at most `rate` saved up. Refilled lazily from the
 * clock when a frame arrives, so an idle socket costs no timer.
 */
class TokenBucket {
  private tokens: number
  private last = performance.now()

  constructor (private readonly rate: number) {
    this.tokens = rate
  }

  take (): boolean {
    const now = performance.now()
    this.tokens = Math.min(this.rate, this.tokens + (now - this.last) * this.rate / 1000)
    this.last = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

/** One open socket on a wsRest route. */
export class Session {
  private receiver: FrameReceiver | undefined
  private draining = false
  private released = false
  /** Made when first asked for (most sockets never are): an idle socket's memory is what it holds. */
  private closed: AbortController | undefined
  private readonly bucket: TokenBucket
  /** Cleared when a ping goes out, set again by the pong: still clear at the next ping → a dead peer. */
  private alive = true
  /** The tick this socket was last sent a frame in (write batching). */
  private lastTick = -1
  /** This socket's logger: every line carries the connection id and the route. */
  readonly log: FastifyBaseLogger

  constructor (
    readonly socket: WebSocket,
    readonly request: FastifyRequest,
    private readonly limits: SessionLimits,
    private readonly state: OpenSockets
  ) {
    // The route's pattern, never the URL: a query string may carry a token.
    this.log = request.log.child({ connection: request.id, route: request.routeOptions.url })
    this.bucket = new TokenBucket(limits.maxActionsPerSecond)
    // Attached synchronously, before anything awaits, or the client's first frames are lost.
    socket.on('message', (data, isBinary) => this.onFrame(data, isBinary))
    socket.on('close', () => this.release())
    socket.on('pong', () => { this.alive = true })
    state.sessions.add(this)
    state.perIp.set(request.ip, (state.perIp.get(request.ip) ?? 0) + 1)
  }

  /** One heartbeat: drop the socket if it did not answer the last ping, else ping it again. */
  heartbeat (): void {
    if (this.released) return
    if (!this.alive) {
      this.log.info('fastify-ws-rest: no pong since the last ping; socket dropped')
      this.release()
      this.socket.terminate()
      return
    }
    this.alive = false
    this.socket.ping()
  }

  /** Attach what handles this socket's frames (right after construction, before any frame is read). */
  attach (receiver: FrameReceiver): void {
    this.receiver = receiver
  }

  /** Aborted when the socket closes, is dropped, or the server shuts down. */
  get signal (): AbortSignal {
    if (this.closed === undefined) {
      this.closed = new AbortController()
      if (this.released || this.draining) this.closed.abort()
    }
    return this.closed.signal
  }

  /** Whether replies can still be sent. */
  get open (): boolean {
    return !this.released && this.socket.readyState === this.socket.OPEN
  }

  private onFrame (data: RawData, isBinary: boolean): void {
    // During shutdown the socket is about to close with 1001; new work would only delay it.
    if (this.draining || this.released || this.receiver === undefined) return
    if (byteLength(data) > this.limits.maxPayload) {
      this.socket.close(CLOSE_TOO_BIG, 'Message too big')
      return
    }
    if (isBinary) {
      this.receiver.refuse(new FrameError(new BadFrame('Binary frames are not supported; send JSON text frames.')))
      return
    }
    this.receiver.receive(toText(data), this.bucket.take())
  }

  /**
   * Send one encoded frame; false when the socket is gone (the frame is dropped).
   *
   * A client that stops reading makes ws buffer everything sent to it. Past
   * `maxOutbound` bytes the session is dropped at once (subscriptions released, nothing
   * more queued) and closed with 1013, so one stalled subscriber cannot grow the
   * server's memory without bound.
   */
  send (text: string): boolean {
    if (!this.open) return false
    if (this.socket.bufferedAmount > this.limits.maxOutbound) {
      this.dropSlow(`outbound buffer over ${this.limits.maxOutbound} bytes`)
      return false
    }
    const raw = (this.socket as unknown as { _socket?: Duplex })._socket
    if (raw !== undefined && holdAfterFirst(raw, this.lastTick)) this.lastTick = tick
    this.socket.send(text)
    // A large burst goes out as it grows, not all at the end of the tick: held back whole, a
    // reading client's burst past maxOutbound would look like a stalled one.
    if (raw !== undefined && raw.writableCorked > 0 && raw.writableLength >= FLUSH_AT) {
      raw.uncork()
      raw.cork()
    }
    return true
  }

  /** Close the socket from the server's side: everything is released now, the close frame follows. */
  close (code: number, reason: string): void {
    this.release()
    this.socket.close(code, reason)
  }

  /** Give up on a client that does not keep up: release everything now, and close with 1013. */
  dropSlow (why: string): void {
    if (this.released) return
    this.log.warn({ buffered: this.socket.bufferedAmount, why }, 'fastify-ws-rest: client is not keeping up; socket closed (1013)')
    this.release()
    this.socket.close(CLOSE_SLOW_CONSUMER, 'Client too slow')
  }

  private release (): void {
    if (this.released) return
    this.released = true
    this.closed?.abort()
    this.receiver?.release()
    this.state.sessions.delete(this)
    const left = (this.state.perIp.get(this.request.ip) ?? 1) - 1
    if (left > 0) this.state.perIp.set(this.request.ip, left)
    else this.state.perIp.delete(this.request.ip)
  }

  /**
   * Graceful close: take no new frames, let in-flight actions finish (and commit) up to
   * `timeoutMs`, then close with 1001.
   */
  async shutdown (timeoutMs: number): Promise<void> {
    this.draining = true
    this.closed?.abort()
    await this.receiver?.drain(timeoutMs)
    if (this.socket.readyState === this.socket.OPEN || this.socket.readyState === this.socket.CONNECTING) {
      this.socket.close(CLOSE_GOING_AWAY, 'Server shutting down')
    }
  }
}
