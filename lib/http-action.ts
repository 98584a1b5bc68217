/**
 * HTTP routes over the socket — DCRF's `view_as_consumer`: an action that runs a route of
 * the same Fastify app through `inject`, so the route's own hooks (auth, rate limiting),
 * validation and serialization apply exactly as they do over HTTP, and relays its answer
 * in the protocol's five-key shape with the route's status code.
 *
 * ```ts
 * app.wsRest.route('/ws/items/', { actions: [
 *   httpAction('retrieve', { method: 'GET', url: '/items/:id' }),   // {"action":"retrieve","pk":1}
 *   httpAction('create', { method: 'POST', url: '/items' })         // {"action":"create","data":{…}}
 * ] })
 * ```
 */
import type { FastifyRequest } from 'fastify'
import { action, type ActionContext, type ActionDefinition, type ActionResult } from './action.js'
import { HttpRouteError, InvalidOption, ValidationError, type FieldErrors } from './errors.js'
import type { Permission } from './permissions.js'

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS'

/** The HTTP methods an {@link httpAction} can call (either case). */
export type HttpActionMethod = Method | Lowercase<Method>

/** Options of {@link httpAction}. */
export interface HttpActionOptions {
  /**
   * The route's method. Default by action name, REST-style: `list`/`retrieve` → GET,
   * `create` → POST, `update` → PUT, `patch` → PATCH, `delete` → DELETE; required for any other name.
   */
  method?: HttpActionMethod
  /**
   * The route's URL pattern, e.g. `/items/:id`. Each `:name` is filled from the message:
   * `parameters.name` (DCRF's key), else the top-level `name` argument, else — for `:id`
   * only — `pk`. Values are URL-encoded, so they stay inside their path segment.
   */
  url: string
  /** Headers of the upgrade request sent along, so the route's auth hooks see the same user. Default {@link DEFAULT_FORWARD_HEADERS}. */
  forwardHeaders?: readonly string[]
  /** Overrides the WebSocket route's permissions for this action (checked before the HTTP route is called). */
  permissions?: Permission[]
  /** Run beside the socket's other actions instead of in turn. */
  detached?: boolean
}

/** The upgrade request's headers that carry identity, forwarded unless `forwardHeaders` says otherwise. */
export const DEFAULT_FORWARD_HEADERS: readonly string[] = Object.freeze(['authorization', 'cookie'])

