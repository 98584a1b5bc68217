/**
 * Internal symbols (Fastify's `lib/symbols.js` pattern): state reachable by the plugin's
 * own modules without becoming public properties a user could come to depend on.
 */

/** On a message context: the socket consumer it belongs to (subscriptions live there). */
export const kConnection = Symbol('fastify-ws-rest.connection')

/** On a message context: the permissions its action is checked by (object permissions run with them after a lookup). */
export const kPermissions = Symbol('fastify-ws-rest.permissions')
