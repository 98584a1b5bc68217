/**
 * The one error table of fastify-ws-rest.
 *
 * Every condition a client or a user of the plugin can hit is a coded
 * `@fastify/error` class with a `statusCode`. For the errors that reach the wire,
 * the message is exactly the DCRF text (docs/protocol.md), so `errors: [err.message]`
 * is the reply; ValidationError carries DRF-shaped field details instead.
 */
import createError from '@fastify/error'

/** An error that carries the `errors` array of its reply itself, already safe to send. */
export interface WireErrors {
  readonly wire: unknown[]
}

/** Detail of a DRF-style validation error: field name → messages, nested for nested fields. */
export interface FieldErrors {
  [field: string]: string[] | FieldErrors
}

/** 404: pk missing from the database, not a valid pk, or outside the connection's queryset. */
export const NotFound = createError('FST_WSREST_NOT_FOUND', 'Not found', 404)

/** 403: a permission object or a preAction hook refused the action. */
export const PermissionDenied = createError(
  'FST_WSREST_PERMISSION_DENIED',
  'You do not have permission to perform this action.',
  403
)

/** 405: the frame names an action the route does not have (case-sensitive). */
export const MethodNotAllowed = createError<[string]>(
  'FST_WSREST_METHOD_NOT_ALLOWED',
  'Method "%s" not allowed.',
  405
)

/** 405: the frame has no `action` key at all. */
export const ActionMissing = createError(
  'FST_WSREST_ACTION_MISSING',
  'Unable to find action in message body.',
  405
)

/** 409: optimistic concurrency — the row changed since the client read it. */
export const Conflict = createError(
  'FST_WSREST_CONFLICT',
  'Conflict: the object was changed by someone else.',
  409
)

/** 404 on a multiplexed route: the envelope names a stream the route does not map. */
export const UnknownStream = createError<[string]>('FST_WSREST_UNKNOWN_STREAM', 'Stream "%s" is not mapped.', 404)

/** 429: the connection holds as many subscriptions as it may. */
export const TooManySubscriptions = createError<[number]>(
  'FST_WSREST_TOO_MANY_SUBSCRIPTIONS',
  'Too many subscriptions: a connection may hold %s.',
  429
)

/** 429: the connection exceeded its action rate. */
export const Throttled = createError('FST_WSREST_THROTTLED', 'Request was throttled.', 429)

/** 500: anything unexpected. The cause is logged server-side, never sent. */
export const InternalError = createError('FST_WSREST_INTERNAL', 'Internal server error', 500)

/** Registration-time: an option of the plugin or of a route is missing or wrong. */
export const InvalidOption = createError<[string, string]>(
  'FST_WSREST_INVALID_OPTION',
  'Invalid option "%s": %s',
  500
)

/** Registration-time: two actions with one name on one route. */
export const DuplicateAction = createError<[string, string]>(
  'FST_WSREST_DUPLICATE_ACTION',
  'Action "%s" is declared twice on route %s',
  500
)

/** Registration-time: a preAction hook added after the app is ready. */
export const HookAfterReady = createError(
  'FST_WSREST_HOOK_AFTER_READY',
  'preAction hooks must be added before the app is ready',
  500
)

const ValidationErrorBase = createError('FST_WSREST_VALIDATION', 'Invalid input.', 400)

/**
 * 400 with DRF-shaped details: `errors` on the wire is `[fields]`, every failing field
 * at once, e.g. `[{"password2": ["Passwords do not match."]}]`.
 */
export class ValidationError extends ValidationErrorBase implements WireErrors {
  readonly fields: FieldErrors
  constructor (fields: FieldErrors) {
    super()
    this.fields = fields
  }

  get wire (): unknown[] { return [this.fields] }

  /** Shorthand for the common single-field case: `ValidationError.field('pk', 'This field is required.')`. */
  static field (name: string, message: string): ValidationError {
    return new ValidationError({ [name]: [message] })
  }
}

/**
 * 400 for a frame that is not a usable request (not JSON, not an object, too deep, binary).
 * The message is the reply text.
 */
export const BadFrame = createError<[string]>('FST_WSREST_BAD_FRAME', '%s', 400)

const HttpRouteErrorBase = createError<[number]>('FST_WSREST_HTTP_ROUTE', 'The HTTP route answered %s', 500)

/**
 * An error answer of an HTTP route relayed by `httpAction`: the route's own status and the
 * `errors` to send. A 5xx always carries only `"Internal server error"` — the route has
 * logged its cause, and its body (a stack, SQL) must never reach the socket.
 */
export class HttpRouteError extends HttpRouteErrorBase implements WireErrors {
  readonly wire: unknown[]
  constructor (statusCode: number, errors: unknown[]) {
    super(statusCode)
    this.statusCode = statusCode
    this.wire = statusCode >= 500 ? [new InternalError().message] : errors
  }
}

/** The `errors` array of the reply for any error raised while handling a frame. */
export function wireErrors (err: Error & Partial<WireErrors>): unknown[] {
  return err.wire ?? [err.message]
}

/**
 * True when the error is one of ours and meant for the client, to be sent with its own
 * status: a coded 4xx, or any error carrying its own (already safe) wire errors.
 * Anything else is logged and answered 500.
 */
export function isClientError (err: unknown): err is Error & { statusCode: number, code: string } {
  if (!(err instanceof Error)) return false
  const { code, statusCode } = err as Error & { code?: unknown, statusCode?: unknown }
  return typeof code === 'string' && code.startsWith('FST_WSREST_') && typeof statusCode === 'number' &&
    (statusCode < 500 || Array.isArray((err as Partial<WireErrors>).wire))
}
