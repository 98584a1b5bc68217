/**
 * A minimal WebSocket client for the load generator: a TCP socket, the HTTP upgrade, and
 * RFC 6455 framing, nothing else (no extensions, no compression).
 *
 * Why not `ws`: the generator must never be the bottleneck, and on the fan-out test it
 * timestamps 10,000 arrivals on one core. Taking the time as soon as a chunk comes off the
 * socket, and doing less per frame than `ws` does, keeps the generator's own cost out of
 * the latencies it reports.
 *
 * Frames sent are masked with an all-zero key: a valid mask (the server still unmasks, at
 * the same cost as for any key) that lets the payload be written as it is.
 */
import { randomBytes, createHash } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** Called with each text message and the time (performance.now()) its first bytes were read. */
export type MessageHandler = (text: string, receivedAt: number) => void

export class WsClient {
  /** Text messages, as they arrive. */
  onMessage: MessageHandler = () => {}
  /** The socket is gone (close frame, error, or end); `reason` says why. */
  onClose: (reason: string) => void = () => {}
  closed = false

  private pending: Buffer | null = null
  private fragments: Buffer[] = []

  private constructor (private readonly socket: Socket) {}

  /**
   * Connect and upgrade; resolves once the server has answered 101. `localAddress`: the
   * source address to connect from (one address has only ~28,000 ephemeral ports).
   */
  static async connect (url: string, timeoutMs = 10_000, localAddress?: string): Promise<WsClient> {
    const { hostname, port, pathname, search } = new URL(url)
    const key = randomBytes(16).toString('base64')
    const socket = connect({ host: hostname, port: Number(port), noDelay: true, ...(localAddress === undefined ? {} : { localAddress }) })
    return await new Promise<WsClient>((resolve, reject) => {
      let head: Buffer = Buffer.alloc(0)
      const timer = setTimeout(() => fail(new Error(`upgrade of ${url} timed out`)), timeoutMs)
      const fail = (err: Error): void => {
        clearTimeout(timer)
        socket.destroy()
        reject(err)
      }
      const onData = (chunk: Buffer): void => {
        head = head.length === 0 ? chunk : Buffer.concat([head, chunk])
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) return
        socket.off('data', onData)
        socket.off('error', fail)
        clearTimeout(timer)
        const lines = head.subarray(0, end).toString('latin1').split('\r\n')
        if (!/^HTTP\/1\.1 101 /.test(lines[0] ?? '')) { fail(new Error(`upgrade refused: ${lines[0]}`)); return }
        const accept = createHash('sha1').update(key + GUID).digest('base64')
        if (!lines.some((line) => line.toLowerCase() === `sec-websocket-accept: ${accept.toLowerCase()}`)) {
          fail(new Error('upgrade answered with a wrong Sec-WebSocket-Accept'))
          return
        }
        const client = new WsClient(socket)
        socket.on('data', (data: Buffer) => { client.read(data, performance.now()) })
        socket.on('error', (err) => { client.gone(`error: ${err.message}`) })
        socket.on('close', () => { client.gone('socket closed') })
        const rest = head.subarray(end + 4)
        resolve(client)
        if (rest.length > 0) client.read(rest, performance.now())
      }
      socket.on('data', onData)
      socket.on('error', fail)
      socket.on('connect', () => {
        socket.write(
          `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
      })
    })
  }

  /** Send one text frame. False once the socket is closed. */
  send (text: string): boolean {
    if (this.closed) return false
    const length = Buffer.byteLength(text)
    const out = frameFor(0x1, length)
    out.write(text, out.length - length)
    this.socket.write(out)
    return true
  }

  /** Close politely (close frame 1000, then end). */
  close (): void {
    if (this.closed) return
    this.closed = true
    const code = Buffer.alloc(2)
    code.writeUInt16BE(1000)
    this.socket.end(frame(0x8, code))
    // A server that never answers the close must not keep the socket (and the run) alive.
    setTimeout(() => this.socket.destroy(), 2_000).unref()
  }

  /** Drop the TCP connection at once. */
  destroy (): void {
    this.closed = true
    this.socket.destroy()
  }

  private gone (reason: string): void {
    if (!this.closed) this.closed = true
    this.socket.destroy()
    const cb = this.onClose
    this.onClose = () => {}
    cb(reason)
  }

  /** Parse as many whole frames as `chunk` (after what was left over) holds. */
  private read (chunk: Buffer, at: number): void {
    let buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = null
    let offset = 0
    while (buf.length - offset >= 2) {
      const b0 = buf[offset]!
      const b1 = buf[offset + 1]!
      let length = b1 & 0x7f
      let header = 2
      if (length === 126) {
        if (buf.length - offset < 4) break
        length = buf.readUInt16BE(offset + 2)
        header = 4
      } else if (length === 127) {
        if (buf.length - offset < 10) break
        length = Number(buf.readBigUInt64BE(offset + 2))
        header = 10
      }
      if ((b1 & 0x80) !== 0) { this.gone('server sent a masked frame'); return }
      if (buf.length - offset < header + length) break
      const payload = buf.subarray(offset + header, offset + header + length)
      offset += header + length
      this.frame(b0 & 0x80, b0 & 0x0f, payload, at)
      if (this.closed && this.socket.destroyed) return
    }
    if (offset < buf.length) {
      buf = buf.subarray(offset)
      // Copy, so a long-lived remainder does not pin the whole chunk it came in.
      this.pending = Buffer.from(buf)
    }
  }

  private frame (fin: number, opcode: number, payload: Buffer, at: number): void {
    switch (opcode) {
      case 0x0: // continuation
      case 0x1: // text
      case 0x2: { // binary
        if (fin === 0) { this.fragments.push(Buffer.from(payload)); return }
        let whole = payload
        if (this.fragments.length > 0) {
          whole = Buffer.concat([...this.fragments, payload])
          this.fragments = []
        }
        this.onMessage(whole.toString('utf8'), at)
        return
      }
      case 0x8: { // close
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
        this.gone(`closed by server (${code}${payload.length > 2 ? ' ' + payload.subarray(2).toString() : ''})`)
        return
      }
      case 0x9: // ping
        if (!this.closed) this.socket.write(frame(0xa, Buffer.from(payload)))
        return
      default: // pong, reserved
    }
  }
}

/** One masked (all-zero key) frame: FIN set, `opcode`, `payload`. */
function frame (opcode: number, payload: Buffer): Buffer {
  const out = frameFor(opcode, payload.length)
  payload.copy(out, out.length - payload.length)
  return out
}

/** A frame with its header written and room for `length` payload bytes at its end. */
function frameFor (opcode: number, length: number): Buffer {
  const header = length < 126 ? 6 : length < 65_536 ? 8 : 14
  const out = Buffer.allocUnsafe(header + length)
  out[0] = 0x80 | opcode
  if (length < 126) {
    out[1] = 0x80 | length
  } else if (length < 65_536) {
    out[1] = 0x80 | 126
    out.writeUInt16BE(length, 2)
  } else {
    out[1] = 0x80 | 127
    out.writeBigUInt64BE(BigInt(length), 2)
  }
  out.writeUInt32BE(0, header - 4) // the mask key
  return out
}
