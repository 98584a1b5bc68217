/**
 * Seeded generators for the fuzz test (test/fuzz.test.ts): a small PRNG, wrong-typed
 * values, mutated requests, broken JSON, deep nesting, binary and oversized frames, and
 * what the server must do with each frame (its oracle).
 *
 * Every choice comes from the connection's own PRNG and what the connection has sent
 * before, never from what the server answered, so one seed replays the same frames.
 */

/** mulberry32: a tiny, fast, seedable 32-bit PRNG. */
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class Rng {
  private readonly next: () => number
  constructor (seed: number) { this.next = mulberry32(seed) }
  float (): number { return this.next() }
  int (n: number): number { return Math.floor(this.next() * n) }
  chance (p: number): boolean { return this.next() < p }
  pick<T> (items: readonly T[]): T { return items[this.int(items.length)] as T }
}

/** The seed of connection `index`, derived from the run's seed. */
export function connectionSeed (seed: number, index: number): number {
  return (Math.imul(seed ^ 0x9E3779B9, 0x85EBCA6B) + Math.imul(index + 1, 0xC2B2AE35)) >>> 0
}

/** Literal JSON text spliced in as is: numbers JSON.stringify cannot write, deep nesting. */
export class Raw {
  constructor (readonly text: string) {}
}

