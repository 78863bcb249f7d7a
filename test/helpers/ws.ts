import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import net from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import WebSocket from 'ws'
import { fastifyWs, type FastifyWsOptions } from '../../lib/index.js'
import { connectWS, type ConnectWSOptions, type ConnectedWS } from '../../lib/testing/index.js'
export { deferred } from './index.js'

/**
 * An app with fastifyWs registered (heartbeat off, a trivial authenticate returning `{ name: 'ann' }`
 * unless told otherwise), closed when the test ends.
 */
export async function buildWs (t: Test, options: FastifyWsOptions = {}, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, ...serverOptions })
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => ({ name: 'ann' }), ...options })
  t.teardown(() => app.close())
  return app
}

/** `connectWS` once the app is ready (routes registered after `register` need `ready()` first). */
export async function openWS (app: FastifyInstance, url: string, options?: ConnectWSOptions): Promise<ConnectedWS> {
  await app.ready()
  return connectWS(app, url, options)
}

/** Rejects if `promise` has not settled within `ms`: a hang detector, not a speed measure. */
export function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

/** Resolves after `ms`. */
export function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `condition` every 5 ms until it holds; rejects after `ms` (a hang detector). */
export async function until (condition: () => boolean, ms: number, what: string): Promise<void> {
  await within((async () => { while (!condition()) await sleep(5) })(), ms, what)
}

/** A promise and the function that resolves it. */

/** The result of a raw upgrade attempt: the status line's code, and the socket (paused, holding any bytes after the head). */
export interface RawUpgrade {
  statusCode: number
  head: string
  socket: net.Socket
}

/**
 * Sends a WebSocket upgrade request over a raw TCP socket and reads the response head. The socket is
 * returned paused: nothing after the head is read until the caller resumes it (or never: a client
 * that stops reading). Never answers pings or close frames by itself.
 */
export async function rawUpgrade (baseUrl: string, path: string, headers: Record<string, string> = {}): Promise<RawUpgrade> {
  const { hostname, port } = new URL(baseUrl)
  const socket = net.connect(Number(port), hostname)
  socket.on('error', () => {})
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const lines = [
    `GET ${path} HTTP/1.1`,
    `host: ${hostname}:${port}`,
    'connection: Upgrade',
    'upgrade: websocket',
    'sec-websocket-version: 13',
    `sec-websocket-key: ${randomBytes(16).toString('base64')}`,
    ...Object.entries(headers).map(([key, value]) => `${key}: ${value}`)
  ]
  socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  return new Promise((resolve, reject) => {
    let received = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk])
      const end = received.indexOf('\r\n\r\n')
      if (end === -1) return
      cleanup()
      socket.pause()
      const head = received.subarray(0, end).toString('latin1')
      const rest = received.subarray(end + 4)
      if (rest.length > 0) socket.unshift(rest)
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head)
      resolve({ statusCode: status === null ? 0 : Number(status[1]), head, socket })
    }
    const onEnd = (): void => {
      cleanup()
      reject(Object.assign(new Error('the server closed the socket before a response head'), { code: 'ECONNRESET' }))
    }
    const cleanup = (): void => {
      socket.removeListener('data', onData)
      socket.removeListener('end', onEnd)
      socket.removeListener('close', onEnd)
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
  })
}

/** A raw TCP socket after a 101 (paused; see rawUpgrade). Throws, with `statusCode`, on any other answer. */
export async function wsUpgrade (baseUrl: string, path: string, headers: Record<string, string> = {}): Promise<net.Socket> {
  const upgrade = await rawUpgrade(baseUrl, path, headers)
  if (upgrade.statusCode !== 101) {
    upgrade.socket.destroy()
    throw Object.assign(new Error(`expected 101, got ${upgrade.statusCode}`), { statusCode: upgrade.statusCode })
  }
  return upgrade.socket
}

