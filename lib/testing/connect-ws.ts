import { randomBytes } from 'node:crypto'
import { Duplex } from 'node:stream'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import { FRT_ERR_TESTING } from '../errors.js'
import type { SubscribedData } from '../protocol/messages.js'
import { ReservedMessage } from '../protocol/names.js'
import { attachClientSocket } from '../internals.js'
import { kEarlyClose, kEarlyMessages } from '../symbols.js'

/** A frame from the server, parsed. */
export interface WsFrame {
  type: string
  [key: string]: unknown
}

/** An event frame: `topic` and `id` are set when it came from a topic. */
export interface WsEvent {
  event: string
  data: unknown
  topic?: string
  id?: string
}

/** Options of {@link connectWS}. */
export interface ConnectWSOptions {
  headers?: Record<string, string>
  /** Offered as `Sec-WebSocket-Protocol`, e.g. `['realtime.v1', 'bearer.' + token]`. */
  protocols?: string[]
  /**
   * How long (ms) a request or a wait for a frame may take before rejecting with `FRT_ERR_TESTING`.
   * @default 5000
   */
  timeout?: number
}

/** A WebSocket connected through `app.injectWS()`, speaking the library's wire protocol. */
export interface ConnectedWS {
  /** Sends `{ type, id, data }` and resolves with the reply's data; rejects with the error frame's `code`, `message` and `details`. */
  request (type: string, data?: unknown): Promise<unknown>
  /** Sends `{ type, data }` without an id (no reply). */
  send (type: string, data?: unknown): void
  /**
   * Sends `realtime.subscribe` and resolves with its reply `{ topic, position, resumed }`, which
   * comes after the replay (or the reset); rejects with the error frame's `code` (`FORBIDDEN` ...).
   */
  subscribe (topic: string, options?: { after?: string }): Promise<SubscribedData>
  /** Sends `realtime.unsubscribe`; resolves once answered. */
  unsubscribe (topic: string): Promise<void>
  /** Sends `realtime.ping`; resolves once answered. */
  ping (): Promise<void>
  /** Sends a raw frame, for hostile-input tests. */
  sendRaw (data: string | Buffer, options?: { binary?: boolean }): void
  /** The next event frame (of that event name, when given). */
  nextEvent (name?: string): Promise<WsEvent>
  /** The next frame of any type (of that type, when given) that no request() took; text that is not a protocol frame comes as `{ type: 'raw', data }`. */
  nextFrame (type?: string): Promise<WsFrame>
  /** Resolves with the close code and reason, however the connection ends. */
  closed: Promise<{ code: number, reason: string }>
  /** Closes from the client side; resolves once closed. */
  close (code?: number, reason?: string): Promise<{ code: number, reason: string }>
  /** The underlying `ws` client. */
  socket: WebSocket
  /** The subprotocol the server selected (`''` for none). */
  protocol: string
}

