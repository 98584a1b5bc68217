/**
 * What the client rejects with. One class per cause, so an app can tell "the server said
 * no" (WsRestError) from "no reply in time" from "the connection dropped while a write
 * was in flight" — the last one means the write may or may not have happened, which is
 * why such a write is never re-sent behind the app's back.
 */
import type { Reply } from './wire.js'

/** A reply with `response_status` >= 400: the server refused or failed the request. */
export class WsRestError extends Error {
  /** The reply's `response_status` (400, 403, 404, 405, 409, 429, 500…). */
  readonly status: number
  /** The reply's `errors`: strings (`["Not found"]`) or one object keyed by field (`[{"username": ["…"]}]`). */
  readonly errors: unknown[]
  /** The action the reply names (the one sent, or `null` when the server could not read it). */
  readonly action: string | null
  /** The request_id the reply carried. */
  readonly requestId: unknown
  /** The reply's `data` (usually `null`). */
  readonly data: unknown
  /** The stream it came on (multiplexed sockets), else `undefined`. */
  readonly stream: string | undefined

  constructor (reply: Reply, stream?: string) {
    super(`${reply.action ?? 'request'} failed with status ${reply.response_status}: ${describe(reply.errors)}`)
    this.name = 'WsRestError'
    this.status = reply.response_status
    this.errors = reply.errors
    this.action = reply.action
    this.requestId = reply.request_id
    this.data = reply.data
    this.stream = stream
  }
}

/**
 * The server ended a live subscription because another connection took its resume key
 * (a `{"action": "resume", "response_status": 409, "request_id": <the subscription's>}`
 * frame): typically the same app in a second tab or process resuming with a copied
 * key, or a reconnect the server saw before this socket's close. The subscription now
 * lives on the other connection, so this client ends its own — it is not restored on
 * reconnect (that would take the key back and start a tug of war) — and says so through
 * `onError` and the client's 'error' event. A WsRestError (status 409), so code that
 * handles those keeps working; test `instanceof WsRestTakenOverError` to act on this case.
 */
export class WsRestTakenOverError extends WsRestError {
  constructor (reply: Reply, stream?: string) {
    super(reply, stream)
    this.name = 'WsRestTakenOverError'
  }
}

/** No reply within the request's `timeout` (a request queued while disconnected times out too). */
export class WsRestTimeoutError extends Error {
  readonly action: string
  readonly requestId: string
  /** The timeout that ran out, in ms. */
  readonly timeout: number

  constructor (action: string, requestId: string, timeout: number) {
    super(`${action} (request_id ${requestId}): no reply within ${timeout} ms`)
    this.name = 'WsRestTimeoutError'
    this.action = action
    this.requestId = requestId
    this.timeout = timeout
  }
}

/**
 * The connection dropped after the request was sent and before its (last) reply came:
 * its outcome is unknown. Only writes (and streamed reads that had begun to answer) end
 * this way; an idempotent read is re-sent after the reconnect instead.
 */
export class WsRestConnectionLostError extends Error {
  readonly action: string
  readonly requestId: string

  constructor (action: string, requestId: string) {
    super(`${action} (request_id ${requestId}): connection lost before the reply; outcome unknown, not re-sent`)
    this.name = 'WsRestConnectionLostError'
    this.action = action
    this.requestId = requestId
  }
}

/** The client was closed (by `close()`, or by a drop with `reconnect: false`) before the request was answered. */
export class WsRestClosedError extends Error {
  readonly action: string
  readonly requestId: string | undefined

  constructor (action: string, requestId?: string) {
    super(requestId === undefined
      ? `${action}: the client is closed`
      : `${action} (request_id ${requestId}): the client was closed before the reply`)
    this.name = 'WsRestClosedError'
    this.action = action
    this.requestId = requestId
  }
}

/**
 * The server refused the upgrade with 401 or 403: the credentials (token, origin) are not
 * accepted, and trying again with the same ones cannot succeed. The client stops (state
 * `closed`, no reconnect); pending requests reject with this error. Seen only where the
 * WebSocket implementation reports the HTTP status (`ws` in Node); a browser reports a
 * refused upgrade as a bare close 1006, which the client cannot tell from a network error.
 */
export class WsRestUpgradeRefusedError extends Error {
  /** The HTTP status the upgrade was refused with: 401 or 403. */
  readonly status: number

  constructor (status: number) {
    super(`the server refused the connection with HTTP ${status}` +
      `${status === 401 ? ' (not authenticated: a missing, invalid or expired token)' : ' (forbidden)'}; not retrying with the same credentials`)
    this.name = 'WsRestUpgradeRefusedError'
    this.status = status
  }
}

/** Errors as compact JSON for a message (they are JSON: they came off the wire). */
function describe (errors: unknown[]): string {
  try {
    return JSON.stringify(errors)
  } catch {
    return String(errors)
  }
}
