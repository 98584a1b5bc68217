/**
 * Fastify declaration merging: `app.wsRest` on every instance once the plugin is imported.
 */
import type { WsRest } from '../lib/api.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** fastify-ws-rest: declare WebSocket routes and preAction hooks in this context. */
    wsRest: WsRest
  }
}

export {}
