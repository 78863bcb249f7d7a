// Every reach into another library's private state (lib/internals.ts) against the real library: a
// test here fails by name when fastify, ws or Node moves what the library reads.
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import Fastify, { type FastifyRequest } from 'fastify'
import { createRequire } from 'node:module'
import WebSocket, { WebSocketServer } from 'ws'
import {
  attachClientSocket,
  chunkedSocketOf,
  closeCodeOfWsError,
  queuedBytesOf,
  requestSignalController,
  tcpSocketOf
} from '../lib/internals.js'

// ws exports its Receiver and PerMessageDeflate, which @types/ws does not declare.
const { PerMessageDeflate, Receiver } = createRequire(import.meta.url)('ws')

const kStatusCode = (err: object): unknown =>
  (err as Record<symbol, unknown>)[Object.getOwnPropertySymbols(err).find((symbol) => symbol.description === 'status-code') as symbol]

/** Feeds bytes to a server-side ws Receiver and returns the error it reports. */
function receiverError (bytes: Buffer, extensions: Record<string, unknown> = {}, isServer = true): Promise<Error & { code?: string }> {
  const receiver = new Receiver({ isServer, maxPayload: 1024, extensions } as any)
  const failed = once(receiver, 'error').then(([err]) => err as Error & { code?: string })
  receiver.write(bytes)
  return failed
}

/** A masked client frame (RFC 6455 section 5.2) with a zero mask. */
function maskedFrame (first: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first, 0x80 | payload.length, 0, 0, 0, 0]), payload])
}

t.test('ws: the TCP socket of a server-side WebSocket is its _socket', async (t) => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  t.teardown(() => { wss.close() })
  await once(wss, 'listening')
  const connected = once(wss, 'connection')
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as { port: number }).port}`)
  const [socket] = await connected as [WebSocket]
  await once(client, 'open')
  const tcp = tcpSocketOf(socket)
  t.equal(typeof tcp.write, 'function', 'a socket')
  t.equal(tcp.remotePort, (client as any)._socket.localPort, 'the very connection')
  client.terminate()
})

t.test('ws: every public error code maps to the close code ws sends for it', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['WS_ERR_EXPECTED_MASK', Buffer.from([0x81, 0x00])],
    ['WS_ERR_INVALID_OPCODE', maskedFrame(0x83, Buffer.alloc(0))],
    ['WS_ERR_UNEXPECTED_RSV_2_3', maskedFrame(0xb1, Buffer.alloc(0))],
    ['WS_ERR_UNEXPECTED_RSV_1', maskedFrame(0xc1, Buffer.alloc(0))],
    ['WS_ERR_EXPECTED_FIN', maskedFrame(0x09, Buffer.alloc(0))],
    ['WS_ERR_INVALID_UTF8', maskedFrame(0x81, Buffer.from([0xff]))],
    ['WS_ERR_INVALID_CLOSE_CODE', maskedFrame(0x88, Buffer.from([0x03, 0xed]))],
    ['WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', Buffer.from([0x81, 0xfe, 0x10, 0x00, 0, 0, 0, 0])],
    ['WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH', Buffer.from([0x89, 0xfe, 0x00, 0x7e, 0, 0, 0, 0])],
    ['WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH', Buffer.from([0x81, 0xff, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])],
    ['WS_ERR_UNEXPECTED_MASK', maskedFrame(0x81, Buffer.from('hi'))]
  ]
  for (const [code, bytes] of cases) {
    // A client must not receive masked frames: that case reads as a client.
    const err = await receiverError(bytes, {}, code !== 'WS_ERR_UNEXPECTED_MASK')
    t.equal(err.code, code, `${code} is still ws's code`)
    t.equal(closeCodeOfWsError(err), kStatusCode(err), `${code} -> ${String(kStatusCode(err))}`)
  }
})