/** RFC 6455 opcodes. */
export const Opcode = { text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const

/** A client-to-server frame (final, masked, as RFC 6455 section 5.3 requires of clients). */
export function clientFrame (opcode: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  let header: Buffer
  if (data.length < 126) {
    header = Buffer.from([0x80 | opcode, 0x80 | data.length])
  } else if (data.length < 65536) {
    header = Buffer.alloc(4)
    header[0] = 0x80 | opcode
    header[1] = 0x80 | 126
    header.writeUInt16BE(data.length, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = 0x80 | opcode
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(BigInt(data.length), 2)
  }
  const mask = randomBytes(4)
  const masked = Buffer.alloc(data.length)
  for (let i = 0; i < data.length; i++) masked[i] = (data[i] as number) ^ (mask[i % 4] as number)
  return Buffer.concat([header, mask, masked])
}

/** A frame from the server. */
export interface ServerFrame {
  opcode: number
  payload: Buffer
}

/** The code and reason of a close frame's payload (1005 when it carries none). */
export function closePayload (payload: Buffer): { code: number, reason: string } {
  return payload.length < 2 ? { code: 1005, reason: '' } : { code: payload.readUInt16BE(0), reason: payload.subarray(2).toString() }
}

/**
 * Reads the server's (unmasked) frames from a raw socket: `frames` holds what arrived, `next()`
 * waits for one, `ended` resolves when the socket closes. Resumes the socket.
 */
export function readFrames (socket: net.Socket): { frames: ServerFrame[], next: () => Promise<ServerFrame>, ended: Promise<void> } {
  const frames: ServerFrame[] = []
  const waiters: Array<(frame: ServerFrame) => void> = []
  let buffered = Buffer.alloc(0)
  let taken = 0
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 2) {
      const opcode = (buffered[0] as number) & 0x0f
      let length = (buffered[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (buffered.length < 4) return
        length = buffered.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (buffered.length < 10) return
        length = Number(buffered.readBigUInt64BE(2))
        offset = 10
      }
      if (buffered.length < offset + length) return
      const frame = { opcode, payload: buffered.subarray(offset, offset + length) }
      buffered = buffered.subarray(offset + length)
      frames.push(frame)
      const waiter = waiters.shift()
      if (waiter !== undefined) waiter(frame)
    }
  })
  const ended = new Promise<void>((resolve) => { socket.once('close', () => resolve()) })
  socket.resume()
  return {
    frames,
    next () {
      const index = taken++
      if (index < frames.length) return Promise.resolve(frames[index] as ServerFrame)
      return new Promise((resolve) => waiters.push(resolve))
    },
    ended
  }
}

/** Listens on a private loopback port; returns the port. */
export async function listenWs (app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as net.AddressInfo).port
}

/** How a real upgrade attempt with the `ws` client ended. */
export type UpgradeResult =
  | { statusCode: 101, socket: WebSocket, headers: IncomingHttpHeaders }
  | { statusCode: number, body: string, headers: IncomingHttpHeaders }

/**
 * Opens `url` with the real `ws` client and reports the HTTP outcome: 101 with the open socket
 * (terminated when the test ends), or the refusal's status and body. Rejects on a network error
 * or after `timeout` ms.
 */
export function upgrade (
  t: Test,
  url: string,
  options: { protocols?: string | string[], headers?: Record<string, string>, timeout?: number } = {}
): Promise<UpgradeResult> {
  const timeout = options.timeout ?? 3000
  const socket = new WebSocket(url, options.protocols ?? [], { headers: options.headers ?? {} })
  t.teardown(() => socket.terminate())
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate()
      reject(new Error(`no answer to the upgrade of ${url} within ${timeout} ms`))
    }, timeout)
    let headers: IncomingHttpHeaders = {}
    socket.once('upgrade', (response) => { headers = response.headers })
    socket.once('open', () => {
      clearTimeout(timer)
      resolve({ statusCode: 101, socket, headers })
    })
    socket.once('unexpected-response', (request, response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => { body += chunk })
      response.on('end', () => {
        clearTimeout(timer)
        request.destroy()
        resolve({ statusCode: response.statusCode ?? 0, body, headers: response.headers })
      })
      response.on('error', () => {})
    })
    socket.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

