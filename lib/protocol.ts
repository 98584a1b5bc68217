/**
 * The DCRF wire format: one JSON object per text frame in, five-key replies out.
 *
 * This is the only module that knows the JSON field names (`action`, `request_id`,
 * `response_status`, …). Everything above it works with {@link ActionRequest} and
 * {@link Reply}.
 */
import { BadFrame } from './errors.js'

/** A parsed request frame: the action's name, the echoed request id, and every other key as arguments. */
export interface ActionRequest {
  /** The `action` key, or `undefined` when the frame has none (→ 405). */
  action: unknown
  /** The `request_id` key, echoed verbatim; `null` when absent. */
  requestId: unknown
  /** Every key but `action`, `request_id` and `resume`. */
  args: Record<string, unknown>
  /** The `resume` key (resumable subscriptions, see lib/observer/resume.ts), unchecked; `undefined` when absent. */
  resume?: unknown
}

/** One reply or event, before encoding. */
export interface Reply {
  action: unknown
  status: number
  data: unknown
  errors: unknown[]
  requestId: unknown
}

/** A frame that could not become a request: the error to answer with, and what of the frame can be echoed. */
export class FrameError {
  constructor (
    readonly error: Error & { statusCode?: number },
    readonly action: unknown = null,
    readonly requestId: unknown = null,
    /** The parsed frame, when it parsed (a too-deep frame): a multiplexer reads its stream from it. */
    readonly value?: unknown
  ) {}
}

const OPEN_BRACE = 123 // {
const OPEN_BRACKET = 91 // [
const CLOSE_BRACE = 125 // }
const CLOSE_BRACKET = 93 // ]
const QUOTE = 34 // "
const BACKSLASH = 92 // \

/**
 * Deepest nesting of arrays/objects in a JSON text, stopping early once past `limit`.
 *
 * Scans the raw text instead of the parsed value so the check costs one pass with no
 * allocation, and so a 10,000-level `request_id` never reaches a recursive
 * JSON.stringify (a stack overflow that would take the process down).
 */
function exceedsDepth (text: string, limit: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === BACKSLASH) i++
      else if (c === QUOTE) inString = false
    } else if (c === QUOTE) {
      inString = true
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > limit) return true
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--
    }
  }
  return false
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A scalar can always be echoed safely; anything nested is dropped from an error reply for a too-deep frame. */
function echoable (value: unknown): unknown {
  return value === undefined || (typeof value === 'object' && value !== null) ? null : value
}

/**
 * Parse one text frame as JSON, or a {@link FrameError} to answer with.
 *
 * `maxDepth` bounds nesting anywhere in the frame. A frame can only be that deep if
 * it is at least twice as long, so short frames skip the scan.
 */
export function parseJson (text: string, maxDepth: number): unknown {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return new FrameError(new BadFrame('Invalid JSON.'))
  }
  // Only an object can become a request; anything else is refused by its type, unscanned.
  if (isPlainObject(value) && text.length > maxDepth * 2 && exceedsDepth(text, maxDepth)) {
    return new FrameError(
      new BadFrame(`Message nested too deeply (more than ${maxDepth} levels).`),
      typeof value.action === 'string' ? value.action : null,
      echoable(value.request_id),
      value
    )
  }
  return value
}

/** A parsed JSON value as a request, or a {@link FrameError} when it is not an object. */
export function toRequest (value: unknown): ActionRequest | FrameError {
  if (!isPlainObject(value)) {
    return new FrameError(new BadFrame(`Invalid message. Expected a JSON object, but got ${jsonTypeName(value)}.`))
  }
  const { action, request_id: requestId, resume, ...args } = value
  return { action, requestId: requestId === undefined ? null : requestId, args, resume }
}

/** Parse one text frame into a request, or a {@link FrameError} to answer with. */
export function parseFrame (text: string, maxDepth: number): ActionRequest | FrameError {
  const value = parseJson(text, maxDepth)
  return value instanceof FrameError ? value : toRequest(value)
}

/** A multiplexed frame: the stream it is for, and its payload (a request). */
export interface Envelope {
  stream: string
  payload: unknown
}

/**
 * A parsed JSON value as a multiplexed envelope `{"stream", "payload"}`, or a
 * {@link FrameError} naming what is wrong (its reply goes out with stream `null`).
 */
export function toEnvelope (value: unknown): Envelope | FrameError {
  if (!isPlainObject(value)) {
    return new FrameError(new BadFrame(`Invalid message. Expected a JSON object, but got ${jsonTypeName(value)}.`))
  }
  if (typeof value.stream !== 'string') {
    return new FrameError(new BadFrame('Invalid message. Expected {"stream": <name>, "payload": <request>}.'))
  }
  return { stream: value.stream, payload: value.payload }
}

/**
 * Where a multiplexed frame's error goes: to the stream the envelope names, echoing its
 * payload's action and request_id, when the frame parsed that far (a too-deep payload);
 * otherwise to stream `null`, as it is.
 */
export function envelopeError (error: FrameError): { stream: string | null, error: FrameError } {
  const value = error.value
  if (!isPlainObject(value) || typeof value.stream !== 'string') return { stream: null, error }
  const payload = isPlainObject(value.payload) ? value.payload : {}
  return {
    stream: value.stream,
    error: new FrameError(error.error, typeof payload.action === 'string' ? payload.action : null, echoable(payload.request_id))
  }
}

/** Wrap an encoded reply in the multiplexed envelope of `stream` (`null` for a frame with no stream). */
export function encodeEnvelope (stream: string | null, payloadText: string): string {
  return `{"stream":${JSON.stringify(stream)},"payload":${payloadText}}`
}

/** The name a client would use for a JSON value's type, for error messages. */
export function jsonTypeName (value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  return typeof value
}

/**
 * Encode a reply with exactly the five DCRF keys, in DCRF's order.
 *
 * Throws if `data` cannot be encoded (a BigInt, a cycle); the caller turns that into a 500.
 */
export function encodeReply (reply: Reply): string {
  return JSON.stringify({
    errors: reply.errors,
    data: reply.data,
    action: reply.action,
    response_status: reply.status,
    request_id: reply.requestId
  })
}

/**
 * Encode an event from pieces already JSON-encoded: the data is encoded once per event
 * and shared by every subscriber, and each subscription encodes its request_id once.
 * Same five keys, same order as {@link encodeReply}; an event of a resumable subscription
 * carries its sequence number as a sixth, `seq`.
 */
export function encodeEvent (action: string, status: number, dataJson: string, requestIdJson: string, seq?: number): string {
  const tail = seq === undefined ? '}' : `,"seq":${seq}}`
  return `{"errors":[],"data":${dataJson},"action":${JSON.stringify(action)},"response_status":${status},"request_id":${requestIdJson}${tail}`
}