t.test('ws: an inflate failure (a zlib error) is read from the status-code symbol: 1007', async (t) => {
  const deflate = new PerMessageDeflate({}, true, 1024)
  deflate.accept([{}])
  const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff])
  const err = await receiverError(maskedFrame(0xc1, garbage), { [PerMessageDeflate.extensionName]: deflate })
  t.notMatch(String(err.code), /^WS_ERR_/, 'zlib\'s own code')
  t.equal(closeCodeOfWsError(err), 1007)
})

t.test('ws: any other error has no close code', async (t) => {
  t.equal(closeCodeOfWsError(new Error('plain')), undefined)
  t.equal(closeCodeOfWsError(Object.assign(new Error('coded'), { code: 'ECONNRESET' })), undefined)
})

t.test('ws: a server-mode WebSocket can be made a client with _isServer and setSocket', async (t) => {
  const socket = new WebSocket(null as unknown as string, undefined, { autoPong: true } as any)
  t.equal((socket as any)._isServer, true, 'made without an address, ws starts in server mode')
  t.equal(typeof (socket as any).setSocket, 'function', 'ws still has setSocket')
  // The switch itself is exercised end to end by every connectWS test.
  t.type(attachClientSocket, 'function')
})

t.test('fastify: request.signal is backed by the controller under fastify.request.signal', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  let seen: { controller: AbortController | undefined, before: AbortController | undefined, signal: AbortSignal } | undefined
  app.get('/', async (request: FastifyRequest) => {
    const before = requestSignalController(request)
    const signal = request.signal
    seen = { controller: requestSignalController(request), before, signal }
    return 'ok'
  })
  await app.inject('/')
  t.equal(seen?.before, undefined, 'no controller before request.signal is read')
  t.equal(seen?.controller?.signal, seen?.signal, 'the controller of request.signal')
})

t.test('node:http: a chunked HTTP/1.1 response written through Node\'s own write() has its socket', async (t) => {
  const results: Array<boolean> = []
  const server = http.createServer((request, response) => {
    if (request.url === '/chunked') {
      response.writeHead(200, { 'content-type': 'text/plain' })
      response.flushHeaders()
      results.push(chunkedSocketOf(response) === response.socket)
    } else {
      response.writeHead(200, { 'content-length': '2' })
      results.push(chunkedSocketOf(response) === undefined)
    }
    results.push(chunkedSocketOf({}) === undefined)
    response.end('ok')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as { port: number }).port
  for (const path of ['/chunked', '/length']) {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } })
    await response.text()
  }
  t.same(results, [true, true, true, true])
})

t.test('node:net: a socket\'s handle reports the bytes of its write in progress the kernel has not taken (writeQueueSize)', async (t) => {
  const accepted: net.Socket[] = []
  const server = net.createServer((socket) => { accepted.push(socket) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  const reader = net.connect((server.address() as { port: number }).port, '127.0.0.1')
  await once(reader, 'connect')
  reader.pause()
  while (accepted.length === 0) await new Promise((resolve) => setImmediate(resolve))
  const writer = accepted[0] as net.Socket
  t.equal(queuedBytesOf(writer), 0, 'nothing queued before any write')
  // Write to a peer that never reads until the kernel's buffers are full and a write stays queued.
  const block = Buffer.alloc(256 * 1024, 'q')
  for (let i = 0; i < 1000 && queuedBytesOf(writer) === 0; i++) {
    writer.write(block)
    await new Promise((resolve) => setImmediate(resolve))
  }
  const queued = queuedBytesOf(writer)
  t.ok(queued > 0 && queued <= writer.writableLength, `${queued} bytes queued of ${writer.writableLength} unsent`)
  reader.resume()
  while (queuedBytesOf(writer) >= queued) await new Promise((resolve) => setImmediate(resolve))
  t.pass('the queue falls as the peer reads')
  writer.destroy()
  reader.destroy()
  t.equal(queuedBytesOf(writer), 0, 'a destroyed socket (no handle) reports 0')
  t.equal(queuedBytesOf(null), 0, 'no socket reports 0')
})