/** The text of an HTTP/1.1 upgrade request to `path` on loopback (with a fresh Sec-WebSocket-Key). */
export function upgradeRequest (port: number, path: string, headers: Record<string, string> = {}): string {
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)
  ]
  return `${lines.join('\r\n')}\r\n\r\n`
}

/**
 * A masked client frame (RFC 6455 section 5.2), optionally not final (a fragment): FIN + opcode,
 * the mask bit and the payload length (7 bits, or 126 + 16 bits, or 127 + 64 bits), the 4-byte
 * masking key, the masked payload.
 */
export function maskedFrame (payload: string | Buffer, options: { opcode?: number, fin?: boolean } = {}): Buffer {
  const frame = clientFrame(options.opcode ?? Opcode.text, payload)
  if (options.fin === false) frame[0] = (frame[0] as number) & 0x7f
  return frame
}

/** A raw TCP WebSocket client that writes bytes of your choosing and parses the response head and the server's frames. */
export interface RawWsClient {
  socket: net.Socket
  /** The HTTP response head (status line and headers), up to the blank line. */
  head: Promise<string>
  /** The response body after a head other than 101 (frames are parsed only after a 101). */
  body: string
  /** Every frame received so far, in order. */
  frames: ServerFrame[]
  /** The next frame not yet taken by next(); rejects when the socket closes first or after `timeout` ms. */
  next (timeout?: number): Promise<ServerFrame>
  /** Resolves when the socket has closed. */
  ended: Promise<void>
}

/**
 * Connects to `port` on loopback and writes `bytes` at once: an upgrade request, and frames
 * pipelined right behind it if you like. Destroyed when the test ends. Never answers pings or
 * close frames by itself.
 */
export async function rawWsClient (t: Test, port: number, bytes: Buffer | string): Promise<RawWsClient> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  let buffer = Buffer.alloc(0)
  let headDone = false
  let upgraded = false
  let taken = 0
  let closed = false
  const frames: ServerFrame[] = []
  const waiters: Array<() => void> = []
  let resolveHead!: (head: string) => void
  let rejectHead!: (err: Error) => void
  const head = new Promise<string>((resolve, reject) => { resolveHead = resolve; rejectHead = reject })
  head.catch(() => {})
  const wake = (): void => { for (const waiter of waiters.splice(0)) waiter() }

  function parseFrames (): void {
    while (buffer.length >= 2) {
      const second = buffer[1] as number
      let length = second & 0x7f
      let offset = 2
      if (length === 126) {
        if (buffer.length < 4) return
        length = buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (buffer.length < 10) return
        length = Number(buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (second & 0x80) offset += 4 // a server must not mask (RFC 6455 section 5.1); skip a key if it does
      if (buffer.length < offset + length) return
      frames.push({ opcode: (buffer[0] as number) & 0x0f, payload: buffer.subarray(offset, offset + length) })
      buffer = buffer.subarray(offset + length)
    }
  }

  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk])
    if (!headDone) {
      const end = buffer.indexOf('\r\n\r\n')
      if (end === -1) return
      headDone = true
      const text = buffer.subarray(0, end).toString('latin1')
      upgraded = text.startsWith('HTTP/1.1 101 ')
      resolveHead(text)
      buffer = buffer.subarray(end + 4)
    }
    if (!upgraded) {
      client.body += buffer.toString()
      buffer = Buffer.alloc(0)
      return
    }
    parseFrames()
    wake()
  })
  const ended = new Promise<void>((resolve) => {
    socket.once('close', () => {
      closed = true
      rejectHead(new Error('the socket closed before a response head'))
      wake()
      resolve()
    })
  })
  socket.write(bytes)

  const client: RawWsClient = {
    socket,
    head,
    body: '',
    frames,
    ended,
    next (timeout = 2000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no frame within ${timeout} ms`)), timeout)
        const check = (): void => {
          if (taken < frames.length) {
            clearTimeout(timer)
            resolve(frames[taken++] as ServerFrame)
          } else if (closed) {
            clearTimeout(timer)
            reject(new Error('the socket closed before the next frame'))
          } else {
            waiters.push(check)
          }
        }
        check()
      })
    }
  }
  return client
}