interface FrameWaiter {
  match: (frame: WsFrame) => boolean
  resolve: (frame: WsFrame) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

/**
 * Opens a WebSocket route through `app.injectWS()` (no network). Rejects with `FRT_ERR_TESTING`
 * (with `statusCode`) when the upgrade is refused, e.g. 401 or 403.
 *
 * @example
 * const ws = await connectWS(app, '/chat', { headers: { authorization: 'Bearer ann' } })
 * t.same(await ws.request('say', { text: 'hi' }), { id: '1-0' })
 */
export async function connectWS (app: FastifyInstance, url: string, options: ConnectWSOptions = {}): Promise<ConnectedWS> {
  const timeout = options.timeout ?? 5000
  const headers: Record<string, string> = { ...options.headers }
  if (options.protocols !== undefined) headers['sec-websocket-protocol'] = options.protocols.join(', ')
  // Like inject(), boot the app first: an upgrade emitted before ready() would never be answered.
  await app.ready()
  const { socket, protocol } = await upgrade(app, url, headers, timeout)

  const frames: WsFrame[] = []
  const waiters: FrameWaiter[] = []
  const pending = new Map<string | number, { resolve: (data: unknown) => void, reject: (err: Error) => void, timer: NodeJS.Timeout }>()
  let nextId = 0
  let ended = false
  let resolveClosed!: (value: { code: number, reason: string }) => void
  const closed = new Promise<{ code: number, reason: string }>((resolve) => { resolveClosed = resolve })

  const onMessage = (data: Buffer): void => {
    const frame = parseFrame(data)
    const request = frame.id === undefined ? undefined : pending.get(frame.id as string)
    if (request !== undefined && (frame.type === 'reply' || frame.type === 'error')) {
      pending.delete(frame.id as string)
      clearTimeout(request.timer)
      if (frame.type === 'reply') return request.resolve(frame.data)
      const error = frame.error as { code: string, message: string, details?: unknown }
      return request.reject(Object.assign(new Error(error.message), error))
    }
    const waiter = waiters.find((candidate) => candidate.match(frame))
    if (waiter === undefined) {
      frames.push(frame)
      return
    }
    waiters.splice(waiters.indexOf(waiter), 1)
    clearTimeout(waiter.timer)
    waiter.resolve(frame)
  }
  // Frames that arrived with the 101 response (e.g. sent in onOpen) were kept for us.
  socket.removeAllListeners('message')
  for (const data of (socket as unknown as { [kEarlyMessages]: Buffer[] })[kEarlyMessages].splice(0)) onMessage(data)
  socket.on('message', onMessage)
  socket.on('error', () => {})
  const onClose = (code: number, reason: Buffer): void => {
    ended = true
    const err = new FRT_ERR_TESTING(`connectWS: the connection closed with ${code}`)
    for (const waiter of waiters.splice(0)) {
      clearTimeout(waiter.timer)
      waiter.reject(err)
    }
    for (const request of pending.values()) {
      clearTimeout(request.timer)
      request.reject(err)
    }
    pending.clear()
    resolveClosed({ code, reason: reason.toString() })
  }
  const earlyClose = (socket as unknown as { [kEarlyClose]?: [number, Buffer] })[kEarlyClose]
  if (earlyClose === undefined) socket.once('close', onClose)
  else onClose(...earlyClose)

  function waitFrame (match: (frame: WsFrame) => boolean, what: string): Promise<WsFrame> {
    const index = frames.findIndex(match)
    if (index !== -1) return Promise.resolve(frames.splice(index, 1)[0] as WsFrame)
    if (ended) return Promise.reject(new FRT_ERR_TESTING(`connectWS: the connection has closed; no ${what}`))
    return new Promise((resolve, reject) => {
      const waiter: FrameWaiter = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1)
          reject(new FRT_ERR_TESTING(`connectWS: no ${what} within ${timeout} ms`))
        }, timeout)
      }
      waiters.push(waiter)
    })
  }

  function request (type: string, data?: unknown): Promise<unknown> {
    const id = `c${++nextId}`
    return new Promise((resolve, reject) => {
      if (ended) return reject(new FRT_ERR_TESTING('connectWS: the connection has closed'))
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new FRT_ERR_TESTING(`connectWS: no answer to "${type}" within ${timeout} ms`))
      }, timeout)
      pending.set(id, { resolve, reject, timer })
      socket.send(JSON.stringify({ type, id, data }))
    })
  }

  return {
    request,
    send (type, data) {
      socket.send(JSON.stringify({ type, data }))
    },
    subscribe (topic, subscribeOptions) {
      const after = subscribeOptions?.after
      return request(ReservedMessage.Subscribe, after === undefined ? { topic } : { topic, after }) as Promise<SubscribedData>
    },
    async unsubscribe (topic) {
      await request(ReservedMessage.Unsubscribe, { topic })
    },
    async ping () {
      await request(ReservedMessage.Ping)
    },
    sendRaw (data, sendOptions) {
      socket.send(data, { binary: sendOptions?.binary ?? false })
    },
    async nextEvent (name) {
      const frame = await waitFrame((candidate) => candidate.type === 'event' && (name === undefined || candidate.event === name), name === undefined ? 'event' : `"${name}" event`)
      const { event, data, topic, id } = frame as unknown as WsEvent
      return topic === undefined ? { event, data } : { event, data, topic, id }
    },
    nextFrame (type) {
      return waitFrame((candidate) => type === undefined || candidate.type === type, type === undefined ? 'frame' : `"${type}" frame`)
    },
    closed,
    close (code, reason) {
      socket.close(code, reason)
      return closed
    },
    socket,
    protocol
  }
}

