// Fault catalogue on real sockets (a listening server on loopback; `ws`, raw `net` and
// eventsource-parser over `http` clients): clients that vanish mid-stream and mid-drain, handlers
// that throw, sends after and racing a close, app.close() under traffic, and a stalled event loop.
// Besides each case's own assertions, fault() checks that nothing escaped as an uncaughtException
// or unhandledRejection, that app.close() resolved within 2 s, and that handles and timers (unref'd
// ones included) are back to their baseline. The Redis faults are in faults-redis.test.ts.
import http, { type ServerResponse } from 'node:http'
import net from 'node:net'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs, type Connection, type SseStream, type Topic } from '../lib/index.js'
import { captureLogs } from './helpers/index.js'
import { Opcode, clientFrame, closePayload, rawUpgrade, rawWsClient, readFrames, sleep, upgradeRequest, within, wsUpgrade } from './helpers/ws.js'
import { fault, sseGet, stallEventLoop, until, watchProcess, wsOpen, type Scope } from './helpers/faults.js'

watchProcess(t)

const feed = defineContract({
  events: { tick: Type.Object({ n: Type.Integer() }), blob: Type.String() },
  messages: {
    echo: Type.Integer(),
    fail: Type.Union([Type.Literal('sync'), Type.Literal('async'), Type.Literal('non-error')])
  },
  replies: { echo: Type.Integer() }
})

type Feed = typeof feed

interface Served {
  app: FastifyInstance
  url: string
  lobby: Topic<Feed>
  /** Push streams of GET /sse, in arrival order, with their raw responses. */
  streams: SseStream<Feed>[]
  responses: ServerResponse[]
  /** Connections of WS /ws, in arrival order, and the codes onClose got. */
  conns: Connection<Feed>[]
  closes: number[]
  /** subscribe() promises of both routes, in call order. */
  subscribed: Promise<void>[]
  logs: Array<Record<string, any>>
  /** Local subscribers of `lobby`, all transports. */
  subscribers (): number
}

/**
 * A listening app with both plugins (their default heartbeats unless told) and no
 * forceCloseConnections: whatever ends at app.close(), the library ends. Routes:
 * - GET /sse: a push stream; `?topic` subscribes it to `lobby` (resuming after Last-Event-ID).
 * - GET /source?throwAt=n: a source of ticks that throws before tick n.
 * - GET /late-failure: an async handler that rejects after its stream opened and subscribed.
 * - WS /ws: `?topic` subscribes to `lobby` (after `?after`); `?open=throw|reject` fails onOpen;
 *   `?close=throw|reject` fails onClose; messages `echo` (replies with its data) and `fail`.
 */
