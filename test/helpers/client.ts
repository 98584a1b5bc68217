/**
 * A test client over a real WebSocket: send frames, await replies by request_id or in
 * order, await the close — every wait bounded by a timeout, never a sleep.
 */
import WebSocket from 'ws'
import { BOUND, within, type Teardown } from './async.js'

/** A reply or event as it arrives. */
export interface WireReply {
  errors: unknown[]
  data: any
  action: unknown
  response_status: number
  request_id: unknown
  /** A resumable subscription's event number. */
  seq?: number
  /** A multiplexed message's stream and payload. */
  stream?: string
  payload?: unknown
}

const DEFAULT_TIMEOUT = BOUND

/** A connected client. */
export class TestClient {
  private readonly inbox: unknown[] = []
  private waiters: Array<(msg: unknown) => void> = []
  private nextId = 1
  readonly closed: Promise<{ code: number, reason: string }>

  constructor (readonly socket: WebSocket) {
    socket.on('message', (data) => {
      const msg: unknown = JSON.parse(data.toString())
      const waiter = this.waiters.shift()
      if (waiter !== undefined) waiter(msg)
      else this.inbox.push(msg)
    })
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() }))
    })
  }

  /** Send a frame: an object is JSON-encoded, a string or Buffer is sent as is. */
  send (frame: unknown, options: { binary?: boolean } = {}): void {
    const payload = typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame)
    this.socket.send(payload as string | Buffer, { binary: options.binary ?? Buffer.isBuffer(frame) })
  }

  /** The next message, whatever it is. */
  async next (timeout = DEFAULT_TIMEOUT): Promise<WireReply> {
    if (this.inbox.length > 0) return this.inbox.shift() as WireReply
    return await new Promise((resolve, reject) => {
      const waiter = (msg: unknown): void => { clearTimeout(timer); resolve(msg as WireReply) }
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(new Error(`no message within ${timeout} ms`))
      }, timeout)
      this.waiters.push(waiter)
    })
  }

  /** The next `count` messages, in arrival order. */
  async take (count: number, timeout = DEFAULT_TIMEOUT): Promise<WireReply[]> {
    const out: WireReply[] = []
    for (let i = 0; i < count; i++) out.push(await this.next(timeout))
    return out
  }

  /**
   * Send `{action, request_id, ...args}` and await the next reply. Actions on one socket are
   * answered in order, so the next message is this request's reply; the id is checked
   * strictly. The ids alternate between numbers and strings, so a reply that echoes `3` as
   * `"3"` (or the reverse) fails wherever `request` is used (docs/protocol.md: echoed verbatim).
   */
  async request (action: string, args: Record<string, unknown> = {}, timeout = DEFAULT_TIMEOUT): Promise<WireReply> {
    const n = this.nextId++
    const requestId: string | number = n % 2 === 1 ? n : `r${n}`
    this.send({ action, request_id: requestId, ...args })
    const reply = await this.next(timeout)
    if (reply.request_id !== requestId) {
      throw new Error(`expected the reply to ${requestId}, got ${JSON.stringify(reply)}`)
    }
    return reply
  }

  /**
   * Send a frame as it is (its own request_id, or none) and await the next message: for
   * frames `request` cannot build, when nothing else (an event) can arrive in between. A
   * string or number request_id must come back as it was sent, of the same type
   * (docs/protocol.md: the reply echoes it): `1` answered with `"1"` throws.
   */
  async ask (frame: Record<string, unknown>, timeout = DEFAULT_TIMEOUT): Promise<WireReply> {
    this.send(frame)
    const reply = await this.next(timeout)
    const sent = frame.request_id
    if ((typeof sent === 'string' || typeof sent === 'number') && reply.request_id !== sent) {
      throw new Error(`expected the reply to request_id ${JSON.stringify(sent)}, got ${JSON.stringify(reply)}`)
    }
    return reply
  }

  /** Await the socket's close (code and reason). */
  async waitClose (timeout = DEFAULT_TIMEOUT): Promise<{ code: number, reason: string }> {
    return await within(this.closed, 'socket close', timeout)
  }

  close (): void {
    this.socket.close()
  }
}

/** Open a WebSocket to `url` and resolve once it is open. */
export async function connect (url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const socket = new WebSocket(url, options)
  const client = new TestClient(socket)
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  })
  return client
}

/** Open a WebSocket to `url`, closed when the test ends. */
export async function openClient (t: Teardown, url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const client = await connect(url, options)
  t.teardown(() => client.close())
  return client
}

/** Try to open a WebSocket and resolve with the HTTP status the upgrade was refused with (or 101). */
export async function upgradeStatus (url: string): Promise<number> {
  const socket = new WebSocket(url)
  return await new Promise((resolve, reject) => {
    socket.once('open', () => { socket.close(); resolve(101) })
    socket.once('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode ?? 0) })
    socket.once('error', (err) => { if (!String(err.message).includes('Unexpected server response')) reject(err) })
  })
}