/** A server frame: its JSON, or `{ type: 'raw', data }` for text that is not a JSON object (a plain ws route). */
function parseFrame (data: Buffer): WsFrame {
  const text = data.toString()
  try {
    const frame = JSON.parse(text) as WsFrame | null
    if (frame !== null && typeof frame === 'object' && typeof frame.type === 'string') return frame
  } catch {}
  return { type: 'raw', data: text }
}

/** Two in-memory sockets wired to each other: what one writes the other reads; an end or a destroy propagates. */
function duplexPair (): [Duplex, Duplex] {
  const sides: Duplex[] = []
  const side = (other: () => Duplex): Duplex => new Duplex({
    read () {},
    write (chunk: Buffer, _encoding, callback) {
      other().push(chunk)
      callback()
    },
    final (callback) {
      other().push(null)
      callback()
    },
    destroy (err, callback) {
      if (!other().destroyed) other().destroy()
      callback(err)
    }
  })
  sides.push(side(() => sides[1] as Duplex), side(() => sides[0] as Duplex))
  return sides as [Duplex, Duplex]
}

/**
 * Performs the upgrade through the server's 'upgrade' listener (routed by @fastify/websocket through
 * Fastify's hooks) over an in-memory socket pair, reads the HTTP response, and hands the rest of the
 * bytes to a ws client. Unlike app.injectWS(), frames sent with the 101 are kept and closes propagate.
 */
function upgrade (app: FastifyInstance, url: string, headers: Record<string, string>, timeout: number): Promise<{ socket: WebSocket, protocol: string }> {
  const [server, client] = duplexPair()
  const request = {
    method: 'GET',
    url,
    httpVersion: '1.1',
    headers: {
      host: 'localhost',
      ...headers,
      connection: 'upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': randomBytes(16).toString('base64')
    }
  }
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0)
    const timer = setTimeout(() => fail(`no answer within ${timeout} ms`), timeout)
    function fail (reason: string, statusCode?: number): void {
      clearTimeout(timer)
      client.destroy()
      reject(Object.assign(new FRT_ERR_TESTING(`connectWS: the upgrade of ${url} was refused: ${reason}`), { statusCode }))
    }
    function onData (chunk: Buffer): void {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end === -1) return
      client.removeListener('data', onData)
      const lines = head.subarray(0, end).toString('latin1').split('\r\n')
      const statusCode = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] as string)?.[1])
      if (statusCode !== 101) return fail(`HTTP ${statusCode}`, statusCode)
      clearTimeout(timer)
      const protocolLine = lines.find((line) => /^sec-websocket-protocol:/i.test(line))
      // A ws instance made without an address starts in server mode; a client must mask its frames.
      const socket = new WebSocket(null as unknown as string, undefined, { isServer: false, autoPong: true } as any)
      const early: Buffer[] = []
      ;(socket as unknown as { [kEarlyMessages]: Buffer[] })[kEarlyMessages] = early
      socket.on('message', (data: Buffer) => early.push(data))
      // A close right after the 101 (onOpen threw) may come before connectWS listens: keep it too.
      socket.once('close', (code: number, reason: Buffer) => {
        (socket as unknown as { [kEarlyClose]: [number, Buffer] })[kEarlyClose] = [code, reason]
      })
      attachClientSocket(socket, client, head.subarray(end + 4))
      resolve({ socket, protocol: protocolLine === undefined ? '' : protocolLine.slice(protocolLine.indexOf(':') + 1).trim() })
    }
    client.on('data', onData)
    client.on('error', () => {})
    app.server.emit('upgrade', request, server, Buffer.alloc(0))
  })
}
