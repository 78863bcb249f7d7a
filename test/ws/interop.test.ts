// Interop with the `ws` npm client, a WebSocket client this project did not write, over real TCP
// sockets: every close code of API.md's table, the normal close both ways, and the HTTP refusals
// before the upgrade, as that client reports them.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, type Connection, type FastifyWsOptions } from '../../lib/index.js'
import { buildWs, deferred, listenWs, upgrade, within } from '../helpers/ws.js'

const chat = defineContract({
  events: { blob: Type.String() },
  messages: { say: Type.Object({ text: Type.String() }), leave: Type.Null() },
  replies: { say: Type.Object({ text: Type.String() }) }
})

interface Closed { code: number, reason: string }

/**
 * An app with one route, `/chat`, on a loopback port: records every connection and the code its
 * onClose got. `onOpen` and route options go to that route.
 */
async function serve (t: Test, pluginOptions: FastifyWsOptions = {}, routeOptions: Record<string, unknown> = {}) {
  const app = await buildWs(t, pluginOptions)
  const conns: Array<Connection<typeof chat>> = []
  const opened = deferred<Connection<typeof chat>>()
  const serverClosed = deferred<Closed>()
  app.ws('/chat', {
    contract: chat,
    onOpen (conn) {
      conns.push(conn)
      opened.resolve(conn)
    },
    handlers: {
      say: ({ text }) => ({ text }),
      leave: (data, conn) => { conn.close() }
    },
    onClose (conn, code, reason) { serverClosed.resolve({ code, reason }) },
    ...routeOptions
  })
  const port = await listenWs(app)
  return {
    app,
    url: `ws://127.0.0.1:${port}/chat`,
    conns,
    opened: () => within(opened.promise, 2000, 'onOpen'),
    serverClosed: () => within(serverClosed.promise, 3000, 'onClose')
  }
}

/** A `ws` client, open, terminated when the test ends: its frames parsed, and how it closed. */
async function client (t: Test, url: string, options: { protocols?: string[], headers?: Record<string, string> } = {}) {
  const socket = new WebSocket(url, options.protocols ?? ['realtime.v1'], { headers: options.headers ?? {} })
  t.teardown(() => socket.terminate())
  const frames: any[] = []
  const waiters: Array<(frame: any) => void> = []
  socket.on('message', (data, isBinary) => {
    const frame = isBinary ? data : JSON.parse(String(data))
    const waiter = waiters.shift()
    if (waiter === undefined) frames.push(frame)
    else waiter(frame)
  })
  const closed = new Promise<Closed>((resolve) => {
    socket.once('close', (code, reason) => resolve({ code, reason: String(reason) }))
  })
  await within(new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
  }), 2000, 'the upgrade')
  const next = (): Promise<any> => frames.length > 0 ? Promise.resolve(frames.shift()) : within(new Promise((resolve) => waiters.push(resolve)), 2000, 'a frame')
  // A client of realtime.v1 gets the hello first.
  const hello = socket.protocol === 'realtime.v1' ? await next() : undefined
  if (hello !== undefined && hello.type !== 'hello') throw new Error(`expected the hello first, got ${JSON.stringify(hello)}`)
  return {
    socket,
    hello,
    send: (frame: unknown) => socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next,
    closed: () => within(closed, 3000, 'the client\'s close event')
  }
}

t.test('1000: the client closes normally; onClose gets its code and reason', async (t) => {
  const server = await serve(t)
  const ws = await client(t, server.url)
  ws.send({ type: 'say', id: 1, data: { text: 'hi' } })
  t.same(await ws.next(), { type: 'reply', id: 1, data: { text: 'hi' } })
  ws.socket.close(1000, 'bye')
  t.same(await server.serverClosed(), { code: 1000, reason: 'bye' })
  t.equal((await ws.closed()).code, 1000, 'the close handshake completed with 1000')
})

t.test('1000: the server closes normally (conn.close()); the client gets 1000', async (t) => {
  const server = await serve(t)
  const ws = await client(t, server.url)
  ws.send({ type: 'leave', id: 1, data: null })
  t.same(await ws.closed(), { code: 1000, reason: '' })
  t.equal((await server.serverClosed()).code, 1000)
})

t.test('1001: app.close() closes every client with 1001', async (t) => {
  const server = await serve(t)
  const clients = [await client(t, server.url), await client(t, server.url)]
  await within(server.app.close(), 3000, 'app.close()')
  for (const ws of clients) t.equal((await ws.closed()).code, 1001)
  t.equal((await server.serverClosed()).code, 1001)
})

t.test('1003: a binary frame on a JSON route', async (t) => {
  const server = await serve(t)
  const ws = await client(t, server.url)
  ws.socket.send(Buffer.from(JSON.stringify({ type: 'say', id: 1, data: { text: 'hi' } })), { binary: true })
  t.same(await ws.closed(), { code: 1003, reason: 'binary frames are not accepted' })
  t.equal((await server.serverClosed()).code, 1003)
})