async function serve (scope: Scope, options: { heartbeat?: number, maxBufferedBytes?: number } = {}): Promise<Served> {
  const logs = captureLogs()
  const app = Fastify({ forceCloseConnections: false, logger: { level: 'warn', stream: logs.stream } })
  scope.app(app)
  await app.register(fastifySse, { heartbeat: options.heartbeat, maxBufferedBytes: options.maxBufferedBytes })
  await app.register(fastifyWs, { heartbeat: options.heartbeat, maxBufferedBytes: options.maxBufferedBytes })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const served: Omit<Served, 'url'> = {
    app,
    lobby,
    streams: [],
    responses: [],
    conns: [],
    closes: [],
    subscribed: [],
    logs: logs.lines,
    subscribers: () => (app.realtime as any).subscriberCount('lobby')
  }
  app.get('/sse', (request, reply) => {
    const stream = reply.sse({ contract: feed })
    served.streams.push(stream)
    served.responses.push(reply.raw)
    if ((request.query as { topic?: string }).topic !== undefined) served.subscribed.push(stream.subscribe(lobby))
  })
  app.get('/source', (request, reply) => {
    const throwAt = Number((request.query as { throwAt?: string }).throwAt)
    return reply.sse((async function * () {
      for (let n = 0; ; n++) {
        if (n === throwAt) throw new Error('secret source failure')
        yield { event: 'tick' as const, data: { n } }
        await new Promise(setImmediate)
      }
    })(), { contract: feed })
  })
  app.get('/late-failure', async (request, reply) => {
    const stream = reply.sse({ contract: feed })
    served.streams.push(stream)
    stream.send('tick', { n: 0 })
    await stream.subscribe(lobby)
    throw new Error('secret handler failure')
  })
  app.ws('/ws', {
    contract: feed,
    authenticate: false,
    onOpen (conn) {
      served.conns.push(conn)
      const query = conn.request.query as Record<string, string | undefined>
      if (query.open === 'throw') throw new Error('secret onOpen failure')
      if (query.open === 'reject') return Promise.reject(new Error('secret onOpen failure'))
      if (query.topic !== undefined) served.subscribed.push(conn.subscribe(lobby, query.after === undefined ? undefined : { after: query.after }))
    },
    onClose (conn, code) {
      served.closes.push(code)
      const query = conn.request.query as Record<string, string | undefined>
      if (query.close === 'throw') throw new Error('secret onClose failure')
      if (query.close === 'reject') return Promise.reject(new Error('secret onClose failure'))
    },
    handlers: {
      echo: (n) => n,
      fail (kind) {
        if (kind === 'sync') throw new Error('secret handler failure')
        // eslint-disable-next-line prefer-promise-reject-errors -- a handler may reject with anything
        if (kind === 'non-error') return Promise.reject(undefined)
        return Promise.reject(new Error('secret handler failure'))
      }
    }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { ...served, url }
}

/** Publishes ticks 0, 1, 2... one per turn of the event loop until stopped. */
function publisher (lobby: Topic<Feed>): { readonly count: number, stop: () => Promise<number> } {
  let n = 0
  const state = { stopped: false }
  const loop = (async () => {
    while (!state.stopped) {
      // The memory broker hands the event to every subscriber before publish() returns.
      await lobby.publish('tick', { n: n++ })
      await new Promise(setImmediate)
    }
  })()
  return {
    get count () { return n },
    stop: async () => {
      state.stopped = true
      await within(loop, 2000, 'the publisher')
      return n
    }
  }
}

/** The server-side `ws` socket behind a connection, in the order the connections opened. */
function serverSockets (app: FastifyInstance): WebSocket[] {
  return [...app.websocketServer.clients]
}

function range (count: number): number[] {
  return Array.from({ length: count }, (_, i) => i)
}

function ticksOf (frames: any[]): number[] {
  return frames.filter((frame) => frame.type === 'event' && frame.event === 'tick').map((frame) => frame.data.n)
}

function sseTicks (events: Array<{ event?: string, data: string }>): number[] {
  return events.filter((event) => event.event === 'tick').map((event) => JSON.parse(event.data).n)
}

/** The status of a plain GET on its own socket (the body is read and dropped). */
function statusOf (url: string): Promise<number | string> {
  return within(new Promise((resolve) => {
    const request = http.get(url, { agent: false }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
      response.on('error', () => resolve(response.statusCode ?? 0))
    })
    request.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  }), 3000, `GET ${url}`)
}

// ---- clients that vanish ----

fault(t, 'SSE: a client gone mid-stream ends its stream and frees its subscription; publishing goes on', async (t, scope) => {
  const s = await serve(scope)
  const client = await sseGet(scope, `${s.url}/sse?topic=1`)
  await until(() => s.subscribed.length === 1, 2000, 'the subscription')
  await s.subscribed[0]
  const ticks = publisher(s.lobby)
  await client.waitFor(20)
  client.destroy()
  const stream = s.streams[0] as SseStream<Feed>
  await within(stream.closed, 2000, 'the stream\'s end')
  t.equal(stream.signal.aborted, true)
  t.equal(stream.send('tick', { n: -1 }), false, 'send() after the client left is false')
  await until(() => s.subscribers() === 0, 2000, 'the subscription freed')
  const before = ticks.count
  await until(() => ticks.count > before + 20, 2000, 'more publishes')
  await ticks.stop()
})

fault(t, 'WS: a client gone mid-stream, without a close frame, is closed with 1006 and its subscription freed', async (t, scope) => {
  const s = await serve(scope)
  const client = await wsOpen(scope, `${s.url}/ws?topic=1`)
  await until(() => s.subscribed.length === 1, 2000, 'the subscription')
  await s.subscribed[0]
  const ticks = publisher(s.lobby)
  await client.waitFor((frame) => frame.data?.n === 19)
  client.socket.terminate()
  await until(() => s.closes.length === 1, 2000, 'onClose')
  t.same(s.closes, [1006])
  const conn = s.conns[0] as Connection<Feed>
  t.equal(conn.signal.aborted, true)
  t.equal(conn.send('tick', { n: -1 }), false, 'send() after the client left is false')
  t.equal(s.subscribers(), 0)
  const before = ticks.count
  await until(() => ticks.count > before + 20, 2000, 'more publishes')
  await ticks.stop()
})

fault(t, 'SSE: a client that stopped reading and then vanished, while its subscription waits on drain, is released', async (t, scope) => {
  const s = await serve(scope, { maxBufferedBytes: 64 * 1024 * 1024 })
  const { hostname, port } = new URL(s.url)
  const socket = scope.track(net.connect(Number(port), hostname))
  socket.on('error', () => {})
  socket.write(`GET /sse?topic=1 HTTP/1.1\r\nhost: ${hostname}:${port}\r\naccept: text/event-stream\r\n\r\n`)
  socket.pause() // never reads
  await until(() => s.subscribed.length === 1, 2000, 'the subscription')
  await s.subscribed[0]
  const tcp = (s.responses[0] as ServerResponse).socket as net.Socket
  const blob = 'd'.repeat(16 * 1024)
  for (let i = 0; i < 4096 && !tcp.writableNeedDrain; i++) {
    await s.lobby.publish('blob', blob)
    if (i % 16 === 15) await new Promise(setImmediate)
  }
  t.equal(tcp.writableNeedDrain, true, 'bytes wait for the client to drain')
  const stream = s.streams[0] as SseStream<Feed>
  t.equal(stream.signal.aborted, false, 'not cut: maxBufferedBytes is far away')
  socket.destroy()
  await within(stream.closed, 2000, 'the stream\'s end')
  t.equal(s.subscribers(), 0)
  t.equal(stream.send('blob', 'late'), false)
  await t.resolves(s.lobby.publish('blob', 'after'))
})

fault(t, 'WS: a client that stopped reading during a replay and then vanished ends the replay: subscribe() resolves, onClose 1006', async (t, scope) => {
  const s = await serve(scope)
  const start = await s.lobby.publish('blob', 'start')
  const blob = 'r'.repeat(16 * 1024)
  for (let i = 0; i < 1000; i++) await s.lobby.publish('blob', blob) // 16 MB to replay: more than the socket buffers hold
  const socket = scope.track(await wsUpgrade(s.url, `/ws?topic=1&after=${start}`)) // paused: never reads
  await until(() => s.subscribed.length === 1, 2000, 'the subscription')
  const tcp = (serverSockets(s.app)[0] as unknown as { _socket: { writableNeedDrain: boolean } })._socket
  await until(() => tcp.writableNeedDrain, 3000, 'the replay waiting for drain')
  let replayed = false
  s.subscribed[0]?.then(() => { replayed = true })
  await sleep(20)
  t.equal(replayed, false, 'the replay waits for the client')
  socket.destroy()
  await within(s.subscribed[0] as Promise<void>, 2000, 'subscribe() once the client is gone')
  await until(() => s.closes.length === 1, 2000, 'onClose')
  t.same(s.closes, [1006])
  t.equal(s.subscribers(), 0)
  t.equal(s.conns[0]?.send('blob', 'late'), false)
})

fault(t, 'WS: a live subscriber that stopped reading and then vanished is closed with 1006 and freed', async (t, scope) => {
  const s = await serve(scope, { maxBufferedBytes: 64 * 1024 * 1024 })
  const socket = scope.track(await wsUpgrade(s.url, '/ws?topic=1')) // paused: never reads
  await until(() => s.subscribed.length === 1, 2000, 'the subscription')
  await s.subscribed[0]
  const server = serverSockets(s.app)[0] as WebSocket
  const tcp = (server as unknown as { _socket: { writableNeedDrain: boolean } })._socket
  const blob = 'l'.repeat(16 * 1024)
  for (let i = 0; i < 4096 && !tcp.writableNeedDrain; i++) {
    await s.lobby.publish('blob', blob)
    if (i % 16 === 15) await new Promise(setImmediate)
  }
  t.equal(tcp.writableNeedDrain, true, 'bytes wait for the client to drain')
  t.same(s.closes, [], 'not cut: maxBufferedBytes is far away')
  socket.destroy()
  await until(() => s.closes.length === 1, 2000, 'onClose')
  t.same(s.closes, [1006])
  t.equal(s.subscribers(), 0)
  await t.resolves(s.lobby.publish('blob', 'after'))
})

// ---- handlers that throw ----

for (const kind of ['throw', 'reject'] as const) {
  fault(t, `WS: an onOpen that ${kind}s closes that connection with 1011, logs it, and leaves the others working`, async (t, scope) => {
    const s = await serve(scope)
    const other = await wsOpen(scope, `${s.url}/ws`)
    const failing = await wsOpen(scope, `${s.url}/ws?open=${kind}`)
    t.equal((await within(failing.closed, 2000, 'the failing connection\'s close')).code, 1011)
    await until(() => s.closes.length === 1, 2000, 'onClose')
    t.same(s.closes, [1011])
    t.equal(s.logs.filter((line) => /onOpen failed/.test(line.msg)).length, 1, 'logged once')
    other.send({ type: 'echo', id: 1, data: 7 })
    t.same(await other.waitFor((frame) => frame.id === 1), { type: 'reply', id: 1, data: 7 })
  })
}

fault(t, 'WS: a message handler that throws, rejects or rejects with a non-Error gets HANDLER_ERROR; the connection keeps working', async (t, scope) => {
  const s = await serve(scope)
  const client = await wsOpen(scope, `${s.url}/ws`)
  const kinds = ['sync', 'async', 'non-error']
  for (const [id, kind] of kinds.entries()) client.send({ type: 'fail', id, data: kind })
  client.send({ type: 'echo', id: 3, data: 3 })
  await client.waitFor((frame) => frame.id === 3)
  t.same(client.frames, [
    ...kinds.map((kind, id) => ({ type: 'error', id, error: { code: 'HANDLER_ERROR', message: 'The handler failed.' } })),
    { type: 'reply', id: 3, data: 3 }
  ], 'no handler\'s message reaches the client; answers keep their order')
  t.equal(s.logs.filter((line) => /message handler failed/.test(line.msg)).length, 3, 'each failure logged')
  t.same(s.closes, [])
})

fault(t, 'WS: an onClose that throws or rejects, on a client close and on app.close(), is logged and holds nothing', async (t, scope) => {
  const s = await serve(scope)
  const leaving = await wsOpen(scope, `${s.url}/ws?close=throw`)
  const staying = await wsOpen(scope, `${s.url}/ws?close=reject`)
  leaving.socket.close(1000)
  await until(() => s.closes.length === 1, 2000, 'the first onClose')
  await scope.close(s.app)
  t.equal((await staying.closed).code, 1001)
  t.same(s.closes, [1000, 1001])
  await until(() => s.logs.filter((line) => /onClose failed/.test(line.msg)).length === 2, 2000, 'both failures logged')
})

fault(t, 'SSE: a source that throws mid-stream sends a sanitized realtime.error and the stream ends cleanly', async (t, scope) => {
  const s = await serve(scope)
  const client = await sseGet(scope, `${s.url}/source?throwAt=5`)
  await within(client.ended, 2000, 'the stream\'s end')
  t.same(sseTicks(client.events), range(5))
  t.same(client.events.at(-1), { event: 'realtime.error', data: '{"code":"SOURCE_ERROR","message":"The event source failed."}', id: undefined })
  t.equal(client.complete, true, 'a clean end (chunked terminator), not a cut')
  t.equal(s.logs.filter((line) => /SSE source failed/.test(line.msg)).length, 1)
})

fault(t, 'SSE: a handler that rejects after its stream opened and subscribed ends it with realtime.error and frees the subscription', async (t, scope) => {
  const s = await serve(scope)
  const client = await sseGet(scope, `${s.url}/late-failure`)
  await within(client.ended, 2000, 'the stream\'s end')
  t.same(client.events.map((event) => event.event), ['tick', 'realtime.error'])
  t.equal(client.complete, true)
  t.equal(s.subscribers(), 0)
})

// ---- after and racing a close ----

fault(t, 'after the end, send, comment, subscribe, unsubscribe and close return quietly (client gone, own close, app.close())', async (t, scope) => {
  const s = await serve(scope)
  const sse = [await sseGet(scope, `${s.url}/sse`), await sseGet(scope, `${s.url}/sse`), await sseGet(scope, `${s.url}/sse`)]
  const ws = [await wsOpen(scope, `${s.url}/ws`), await wsOpen(scope, `${s.url}/ws`), await wsOpen(scope, `${s.url}/ws`)]
  await until(() => s.streams.length === 3 && s.conns.length === 3, 2000, 'every connection')
  const [goneStream, closedStream, shutStream] = s.streams as [SseStream<Feed>, SseStream<Feed>, SseStream<Feed>]
  const [goneConn, closedConn, shutConn] = s.conns as [Connection<Feed>, Connection<Feed>, Connection<Feed>]
  sse[0]?.destroy()
  ws[0]?.socket.terminate()
  closedStream.close()
  closedConn.close(4000, 'done')
  await within(Promise.all([goneStream.closed, closedStream.closed]), 2000, 'the streams\' ends')
  await until(() => s.closes.length === 2, 2000, 'two onClose calls')
  await scope.close(s.app)
  await within(shutStream.closed, 2000, 'the last stream\'s end')
  t.same(s.closes.sort(), [1001, 1006, 4000])
  for (const stream of [goneStream, closedStream, shutStream]) {
    t.equal(stream.send('tick', { n: 1 }), false)
    t.equal(stream.comment('late'), false)
    await t.resolves(within(stream.subscribe(s.lobby), 1000, 'subscribe() after the end'))
    t.doesNotThrow(() => stream.close())
  }
  for (const conn of [goneConn, closedConn, shutConn]) {
    t.equal(conn.send('tick', { n: 1 }), false)
    await t.resolves(within(conn.subscribe(s.lobby), 1000, 'subscribe() after the end'))
    t.doesNotThrow(() => conn.unsubscribe(s.lobby))
    t.doesNotThrow(() => conn.close())
  }
  t.equal(s.subscribers(), 0, 'a subscribe() after the end subscribes nothing')
})

fault(t, 'WS: a send and a close in the same tick: the client gets the event, then the close code; a send after close() is false', async (t, scope) => {
  const s = await serve(scope)
  const client = await wsOpen(scope, `${s.url}/ws`)
  await until(() => s.conns.length === 1, 2000, 'onOpen')
  const conn = s.conns[0] as Connection<Feed>
  t.equal(conn.send('tick', { n: 1 }), true)
  conn.close(4000, 'bye')
  t.equal(conn.send('tick', { n: 2 }), false)
  t.same(await within(client.closed, 2000, 'the close'), { code: 4000, reason: 'bye' })
  t.same(client.frames, [{ type: 'event', event: 'tick', data: { n: 1 } }])
  await until(() => s.closes.length === 1, 2000, 'onClose')
  t.same(s.closes, [4000])
})

fault(t, 'SSE: a send and a close in the same tick: the client gets the event, then a clean end', async (t, scope) => {
  const s = await serve(scope)
  const client = await sseGet(scope, `${s.url}/sse`)
  await until(() => s.streams.length === 1, 2000, 'the stream')
  const stream = s.streams[0] as SseStream<Feed>
  t.equal(stream.send('tick', { n: 1 }), true)
  stream.close()
  t.equal(stream.send('tick', { n: 2 }), false)
  await within(client.ended, 2000, 'the end')
  t.same(sseTicks(client.events), [1])
  t.equal(client.complete, true)
})

fault(t, 'WS: the client closes while the server sends in a loop: the loop ends on send() === false, onClose gets the client\'s 1000', async (t, scope) => {
  const s = await serve(scope)
  const client = await wsOpen(scope, `${s.url}/ws`)
  await until(() => s.conns.length === 1, 2000, 'onOpen')
  const conn = s.conns[0] as Connection<Feed>
  let received = 0
  client.socket.on('message', () => { if (++received === 100) client.socket.close(1000, 'enough') })
  let sent = 0
  const loop = (async () => {
    while (sent < 1_000_000) {
      for (let i = 0; i < 20; i++) {
        if (!conn.send('tick', { n: sent })) return 'send() returned false'
        sent++
      }
      await new Promise(setImmediate)
    }
    return 'the bound was reached'
  })()
  t.equal(await within(loop, 5000, 'the send loop'), 'send() returned false')
  t.equal((await within(client.closed, 2000, 'the close')).code, 1000)
  await until(() => s.closes.length === 1, 2000, 'onClose')
  t.same(s.closes, [1000])
  t.ok(sent >= 100)
})

fault(t, 'SSE: the client leaves while the server sends in a loop: the loop ends on send() === false', async (t, scope) => {
  const s = await serve(scope)
  const client = await sseGet(scope, `${s.url}/sse`)
  await until(() => s.streams.length === 1, 2000, 'the stream')
  const stream = s.streams[0] as SseStream<Feed>
  let sent = 0
  const loop = (async () => {
    while (sent < 1_000_000) {
      for (let i = 0; i < 20; i++) {
        if (!stream.send('tick', { n: sent })) return 'send() returned false'
        sent++
      }
      await new Promise(setImmediate)
    }
    return 'the bound was reached'
  })()
  await client.waitFor(100)
  client.destroy()
  t.equal(await within(loop, 5000, 'the send loop'), 'send() returned false')
  await within(stream.closed, 2000, 'the stream\'s end')
})

fault(t, 'WS: a send after the client\'s close frame returns false and does not turn the close into a 1008 slow-consumer cut', async (t, scope) => {
  // Regression: between the client's close frame and the end of the TCP connection (up to the 1 s
  // close timeout), conn.send() returned true while ws dropped the frame and still counted its
  // bytes in bufferedAmount; past maxBufferedBytes the connection was "cut as a slow consumer",
  // onClose got 1008 instead of the client's 1000, and a warning blamed a client that had read everything.
  const s = await serve(scope)
  const { port } = new URL(s.url)
  const client = await rawWsClient(t, Number(port), upgradeRequest(Number(port), '/ws'))
  scope.track(client.socket)
  t.match(await client.head, /^HTTP\/1\.1 101 /)
  await until(() => s.conns.length === 1, 2000, 'onOpen')
  const conn = s.conns[0] as Connection<Feed>
  const closeFrame = Buffer.alloc(2)
  closeFrame.writeUInt16BE(1000)
  client.socket.write(clientFrame(Opcode.close, closeFrame)) // then it keeps its socket open
  const answer = await client.next()
  t.same({ opcode: answer.opcode, code: closePayload(answer.payload).code }, { opcode: Opcode.close, code: 1000 }, 'the server answered the close')
  const blob = 'c'.repeat(16 * 1024)
  const results = range(80).map(() => conn.send('blob', blob)) // 1.25 MiB, past the default maxBufferedBytes
  t.same(results.filter((result) => result), [], 'every send after the client\'s close frame is false')
  await until(() => s.closes.length === 1, 3000, 'onClose')
  t.same(s.closes, [1000], 'onClose gets the client\'s code')
  t.same(s.logs.filter((line) => /slow consumer/.test(line.msg)).map((line) => line.msg), [], 'no slow-consumer warning')
})

// ---- app.close() under traffic ----

fault(t, 'app.close() with traffic in flight: queued events and replies are flushed, then 1001 / a clean end; late upgrades and requests get 503', async (t, scope) => {
  const s = await serve(scope)
  const ws = await Promise.all(range(4).map(() => wsOpen(scope, `${s.url}/ws?topic=1`)))
  const sse = await Promise.all(range(4).map(() => sseGet(scope, `${s.url}/sse?topic=1`)))
  await until(() => s.subscribed.length === 8, 2000, 'every subscription')
  await Promise.all(s.subscribed)
  // It reads but never answers the close frame: the close stays in progress for ws's close timeout (1 s).
  const lingering = scope.track(await wsUpgrade(s.url, '/ws'))
  const lingeringFrames = readFrames(lingering)
  // Requests in flight: every client asks for an echo every 20 ms (under the default rate limit).
  const requesters = ws.map((client) => {
    let id = 0
    const timer = setInterval(() => {
      if (client.socket.readyState === WebSocket.OPEN) client.send({ type: 'echo', id, data: id++ })
    }, 20)
    return { timer, sent: () => id }
  })
  scope.defer(() => { for (const requester of requesters) clearInterval(requester.timer) })
  const ticks = publisher(s.lobby)
  await Promise.all(sse.map((client) => client.waitFor(50)))
  await Promise.all(ws.map((client) => client.waitFor((frame) => frame.data?.n === 49)))
  await Promise.all(ws.map((client) => client.waitFor((frame) => frame.type === 'reply' && frame.id === 2)))

  const published = ticks.count
  const stopping = ticks.stop() // no publish after this point: the loop checks before its next one
  const closing = scope.close(s.app)
  const late = await rawUpgrade(s.url, '/ws')
  late.socket.destroy()
  t.equal(late.statusCode, 503, 'an upgrade during the close is refused with 503')
  t.equal(await statusOf(`${s.url}/sse?topic=1`), 503, 'an SSE request during the close is refused with 503')
  await closing
  t.equal(await stopping, published, 'nothing was published after the close began')
  for (const requester of requesters) clearInterval(requester.timer)

  for (const [i, client] of ws.entries()) {
    t.equal((await within(client.closed, 2000, 'the close')).code, 1001, `ws ${i}: 1001`)
    t.same(ticksOf(client.frames), range(published), `ws ${i}: every event published before the close, once, in order`)
    const replies = client.frames.filter((frame) => frame.type === 'reply')
    t.same(replies.map((frame) => frame.id), range(replies.length), `ws ${i}: replies in order, none missing in between`)
    t.ok(replies.every((frame) => frame.data === frame.id), `ws ${i}: each reply answers its request`)
    t.same(client.frames.filter((frame) => frame.type === 'error'), [], `ws ${i}: no error frames`)
  }
  for (const [i, client] of sse.entries()) {
    await within(client.ended, 2000, 'the end')
    t.same(sseTicks(client.events), range(published), `sse ${i}: every event published before the close, once, in order`)
    t.equal(client.complete, true, `sse ${i}: a clean end`)
  }
  const closeFrame = lingeringFrames.frames.find((frame) => frame.opcode === Opcode.close)
  t.equal(closeFrame === undefined ? undefined : closePayload(closeFrame.payload).code, 1001, 'the silent client got 1001 too')
  await within(lingeringFrames.ended, 2000, 'the silent client\'s socket closed by the server')
  t.same(s.closes, [1001, 1001, 1001, 1001, 1001])
})

fault(t, 'app.close() with clients that stopped reading, bytes still queued for them: close resolves within 2 s and their sockets are released', async (t, scope) => {
  const s = await serve(scope, { maxBufferedBytes: 64 * 1024 * 1024 })
  const { hostname, port } = new URL(s.url)
  const sse = scope.track(net.connect(Number(port), hostname))
  sse.on('error', () => {})
  sse.write(`GET /sse?topic=1 HTTP/1.1\r\nhost: ${hostname}:${port}\r\naccept: text/event-stream\r\n\r\n`)
  sse.pause() // never reads
  scope.track(await wsUpgrade(s.url, '/ws?topic=1')) // paused: never reads
  await until(() => s.subscribed.length === 2, 2000, 'both subscriptions')
  await Promise.all(s.subscribed)
  const sseTcp = (s.responses[0] as ServerResponse).socket as net.Socket
  const wsTcp = (serverSockets(s.app)[0] as unknown as { _socket: net.Socket })._socket
  const blob = 'q'.repeat(16 * 1024)
  for (let i = 0; i < 4096 && !(sseTcp.writableNeedDrain && wsTcp.writableNeedDrain); i++) {
    await s.lobby.publish('blob', blob)
    if (i % 16 === 15) await new Promise(setImmediate)
  }
  t.ok(sseTcp.writableNeedDrain && wsTcp.writableNeedDrain, 'bytes wait for both clients')
  await scope.close(s.app)
  await until(() => sseTcp.destroyed && wsTcp.destroyed, 2000, 'the server\'s sockets released')
  t.same(s.closes, [1001])
})

// ---- a stalled event loop ----

fault(t, 'a 2 s event-loop stall with the default heartbeats ends no connection', async (t, scope) => {
  const s = await serve(scope)
  const ws = await Promise.all(range(3).map(() => wsOpen(scope, `${s.url}/ws?topic=1`)))
  const sse = await Promise.all(range(2).map(() => sseGet(scope, `${s.url}/sse?topic=1`)))
  await until(() => s.subscribed.length === 5, 2000, 'every subscription')
  await Promise.all(s.subscribed)
  ws[0]?.send({ type: 'echo', id: 'before', data: 1 })
  stallEventLoop(2000)
  await s.lobby.publish('tick', { n: 0 })
  for (const client of ws) await client.waitFor((frame) => frame.data?.n === 0)
  for (const client of sse) await client.waitFor(1)
  t.same(await ws[0]?.waitFor((frame) => frame.id === 'before'), { type: 'reply', id: 'before', data: 1 }, 'a request sent before the stall is answered')
  t.same(s.closes, [])
  t.ok(ws.every((client) => client.socket.readyState === WebSocket.OPEN))
  t.ok(s.streams.every((stream) => !stream.signal.aborted))
})

fault(t, 'a 2 s stall right after a heartbeat ping (interval 2.5 s) terminates no client that answers pings; a silent one still goes', async (t, scope) => {
  const s = await serve(scope, { heartbeat: 2500 })
  const silent = scope.track(await wsUpgrade(s.url, '/ws')) // reads the pings, never answers
  const silentFrames = readFrames(silent)
  const ws = await Promise.all(range(3).map(() => wsOpen(scope, `${s.url}/ws`)))
  const sse = await sseGet(scope, `${s.url}/sse`)
  const pings = ws.map((client) => {
    let count = 0
    client.socket.on('ping', () => { count++ })
    return () => count
  })
  await until(() => s.conns.length === 4, 2000, 'every connection')
  // The heartbeat pings connections in the order they opened: stall right after the last one's ping,
  // so every pong waits behind the stall, as it would behind a long synchronous job.
  const last = s.conns[3] as unknown as { heartbeat: () => void }
  const heartbeat = last.heartbeat.bind(last)
  let stalls = 0
  last.heartbeat = () => {
    heartbeat()
    if (stalls++ === 0) stallEventLoop(2000)
  }
  await until(() => pings.every((count) => count() >= 2), 8000, 'two heartbeat rounds')
  await sleep(50)
  t.equal(stalls, 2, 'the stall came with the first round')
  t.ok(ws.every((client) => client.socket.readyState === WebSocket.OPEN), 'every client that answered is open')
  t.same(s.closes, [1006], 'only the silent peer was terminated, at the round after the stall')
  t.ok(silentFrames.frames.some((frame) => frame.opcode === Opcode.ping))
  ws[0]?.send({ type: 'echo', id: 1, data: 1 })
  t.same(await ws[0]?.waitFor((frame) => frame.id === 1), { type: 'reply', id: 1, data: 1 })
  t.equal(s.streams[0]?.signal.aborted, false, 'the SSE stream is open')
  await scope.close(s.app)
  await within(sse.ended, 2000, 'the SSE end')
})
