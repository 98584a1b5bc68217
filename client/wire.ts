/**
 * The wire format as the client sees it: the reply shape, the `{"stream", "payload"}`
 * envelope of multiplexed sockets, and reading a frame without ever throwing.
 */

/** A reply or an event as the server sends it (DCRF's five keys; an opted-in extension such as `seq` may add one). */
export interface Reply {
  errors: unknown[]
  data: unknown
  action: string | null
  response_status: number
  request_id: unknown
  [extra: string]: unknown
}

/** A frame read from the socket: the message, and the stream it came on (`undefined` on a plain socket, `null` when the server could not tell). */
export interface Incoming {
  stream: string | null | undefined
  message: Reply
}

export function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** The text of one frame: the request itself, or on a multiplexed socket the request wrapped for `stream`. */
export function encodeFrame (payload: Record<string, unknown>, stream: string | undefined, multiplex: boolean): string {
  return JSON.stringify(multiplex ? { stream, payload } : payload)
}

/**
 * Read one frame. Anything that is not a reply comes back as an Error for the client's
 * 'error' event: a bad frame from the server must never throw out of the socket's
 * message handler (that would kill the handler in some runtimes, crash Node in others).
 */
export function readFrame (data: unknown, multiplex: boolean): Incoming | Error {
  if (typeof data !== 'string') return new Error('Ignored a binary frame from the server: the protocol is JSON text frames')
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    return new Error(`Ignored a frame from the server that is not JSON: ${preview(data)}`)
  }
  let stream: string | null | undefined
  let message = value
  if (multiplex) {
    if (!isObject(value) || !('payload' in value) || (typeof value.stream !== 'string' && value.stream !== null)) {
      return new Error(`Ignored a frame from the server that is not a {"stream", "payload"} envelope: ${preview(data)}`)
    }
    stream = value.stream
    message = value.payload
  }
  if (!isObject(message) || typeof message.response_status !== 'number') {
    return new Error(`Ignored a frame from the server that is not a reply: ${preview(data)}`)
  }
  if (!Array.isArray(message.errors)) message.errors = []
  if (typeof message.action !== 'string') message.action = null
  return { stream, message: message as Reply }
}

/** The start of a frame, for error messages. */
function preview (text: string): string {
  return text.length > 80 ? `${JSON.stringify(text.slice(0, 80))}…` : JSON.stringify(text)
}
