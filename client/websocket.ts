/**
 * The WebSocket the client runs on: the browser's global one, or a constructor the app
 * passes (in Node 20, `WebSocket` from the `ws` package). Only the standard surface
 * (`onopen`/`onmessage`/`onerror`/`onclose`, `send`, `close`, `readyState`) is used, so
 * both fit.
 */

/** The part of a WebSocket instance the client uses. */
export interface WebSocketLike {
  readonly readyState: number
  // `any` parameters: browsers type these as DOM events and `ws` as its own event
  // classes; a narrower type here would reject one of the two constructors.
  onopen: ((event: any) => void) | null
  onmessage: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
  onclose: ((event: any) => void) | null
  send: (data: string) => void
  close: (code?: number, reason?: string) => void
}

/** A WebSocket constructor: `globalThis.WebSocket`, or `WebSocket` from `ws`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/** `readyState` values (the standard numbering; `ws` uses the same). */
export const OPEN = 1
export const CLOSED = 3

/** The constructor to use: the one given, else the global one, else a clear error. */
export function resolveWebSocket (given: WebSocketConstructor | undefined): WebSocketConstructor {
  if (given !== undefined) return given
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (global === undefined) {
    throw new TypeError('No WebSocket implementation: this runtime has no global WebSocket. ' +
      'Pass one in the options, e.g. createClient(url, { WebSocket }) with `import WebSocket from \'ws\'`.')
  }
  return global
}
