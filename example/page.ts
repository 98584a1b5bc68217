/**
 * The browser page of the example, at `/`: public/index.html and public/app.js as they are,
 * and the client (`client/index.ts`) at `/client.js`, bundled into one ES module by esbuild
 * on its first request and kept in memory — so a person needs no build step to try it.
 *
 * Files are found next to this module (`import.meta.url`), not through the working
 * directory, so the server may be started from anywhere.
 */
import type { FastifyInstance, FastifyReply } from 'fastify'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const publicDir = new URL('./public/', import.meta.url)
const clientEntry = new URL('../client/index.ts', import.meta.url)

const HTML = 'text/html; charset=utf-8'
const JS = 'text/javascript; charset=utf-8'

/**
 * What the page may load: its own scripts, and sockets to its own host (CSP 3's 'self'
 * covers ws:/wss: of the same host). Usernames come from other people: the page only ever
 * sets them as text, and this makes an injected script inert all the same.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

/** The bundled client: built on the first request, then kept. */
let bundle: Promise<string> | undefined

async function buildClient (): Promise<string> {
  // Loaded only here: esbuild is a dev dependency, and only the page needs it.
  const { build } = await import('esbuild')
  const result = await build({
    entryPoints: [fileURLToPath(clientEntry)],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent'
  })
  return result.outputFiles[0]!.text
}

async function clientBundle (): Promise<string> {
  if (bundle === undefined) {
    bundle = buildClient()
    // A failed build is not kept: the next request tries again.
    bundle.catch(() => { bundle = undefined })
  }
  return await bundle
}

async function send (reply: FastifyReply, type: string, body: string): Promise<FastifyReply> {
  return await reply
    .type(type)
    .header('cache-control', 'no-cache')
    .header('x-content-type-options', 'nosniff')
    .send(body)
}

/** GET `/` (the page), `/app.js` (its script) and `/client.js` (the bundled client). */
export async function registerPage (app: FastifyInstance): Promise<void> {
  app.get('/', async (_request, reply) => {
    const html = await readFile(new URL('index.html', publicDir), 'utf8')
    return await send(reply.header('content-security-policy', CSP), HTML, html)
  })

  app.get('/app.js', async (_request, reply) => {
    return await send(reply, JS, await readFile(new URL('app.js', publicDir), 'utf8'))
  })

  app.get('/client.js', async (request, reply) => {
    try {
      return await send(reply, JS, await clientBundle())
    } catch (err) {
      request.log.error({ err }, 'bundling the client for the page failed')
      return await reply.code(500).type('text/plain; charset=utf-8').send('Bundling the client failed; see the server log.')
    }
  })
}