t.test('1008: a client that stops reading is cut as a slow consumer, and sees 1008 once it reads again', async (t) => {
  const server = await serve(t, { maxBufferedBytes: 64 * 1024 })
  const ws = await client(t, server.url)
  const conn = await server.opened()
  // The client's TCP socket stops reading: what the server sends piles up in its buffers.
  const tcp = (ws.socket as unknown as { _socket: { pause: () => void, resume: () => void } })._socket
  tcp.pause()
  const blob = 'x'.repeat(8192)
  let sends = 0
  while (conn.send('blob', blob) && sends < 8192) {
    if (++sends % 8 === 0) await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(conn.signal.aborted, `cut after ${sends} events of 8 KiB`)
  tcp.resume()
  const closed = await ws.closed()
  t.same(closed, { code: 1008, reason: 'slow consumer' }, 'the close frame follows the backlog')
  t.equal((await server.serverClosed()).code, 1008)
})

/** A say message of exactly `bytes` bytes. */
function sayOfSize (bytes: number): string {
  const empty = JSON.stringify({ type: 'say', id: 1, data: { text: '' } })
  return JSON.stringify({ type: 'say', id: 1, data: { text: 'p'.repeat(bytes - empty.length) } })
}

t.test('1009: a message larger than the plugin\'s maxPayload', async (t) => {
  const server = await serve(t, { maxPayload: 2048 })
  const ws = await client(t, server.url)
  ws.send(sayOfSize(2048))
  t.match(await ws.next(), { type: 'reply', id: 1 }, 'one at the limit is handled')
  ws.send(sayOfSize(2049))
  t.equal((await ws.closed()).code, 1009)
  t.equal((await server.serverClosed()).code, 1009)
})

t.test('1009: a message larger than a route\'s lower maxPayload', async (t) => {
  const server = await serve(t, {}, { maxPayload: 1024 })
  const ws = await client(t, server.url)
  ws.send(sayOfSize(1024))
  t.match(await ws.next(), { type: 'reply', id: 1 }, 'one at the limit is handled')
  ws.send(sayOfSize(1025))
  t.same(await ws.closed(), { code: 1009, reason: 'message too big' })
  t.equal((await server.serverClosed()).code, 1009)
})

t.test('1011: an unexpected server error outside a handler (onOpen throws)', async (t) => {
  const server = await serve(t, {}, { onOpen () { throw new Error('the database is down') } })
  const ws = await client(t, server.url)
  t.same(await ws.closed(), { code: 1011, reason: 'server error' }, 'the error itself is not sent')
  t.equal((await server.serverClosed()).code, 1011)
})

t.test('4400: ten bad messages in a row', async (t) => {
  const server = await serve(t)
  const ws = await client(t, server.url)
  for (let i = 0; i < 10; i++) ws.send('{')
  for (let i = 0; i < 10; i++) t.match(await ws.next(), { type: 'error', error: { code: 'BAD_JSON' } })
  t.same(await ws.closed(), { code: 4400, reason: 'too many bad messages' })
  t.equal((await server.serverClosed()).code, 4400)
})

t.test('4401: the authentication expires (authenticate returned { user, expiresAt })', async (t) => {
  const server = await serve(t, { authenticate: () => ({ user: { name: 'ann' }, expiresAt: Date.now() + 500 }) })
  const ws = await client(t, server.url)
  ws.send({ type: 'say', id: 1, data: { text: 'before expiry' } })
  t.same(await ws.next(), { type: 'reply', id: 1, data: { text: 'before expiry' } })
  t.same(await ws.closed(), { code: 4401, reason: 'authentication expired' })
  t.equal((await server.serverClosed()).code, 4401)
})

t.test('4429: sustained rate-limit abuse (over twice the limit)', async (t) => {
  const server = await serve(t, {}, { rateLimit: { messages: 3, intervalMs: 60000 } })
  const ws = await client(t, server.url)
  for (let id = 1; id <= 7; id++) ws.send({ type: 'say', id, data: { text: 'spam' } })
  const answers = []
  for (let i = 0; i < 6; i++) answers.push(await ws.next())
  t.same(answers.map((frame) => frame.type === 'reply' ? 'reply' : frame.error.code), ['reply', 'reply', 'reply', 'RATE_LIMITED', 'RATE_LIMITED', 'RATE_LIMITED'])
  t.same(await ws.closed(), { code: 4429, reason: 'rate limit exceeded' })
  t.equal((await server.serverClosed()).code, 4429)
})

t.test('HTTP 401 before the upgrade when authenticate returns null', async (t) => {
  let opened = 0
  const server = await serve(t, { authenticate: () => null }, { onOpen () { opened++ } })
  const result = await upgrade(t, server.url, { protocols: ['realtime.v1', 'bearer.wrong'] })
  t.equal(result.statusCode, 401)
  t.match('body' in result ? JSON.parse(result.body) : undefined, { statusCode: 401, code: 'FRT_ERR_WS_UNAUTHORIZED' })
  t.equal(opened, 0, 'no connection')
})

t.test('HTTP 403 before the upgrade for an Origin of another host; the same host is let in', async (t) => {
  const server = await serve(t)
  const { host } = new URL(server.url)
  const refused = await upgrade(t, server.url, { headers: { origin: 'https://elsewhere.example' } })
  t.equal(refused.statusCode, 403)
  t.match('body' in refused ? JSON.parse(refused.body) : undefined, { statusCode: 403, code: 'FRT_ERR_WS_FORBIDDEN_ORIGIN' })
  t.equal(server.conns.length, 0, 'no connection')
  const ws = await client(t, server.url, { headers: { origin: `http://${host}` } })
  ws.send({ type: 'say', id: 1, data: { text: 'same host' } })
  t.same(await ws.next(), { type: 'reply', id: 1, data: { text: 'same host' } })
  t.equal(ws.socket.protocol, 'realtime.v1')
})