const DEFAULT_METHODS: Readonly<Record<string, Method>> = {
  list: 'GET', retrieve: 'GET', create: 'POST', update: 'PUT', patch: 'PATCH', delete: 'DELETE'
}
const METHODS = new Set<string>(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
/** Methods whose request carries `data` as a JSON body (Fastify 5 parses a DELETE body too). */
const BODY_METHODS = new Set<string>(['POST', 'PUT', 'PATCH', 'DELETE'])
/** Headers that describe the injected body, which this module sets itself; forwarding them would corrupt it. */
const BODY_HEADERS = new Set(['content-length', 'content-type', 'transfer-encoding'])

/** One piece of a compiled URL pattern. */
type UrlPart = { literal: string } | { param: string, optional: boolean }

/** A character that ends a parameter name in a find-my-way pattern. */
const PARAM_END = /[/\-.(:?*]/

/**
 * Split a find-my-way URL pattern into literals and parameters, once, at declaration.
 * `::` is a literal colon; a parameter's regex (`:id(^\\d+$)`) is skipped (the route checks it).
 */
function compileUrl (url: unknown): UrlPart[] {
  if (typeof url !== 'string' || !url.startsWith('/')) throw new InvalidOption('url', 'must be a string starting with "/"')
  const parts: UrlPart[] = []
  let literal = ''
  for (let i = 0; i < url.length; i++) {
    const c = url[i]
    if (c === '*') throw new InvalidOption('url', 'wildcards (*) are not supported; name the parameter instead (/files/:name)')
    if (c === '?' || c === '#') {
      throw new InvalidOption('url', 'must be a path without query string or fragment (send the query as the `query` argument)')
    }
    if (c !== ':') { literal += c; continue }
    if (url[i + 1] === ':') { literal += ':'; i++; continue }
    let j = i + 1
    while (j < url.length && !PARAM_END.test(url[j])) j++
    const name = url.slice(i + 1, j)
    if (name === '') throw new InvalidOption('url', `has a parameter without a name at position ${i}`)
    if (url[j] === '(') {
      let depth = 0
      for (; j < url.length; j++) {
        if (url[j] === '\\') j++
        else if (url[j] === '(') depth++
        else if (url[j] === ')' && --depth === 0) break
      }
      if (depth !== 0) throw new InvalidOption('url', `has an unclosed regular expression after ":${name}"`)
      j++
    }
    const optional = url[j] === '?'
    if (optional) j++
    if (literal !== '') parts.push({ literal })
    literal = ''
    parts.push({ param: name, optional })
    i = j - 1
  }
  if (literal !== '') parts.push({ literal })
  return parts
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The value of URL parameter `name`: `parameters.name`, else the argument `name`, else (for `id`) `pk`. */
function paramValue (name: string, args: Record<string, unknown>, parameters: Record<string, unknown> | undefined): unknown {
  if (parameters?.[name] !== undefined) return parameters[name]
  if (args[name] !== undefined) return args[name]
  // A front end written for a DCRF generic consumer sends detail lookups as `pk`.
  return name === 'id' ? args.pk : undefined
}

/**
 * The request path with every parameter filled and URL-encoded, or a 400 keyed by each
 * parameter that is missing or unusable.
 *
 * A value of `.` or `..` is refused: the URL parser would resolve it as a dot segment
 * (even encoded as `%2E%2E`), so `/users/:id/profile` with `id: ".."` would run `/profile`,
 * a route this action does not expose.
 */
function buildPath (parts: readonly UrlPart[], args: Record<string, unknown>): string {
  const errors: FieldErrors = {}
  const raw = args.parameters
  if (raw !== undefined && !isPlainObject(raw)) errors.parameters = ['Expected a dictionary of URL parameters.']
  const parameters = isPlainObject(raw) ? raw : undefined
  let path = ''
  for (const part of parts) {
    if ('literal' in part) { path += part.literal; continue }
    const value = paramValue(part.param, args, parameters)
    if (value === undefined || value === null) {
      // find-my-way matches `/items/:id?` as `/items`.
      if (part.optional) path = path.endsWith('/') ? path.slice(0, -1) : path
      else errors[part.param] = ['This field is required.']
    } else if (typeof value === 'number' && Number.isFinite(value)) {
      path += encodeURIComponent(String(value))
    } else if (typeof value !== 'string') {
      errors[part.param] = ['A valid string or number is required.']
    } else if (value === '') {
      errors[part.param] = ['This field may not be blank.']
    } else if (value === '.' || value === '..') {
      errors[part.param] = ['Enter a valid value.']
    } else {
      path += encodeURIComponent(value)
    }
  }
  if (Object.keys(errors).length > 0) throw new ValidationError(errors)
  return path === '' ? '/' : path
}

type QueryValue = string | number | boolean

function isQueryValue (value: unknown): value is QueryValue {
  return typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value))
}

/** `args.query` as inject's querystring: strings, numbers, booleans, or lists of them; anything else → 400 keyed `query`. */
function buildQuery (query: unknown): Record<string, string | string[]> | undefined {
  if (query === undefined || query === null) return undefined
  const invalid = ValidationError.field('query', 'Expected a dictionary of strings, numbers, booleans or lists of them.')
  if (!isPlainObject(query)) throw invalid
  const out: Record<string, string | string[]> = {}
  for (const [key, value] of Object.entries(query)) {
    if (isQueryValue(value)) out[key] = String(value)
    else if (Array.isArray(value) && value.every(isQueryValue)) out[key] = value.map(String)
    else throw invalid
  }
  return out
}

function forwardedHeaders (request: FastifyRequest, names: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = { accept: 'application/json' }
  for (const name of names) {
    const value = request.headers[name]
    if (typeof value === 'string') headers[name] = value
    else if (Array.isArray(value)) headers[name] = value.join(', ')
  }
  return headers
}

/** The response body as the reply's `data`: parsed JSON, else the text, `null` when empty. */
function readBody (body: string, contentType: unknown): unknown {
  if (body === '') return null
  if (typeof contentType === 'string' && /[/+]json\b/i.test(contentType)) {
    try {
      return JSON.parse(body)
    } catch {
      return body
    }
  }
  return body
}

function checkForwardHeaders (value: unknown): readonly string[] {
  if (value === undefined) return DEFAULT_FORWARD_HEADERS
  if (!Array.isArray(value) || value.some((h) => typeof h !== 'string' || h === '')) {
    throw new InvalidOption('forwardHeaders', 'must be an array of header names')
  }
  const names = value.map((h: string) => h.toLowerCase())
  const body = names.find((h) => BODY_HEADERS.has(h))
  if (body !== undefined) throw new InvalidOption('forwardHeaders', `"${body}" describes the injected body and cannot be forwarded`)
  return Object.freeze(names)
}

/**
 * An action that calls an HTTP route of the same app through Fastify's `inject`, with the
 * route's own hooks, validation and serialization (DCRF's `view_as_consumer`).
 *
 * The message fills the request: URL parameters from `parameters` / top-level arguments
 * (`pk` for `:id`), `query` → querystring, `data` → JSON body (POST, PUT, PATCH, DELETE).
 * The upgrade request's `forwardHeaders` (default `authorization`, `cookie`) and client IP
 * go along. The reply carries the route's status; `data` is its body (JSON parsed, else
 * text, `null` when empty) — for a 4xx too, with `errors: []`, as DCRF's view_as_consumer
 * does; a 5xx has `["Internal server error"]` and nothing of the route's body.
 */
export function httpAction (name: string, options: HttpActionOptions): ActionDefinition {
  if (typeof name !== 'string' || name === '') throw new InvalidOption('name', 'httpAction needs an action name')
  if (options === null || typeof options !== 'object') throw new InvalidOption('options', `httpAction("${name}") needs { url }`)
  const given: unknown = options.method ?? (Object.hasOwn(DEFAULT_METHODS, name) ? DEFAULT_METHODS[name] : undefined)
  if (given === undefined) throw new InvalidOption('method', `httpAction("${name}") needs a method (no default for this name)`)
  const method = typeof given === 'string' ? given.toUpperCase() : ''
  if (!METHODS.has(method)) throw new InvalidOption('method', `must be one of ${[...METHODS].join(', ')}`)
  const parts = compileUrl(options.url)
  const forward = checkForwardHeaders(options.forwardHeaders)
  const sendsBody = BODY_METHODS.has(method)

  async function handler (ctx: ActionContext, args: Record<string, unknown>): Promise<ActionResult> {
    const url = buildPath(parts, args)
    const query = buildQuery(args.query)
    const headers = forwardedHeaders(ctx.request, forward)
    let payload: string | undefined
    if (sendsBody && args.data !== undefined) {
      headers['content-type'] = 'application/json'
      payload = JSON.stringify(args.data)
    }
    const ip: unknown = ctx.request.ip
    let response
    try {
      // request.server is the instance the wsRest route was declared on; its inject runs the
      // app's one router, so any route of the app is reachable with its own context's hooks.
      response = await ctx.request.server.inject({
        method: method as Method,
        url,
        query,
        headers,
        payload,
        // The route's request.ip is the socket client's, so per-IP rate limits and logs stay right.
        remoteAddress: typeof ip === 'string' ? ip : undefined
      })
    } catch (err) {
      // The app is closing: Fastify answers new HTTP requests with 503 then, and so do we.
      if ((err as { code?: unknown }).code === 'FST_ERR_REOPENED_CLOSE_SERVER') throw new HttpRouteError(503, [])
      throw err
    }
    const status = response.statusCode
    const body = readBody(response.body, response.headers['content-type'])
    // A 5xx keeps its internals server-side; any other status is the view's answer, body as
    // `data` and no `errors`, exactly as DCRF's view_as_consumer replies.
    if (status >= 500) throw new HttpRouteError(status, [])
    return { status, data: body }
  }

  return action(name, { detached: options.detached, permissions: options.permissions }, handler)
}
