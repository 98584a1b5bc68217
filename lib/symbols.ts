/**
 * Internal state lives behind symbols (Fastify's lib/symbols.js pattern), never on
 * public properties of the instance.
 */

/** Own preAction hooks of one encapsulation context (an array, own property per context). */
export const kPreActionHooks = Symbol('fastify-ws-rest.preActionHooks')
/** The plugin's shared state (options, open connections), on the instance it was registered on. */
export const kState = Symbol('fastify-ws-rest.state')
