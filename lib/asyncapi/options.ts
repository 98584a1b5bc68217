/**
 * Options of the AsyncAPI document: its `info` and `servers`, and the plugin option that
 * serves it over HTTP. Checked at registration, before any route exists.
 */
import { InvalidOption } from '../errors.js'

/** A plain JSON object of the document. */
export type JsonObject = Record<string, any>

/** The document's `info`. Default: name, version and description of the app's package.json (the working directory's). */
export interface AsyncApiInfo {
  title: string
  version: string
  description?: string
}

/** Options of `app.wsRest.asyncapi(options)`. */
export interface AsyncApiOptions {
  info?: Partial<AsyncApiInfo>
  /** AsyncAPI Server Objects by name (`{ production: { host: 'api.example.com', protocol: 'wss' } }`). Default: none. */
  servers?: Record<string, JsonObject>
}

/** The plugin option `asyncapi`: serve the document over HTTP. */
export interface AsyncApiPluginOptions extends AsyncApiOptions {
  /** Where the JSON document is served (a plain HTTP GET). Default `/asyncapi.json`. */
  path?: string
}

/** The plugin option after checks. */
export interface ResolvedAsyncApi extends AsyncApiOptions {
  path: string
}

const DEFAULT_PATH = '/asyncapi.json'
/** Check `info` and `servers` of the method's or the plugin's options. */
export function checkAsyncApiOptions (name: string, value: unknown): AsyncApiOptions {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new InvalidOption(name, 'must be an object')
  const { info, servers } = value as Record<string, unknown>
  if (info !== undefined) {
    if (info === null || typeof info !== 'object' || Array.isArray(info)) throw new InvalidOption(`${name}.info`, 'must be an object')
    for (const field of ['title', 'version', 'description'] as const) {
      const v = (info as Record<string, unknown>)[field]
      if (v !== undefined && typeof v !== 'string') throw new InvalidOption(`${name}.info.${field}`, 'must be a string')
    }
  }
  if (servers !== undefined) {
    if (servers === null || typeof servers !== 'object' || Array.isArray(servers) ||
        Object.values(servers).some((s) => s === null || typeof s !== 'object' || Array.isArray(s))) {
      throw new InvalidOption(`${name}.servers`, 'must be an object of AsyncAPI server objects ({ name: { host, protocol } })')
    }
  }
  return { info: info as AsyncApiOptions['info'], servers: servers as AsyncApiOptions['servers'] }
}

/** The plugin option `asyncapi`: `true` or an object turns the HTTP route on. */
export function resolveAsyncApiOption (value: unknown): ResolvedAsyncApi | undefined {
  if (value === undefined || value === false) return undefined
  const options = value === true ? {} : value
  const checked = checkAsyncApiOptions('asyncapi', options)
  const path = (options as Record<string, unknown>).path ?? DEFAULT_PATH
  if (typeof path !== 'string' || !path.startsWith('/')) throw new InvalidOption('asyncapi.path', 'must be a string starting with "/"')
  return { ...checked, path }
}