/** Set `key` as an own, enumerable property, even `__proto__`. */
export function put (target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

/** JSON text of a generated value; {@link Raw} pieces are spliced in verbatim. */
export function encode (value: unknown): string {
  if (value instanceof Raw) return value.text
  if (Array.isArray(value)) return `[${value.map(encode).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).map((k) => `${JSON.stringify(k)}:${encode((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  if (value === undefined) return 'null'
  return JSON.stringify(value)
}

/** Deepest nesting of arrays/objects in a JSON text (strings skipped). */
export function jsonDepth (text: string): number {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 || c === 91) max = Math.max(max, ++depth)
    else if (c === 125 || c === 93) depth--
  }
  return max
}

export const ACTIONS = [
  'create', 'list', 'retrieve', 'update', 'patch', 'delete',
  'subscribe_instance', 'unsubscribe_instance', 'subscribe_list', 'unsubscribe_list', 'list_cancel'
] as const
const ODD_ACTIONS = [
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', '__defineGetter__',
  'LIST', 'Create', ' list', 'list ', '', 'list\u0000', 'retrieve\u202e', 'perform_action', 'then', 'x'.repeat(1000)
]
const PROTO_KEYS = ['__proto__', 'constructor', 'prototype']
const FIELDS = ['id', 'username', 'email', 'password', 'password1', '__proto__', 'constructor', 'toString', '', 'id.id', 'user.password', '\u0000', 'ID']
const OPERATORS = [
  '$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$contains',
  '$like', '$re', '$regex', '$ilike', '$exists', '$and', '$or', '$not', '$raw', '$fulltext', '$overlap',
  '__proto__', 'constructor', '$', 'eq', '$EQ', '$in ', 'toString'
]
const UNICODE = [
  '\ud800', '\udfff', '\udc00\ud800', 'a\ud83dz', '\u0000', '\u0000\u0001\u001f', '\u202e\u202dabc', '\u200f\u200e', '\u200b', '\ufeff',
  '😀', '𝕏𝔂', '👩‍👩‍👧‍👦', 'e\u0301\u0301\u0301', 'İı', 'ß', '\uffff\ufffe', '\u2028\u2029', 'ﷺ', '\u0085', 'Ω≈ç√'
]
const STRINGS = [
  '', ' ', '\t\n', 'NaN', 'Infinity', '-Infinity', '-0', '1e308', '0x10', '１２３', '1 ', ' 1', '01', '1.0', 'null', 'true',
  '%', '_', '%_%', '\\', '"', "'", "' OR 1=1 --", '$gt', '[object Object]', '__proto__', 'constructor', 'undefined'
]
const NUMBERS: unknown[] = [
  0, -1, 1, 1.5, -2.5, 2147483648, -2147483649, 4294967296,
  new Raw('1e308'), new Raw('-1e308'), new Raw('1e400'), new Raw('-1e400'), new Raw('-0'), new Raw('1E-400'),
  new Raw('9007199254740993'), new Raw('123456789012345678901234567890'), new Raw('0.1e1'), new Raw('5e-324')
]

/** What a fuzz connection is connected to. */
export type RouteKind = 'plain' | 'paginated' | 'cursor' | 'stream' | 'multiplex'

/** A frame to send, and what the server must do with it. */
export interface Frame {
  /** Which generator made it (for the failure message). */
  kind: string
  payload: string | Buffer
  binary: boolean
  /**
   * - `reply`: one reply (a multiplexed one in its envelope), request_id as `requestId`;
   * - `binary`: a 400 reply with request_id null, or close 1003;
   * - `close`: the socket is closed with `closeCode`.
   */
  expect: 'reply' | 'binary' | 'close'
  closeCode?: number
  /** Canonical JSON of the request_id the reply must echo. */
  requestId: string
  /** A too-deep frame: the server may echo null instead. */
  mayDropId: boolean
  /** The multiplexed stream the reply must come on (`null`: a frame naming none). */
  stream?: string | null
  /** The action as parsed, when the frame is a request object. */
  action?: unknown
}

/** A short, printable view of a frame for failure messages. */
export function preview (frame: Frame, max = 400): string {
  const text = Buffer.isBuffer(frame.payload)
    ? `<${frame.binary ? 'binary' : 'raw text'} ${frame.payload.length} bytes: ${frame.payload.subarray(0, 48).toString('hex')}…>`
    : frame.payload
  const shown = text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text
  return `[${frame.kind}] ${JSON.stringify(shown)}`
}

/** The frames of one connection, frame by frame. */
export class FrameSource {
  private readonly rng: Rng
  private serial = 0
  /** request_ids (canonical JSON) of the subscriptions this connection asked for: events carry them. */
  readonly subscriptionIds = new Set<string>()
  private readonly subscriptions: string[] = []
  private open = 0
  private oversized = 0
  private invalidUtf8 = 0

  constructor (seed: number, readonly index: number, readonly route: RouteKind) {
    this.rng = new Rng(seed)
  }

  private fresh (prefix = 'r'): string {
    return `${prefix}${this.index}-${this.serial++}`
  }

  // ---------------------------------------------------------------- values

  unicode (): string {
    const r = this.rng
    let s = ''
    const n = 1 + r.int(4)
    for (let i = 0; i < n; i++) s += r.chance(0.5) ? r.pick(UNICODE) : r.pick(['a', 'b', 'z', '1', '-', '.', '@'])
    return s
  }

  longString (): string {
    const r = this.rng
    const n = r.pick([1_000, 10_000, 100_000])
    switch (r.int(4)) {
      case 0: return 'x'.repeat(n)
      case 1: return '😀'.repeat(n / 4)
      case 2: return '\u0000'.repeat(n / 10)
      default: return `${'a'.repeat(n - 10)}@b.cd`
    }
  }

  /** Nesting `depth` levels deep, as raw text (never built as a value: no recursion). */
  deep (depth?: number): Raw {
    const r = this.rng
    const n = depth ?? r.pick([10, 63, 65, 100, 1_000, 10_000])
    switch (r.int(3)) {
      case 0: return new Raw(`${'['.repeat(n)}${']'.repeat(n)}`)
      case 1: return new Raw(`${'{"a":'.repeat(n)}1${'}'.repeat(n)}`)
      default: return new Raw(`${'{"__proto__":['.repeat(n)}null${']}'.repeat(n)}`)
    }
  }

  /** An object with prototype-ish keys, own properties all. */
  protoObject (): Record<string, unknown> {
    const r = this.rng
    const out: Record<string, unknown> = {}
    for (const key of PROTO_KEYS) {
      if (r.chance(0.6)) put(out, key, r.pick<unknown>([{ polluted: 'yes' }, { prototype: { polluted: 'yes' } }, null, 'polluted', [1], { toString: 'x', valueOf: 1 }]))
    }
    if (r.chance(0.3)) put(out, 'polluted', 'yes')
    return out
  }

  /** A value of any type but the expected one (and sometimes the expected one). */
  wrong (level = 0): unknown {
    const r = this.rng
    switch (r.int(level > 2 ? 6 : 10)) {
      case 0: return r.pick(NUMBERS)
      case 1: return r.pick(STRINGS)
      case 2: return this.unicode()
      case 3: return r.pick([null, true, false])
      case 4: return r.int(60) + 1
      case 5: return r.chance(0.5) ? r.pick(NUMBERS) : r.pick(['', 'user', 'a@b.cd'])
      case 6: {
        const arr: unknown[] = []
        const n = r.int(4)
        for (let i = 0; i < n; i++) arr.push(this.wrong(level + 1))
        return arr
      }
      case 7: {
        const obj: Record<string, unknown> = {}
        const n = r.int(4)
        for (let i = 0; i < n; i++) put(obj, r.chance(0.5) ? r.pick(FIELDS) : r.pick(OPERATORS), this.wrong(level + 1))
        return obj
      }
      case 8: return r.chance(0.5) ? this.protoObject() : this.deep()
      default: return r.chance(0.35) ? this.longString() : this.unicode()
    }
  }

  // ---------------------------------------------------------------- requests

  private userData (partial: boolean): Record<string, unknown> {
    const r = this.rng
    const username = `u${this.index}-${this.serial}-${r.int(1e6)}${r.chance(0.2) ? this.unicode() : ''}`
    const data: Record<string, unknown> = partial
      ? (r.chance(0.5) ? { email: `${username}@example.com` } : { username })
      : { username, email: r.chance(0.3) ? '' : `e${r.int(1e6)}@example.com` }
    return data
  }

  private filter (): Record<string, unknown> {
    const r = this.rng
    const filter: Record<string, unknown> = {}
    const n = 1 + r.int(3)
    for (let i = 0; i < n; i++) {
      const field = r.chance(0.7) ? r.pick(['id', 'username', 'email']) : r.pick(FIELDS)
      if (r.chance(0.3)) {
        put(filter, field, r.chance(0.5) ? r.int(40) : this.wrong(1))
      } else {
        const ops: Record<string, unknown> = {}
        const m = 1 + r.int(2)
        for (let j = 0; j < m; j++) {
          const op = r.pick(OPERATORS)
          const value = r.chance(0.4)
            ? (op === '$in' || op === '$nin' ? [r.int(40), r.int(40)] : op === '$contains' ? r.pick(['u', '%', '_', 'ex']) : r.int(40))
            : this.wrong(1)
          put(ops, op, value)
        }
        put(filter, field, ops)
      }
    }
    return filter
  }

  private listArgs (req: Record<string, unknown>): void {
    const r = this.rng
    if (r.chance(0.4)) req.filter = this.filter()
    if (r.chance(0.2)) req.ordering = r.pick<unknown>(['id', '-id', 'username', '-username', ['-username', 'id'], 'password', '?', ['__proto__'], { id: 'asc' }])
    if (r.chance(0.2)) req.search = r.pick<unknown>(['u', '%', '', 'example', this.unicode()])
    if (this.route === 'paginated' || this.route === 'stream' || r.chance(0.1)) {
      if (r.chance(0.5)) req.limit = r.pick<unknown>([1, 2, 5, 100, 0, -1, '3', 'x', 1e9])
      if (r.chance(0.5)) req.offset = r.pick<unknown>([0, 1, 3, 1000, -5, '2', 'y'])
    }
    if (this.route === 'cursor' && r.chance(0.5)) {
      req.cursor = r.pick<unknown>([
        '', 'abc', '====', Buffer.from('{"id":{"$gt":0}}').toString('base64url'), Buffer.from('[1,2]').toString('base64'),
        Buffer.from('{"o":["id"],"v":[1],"d":"n"}').toString('base64url'), this.unicode()
      ])
    }
  }

  /** A valid request for `action` (as this route would take it). */
  private request (action: string): Record<string, unknown> {
    const r = this.rng
    const req: Record<string, unknown> = { action, request_id: r.chance(0.5) ? this.fresh() : this.serial++ + this.index * 1_000_000 }
    const pk = (): unknown => r.chance(0.8) ? 1 + r.int(40) : String(1 + r.int(40))
    switch (action) {
      case 'create': {
        const data = this.userData(false)
        const password = r.chance(0.5) ? 'pw' : this.unicode()
        data.password1 = password
        data.password2 = r.chance(0.9) ? password : `${password}!`
        req.data = data
        break
      }
      case 'list': this.listArgs(req); break
      case 'retrieve': case 'delete': case 'subscribe_instance': req.pk = pk(); break
      case 'unsubscribe_instance': req.pk = pk(); if (r.chance(0.3)) delete req.request_id; break
      case 'update': req.pk = pk(); req.data = this.userData(false); break
      case 'patch': req.pk = pk(); req.data = this.userData(true); break
      case 'subscribe_list': if (r.chance(0.7)) req.filter = this.filter(); break
      case 'unsubscribe_list': if (this.subscriptions.length > 0 && r.chance(0.8)) req.request_id = r.pick(this.subscriptions); break
    }
    return req
  }

  /** Change 1–3 things in `req`: a field's type, a missing field, prototype keys, the action. */
  private mutate (req: Record<string, unknown>): void {
    const r = this.rng
    const n = 1 + r.int(3)
    for (let i = 0; i < n; i++) {
      const targets: Array<Record<string, unknown>> = [req]
      for (const key of ['data', 'filter']) {
        const v = req[key]
        if (v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Raw)) {
          targets.push(v as Record<string, unknown>)
          for (const inner of Object.values(v)) {
            if (inner !== null && typeof inner === 'object' && !Array.isArray(inner) && !(inner instanceof Raw)) targets.push(inner as Record<string, unknown>)
          }
        }
      }
      const target = r.pick(targets)
      const keys = Object.keys(target)
      switch (r.int(6)) {
        case 0: case 1: case 2: {
          const key = keys.length > 0 && r.chance(0.85) ? r.pick(keys) : r.pick(['data', 'pk', 'filter', 'limit', 'request_id', 'action', 'search', 'ordering', 'cursor'])
          put(target, key, this.wrong())
          break
        }
        case 3: if (keys.length > 0) delete target[r.pick(keys)]; break
        case 4: {
          const proto = this.protoObject()
          for (const key of Object.keys(proto)) put(target, key, proto[key])
          break
        }
        default: put(req, 'action', r.chance(0.5) ? r.pick(ODD_ACTIONS) : r.pick(ACTIONS))
      }
    }
  }

  /** The frame's request object before encoding: subscription ids made unambiguous. */
  private settle (req: unknown): void {
    if (req === null || typeof req !== 'object' || Array.isArray(req) || req instanceof Raw) return
    const obj = req as Record<string, unknown>
    const action = obj.action
    const id = obj.request_id
    if (action === 'subscribe_instance' || action === 'subscribe_list') {
      // Events carry the subscription's request_id: one never reused tells them apart from replies.
      const sub = this.fresh('sub')
      put(obj, 'request_id', sub)
      this.subscriptionIds.add(JSON.stringify(sub))
      this.subscriptions.push(sub)
      this.open++
    } else if (typeof id === 'string' && this.subscriptionIds.has(JSON.stringify(id)) && action !== 'unsubscribe_list' && action !== 'unsubscribe_instance') {
      put(obj, 'request_id', this.fresh())
    } else if (action === 'unsubscribe_list' || action === 'unsubscribe_instance') {
      this.open = Math.max(0, this.open - 1)
    }
  }

  private randomAction (): string {
    const r = this.rng
    if (this.route === 'paginated' || this.route === 'cursor') return r.chance(0.6) ? 'list' : r.pick(ACTIONS)
    if (this.route === 'stream') return r.chance(0.5) ? 'list' : r.pick(['list_cancel', ...ACTIONS])
    const action = r.pick(ACTIONS)
    // Bound the events in flight: past a few open subscriptions, unsubscribe instead.
    if (this.open >= 6 && action.startsWith('subscribe_')) return `un${action}`
    return action
  }

  private wrap (payload: unknown): unknown {
    if (this.route !== 'multiplex') return payload
    const r = this.rng
    const envelope: Record<string, unknown> = { stream: 'users', payload }
    if (r.chance(0.1)) {
      switch (r.int(5)) {
        case 0: put(envelope, 'stream', r.pick<unknown>(['posts', '', '__proto__', 'constructor', 'toString', 'USERS', null, 1, ['users'], { users: 1 }])); break
        case 1: delete envelope.payload; break
        case 2: delete envelope.stream; break
        case 3: put(envelope, 'payload', this.wrong()); break
        default: { const proto = this.protoObject(); for (const key of Object.keys(proto)) put(envelope, key, proto[key]) }
      }
    }
    return envelope
  }

  /** A structured (JSON object) frame of some kind. */
  private structured (): { kind: string, value: unknown } {
    const r = this.rng
    const roll = r.int(100)
    if (roll < 15) return { kind: 'valid', value: this.request(this.randomAction()) }
    if (roll < 60) {
      const req = this.request(this.randomAction())
      this.mutate(req)
      return { kind: 'mutated', value: req }
    }
    if (roll < 70) {
      const req = this.request(r.pick(['list', 'subscribe_list', 'list', 'list']))
      req.filter = r.chance(0.8) ? this.filter() : this.wrong()
      return { kind: 'filter', value: req }
    }
    if (roll < 78) {
      const req: Record<string, unknown> = { request_id: this.fresh() }
      put(req, 'action', r.chance(0.5) ? r.pick(ODD_ACTIONS) : this.wrong())
      for (let i = r.int(3); i > 0; i--) put(req, r.pick(['pk', 'data', 'filter', 'limit', 'x', '__proto__']), this.wrong())
      return { kind: 'random-action', value: req }
    }
    if (roll < 88) {
      // Deep nesting in one field, up to 10,000 levels.
      const req = this.request(this.randomAction())
      put(req, r.pick(['request_id', 'data', 'filter', 'pk', 'action', 'extra']), this.deep())
      return { kind: 'deep', value: req }
    }
    if (roll < 94) {
      const req = this.request(this.randomAction())
      put(req, r.pick(['data', 'filter', 'search', 'pk', 'request_id', 'ordering', 'cursor']), this.longString())
      return { kind: 'long-string', value: req }
    }
    return { kind: 'not-object', value: r.pick<unknown>([[], [{ action: 'list' }], 'list', 5, null, true, false, new Raw('1e400'), '', {}]) }
  }

  /** Broken JSON: a valid frame's text, damaged. */
  private broken (): string {
    const r = this.rng
    // Never a subscribe: a damaged frame that still parses must not start a subscription under an unregistered id.
    const action = this.randomAction().replace(/^subscribe_.*/, 'list')
    const text = encode(this.wrap(this.request(action)))
    switch (r.int(10)) {
      case 0: return text.slice(0, r.int(text.length))
      case 1: return text + r.pick(['}', ']]', 'x', ',', ' {"a":1}', '\u0000', 'null', '"'])
      case 2: { const i = r.int(text.length); return text.slice(0, i) + text.slice(i + 1) }
      case 3: { const i = r.int(text.length); return text.slice(0, i) + r.pick(['{', '"', '\\', ':', ',', '\u0001', '\ud800']) + text.slice(i) }
      case 4: return '{'.repeat(1 + r.int(5000))
      case 5: return text.replaceAll('"', "'")
      case 6: return `\ufeff${text}`
      case 7: return r.pick(['not json', '{', '{"action": "list"', "{'action': 'list'}", '', ' ', 'NaN', '{"action":"list",}', 'undefined', '{"a":"\\x41"}', '{"a":"\n"}', '[1,]', '01', '{"__proto__":}'])
      case 8: return `${'['.repeat(10_000)}${']'.repeat(9_999)}`
      default: return text.replace(/:/, '::')
    }
  }

  /** The next frame of this connection. */
  next (): Frame {
    const r = this.rng
    const roll = r.int(1000)
    // Rare frames that close the socket (the test reconnects); at most a few per connection.
    if (roll < 2 && this.oversized < 3) {
      this.oversized++
      const request = { action: 'list', request_id: this.fresh(), pad: '' }
      const body = encode(this.route === 'multiplex' ? { stream: 'users', payload: request } : request)
      const pad = 1024 * 1024 + 1 + r.int(64) - Buffer.byteLength(body)
      return { kind: 'oversized', payload: body.replace('"pad":""', `"pad":"${'x'.repeat(Math.max(pad, 0))}"`), binary: r.chance(0.2), expect: 'close', closeCode: 1009, requestId: 'null', mayDropId: false }
    }
    if (roll < 4 && this.invalidUtf8 < 3) {
      this.invalidUtf8++
      const bad = r.pick([[0xff], [0xfe, 0xff], [0x80], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]])
      const payload = Buffer.concat([Buffer.from('{"action":"list","request_id":"'), Buffer.from(bad), Buffer.from('"}')])
      return { kind: 'invalid-utf8', payload, binary: false, expect: 'close', closeCode: 1007, requestId: 'null', mayDropId: false }
    }
    if (roll < 60) {
      const n = r.pick([0, 1, 16, 1000, 60_000])
      const payload = r.chance(0.5)
        ? Buffer.from(Array.from({ length: n }, () => r.int(256)))
        : Buffer.from(encode(this.wrap(this.request(this.randomAction()))))
      return { kind: 'binary', payload, binary: true, expect: 'binary', requestId: 'null', mayDropId: false, stream: null }
    }
    if (roll < 75) return this.textFrame('empty', r.pick(['', ' ', '\n', '\u0000']))
    if (roll < 175) return this.textFrame('broken-json', this.broken())
    const { kind, value } = this.structured()
    const envelope = this.wrap(value)
    this.settle(this.route === 'multiplex' ? (envelope as Record<string, unknown>)?.payload : value)
    return this.textFrame(kind, encode(envelope))
  }

  /** A text frame, and what the reply must echo, read from the text as the server will parse it. */
  private textFrame (kind: string, text: string): Frame {
    // What the server reads: a raw lone surrogate goes out as UTF-8 U+FFFD.
    const wire = Buffer.from(text).toString()
    const frame: Frame = { kind, payload: text, binary: false, expect: 'reply', requestId: 'null', mayDropId: false }
    if (this.route === 'multiplex') frame.stream = null
    let value: unknown
    try { value = JSON.parse(wire) } catch { return frame }
    const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
    if (!isObject(value)) return frame
    frame.mayDropId = jsonDepth(wire) > 60
    let request: unknown = value
    if (this.route === 'multiplex') {
      if (typeof value.stream !== 'string') return frame
      frame.stream = value.stream
      request = value.payload
    }
    if (!isObject(request)) return frame
    frame.action = request.action
    try { frame.requestId = JSON.stringify(request.request_id ?? null) } catch { frame.mayDropId = true }
    if (request.action === 'subscribe_instance' || request.action === 'subscribe_list') this.subscriptionIds.add(frame.requestId)
    return frame
  }
}
