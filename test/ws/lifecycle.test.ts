import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import {
  defineContract,
  fastifySse,
  fastifyWs,
  memoryBroker,
  type Broker,
  type Connection
} from '../../lib/index.js'
import { connectWS, injectSSE } from '../../lib/testing/index.js'
import { captureLogs, nextPosition, recordEscapes, slowHistoryBroker, tick } from '../helpers/index.js'
import {
  Opcode,
  buildWs,
  closePayload,
  deferred,
  openWS,
  rawUpgrade,
  readFrames,
  sleep,
  within,
  wsUpgrade
} from '../helpers/ws.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection (F7).
const escaped = recordEscapes(t)

const feed = defineContract({
  events: { blob: Type.String(), message: Type.Object({ text: Type.String() }) },
  messages: { ping: Type.Null(), leave: Type.Null(), mark: Type.Null(), hang: Type.Null() },
  replies: { ping: Type.Literal('pong') }
})

/** A real `ws` client: every frame parsed, and how it closed. Terminated when the test ends. */
interface RealWS {
  socket: WebSocket
  closed: Promise<{ code: number, reason: string }>
  next (): Promise<any>
  send (frame: object): void
}

async function openReal (t: Test, baseUrl: string, path: string): Promise<RealWS> {
  const socket = new WebSocket(`${baseUrl.replace(/^http/, 'ws')}${path}`)
  t.teardown(() => socket.terminate())
  socket.on('error', () => {})
  const frames: any[] = []
  const waiters: Array<(frame: any) => void> = []
  socket.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString())
    const waiter = waiters.shift()
    if (waiter === undefined) frames.push(frame)
    else waiter(frame)
  })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => {
    socket.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  })
  await within(new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('unexpected-response', (request, response) => reject(new Error(`upgrade refused: ${response.statusCode}`)))
  }), 2000, 'the upgrade')
  return {
    socket,
    closed,
    next: () => frames.length > 0 ? Promise.resolve(frames.shift()) : within(new Promise((resolve) => waiters.push(resolve)), 3000, 'a frame'),
    send: (frame) => socket.send(JSON.stringify(frame))
  }
}

/** The feed route: records onClose codes; subscribes to `lobby` when `?topic=1`, resuming after `?after=`. */
function feedRoute (app: FastifyInstance, path = '/feed') {
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const closes: number[] = []
  const conns: Connection<typeof feed>[] = []
  const subscribed: Promise<void>[] = []
  const hanging = deferred()
  const waiters: Array<() => void> = []
  app.ws(path, {
    contract: feed,
    onOpen (conn) {
      conns.push(conn)
      const query = conn.request.query as { topic?: string, after?: string }
      if (query.topic !== undefined) subscribed.push(conn.subscribe(lobby, query.after === undefined ? undefined : { after: query.after }))
    },
    onClose (conn, code) {
      closes.push(code)
      waiters.shift()?.()
    },
    handlers: {
      ping: () => 'pong' as const,
      leave: (data, conn) => { conn.unsubscribe(lobby) },
      mark: (data, conn) => { conn.send('message', { text: 'mark' }) },
      hang: () => hanging.promise
    }
  })
  return {
    lobby,
    closes,
    conns,
    subscribed,
    hanging,
    /** Resolves once onClose has run `count` times in all. */
    closedCount: (count: number) => within((async () => { while (closes.length < count) await new Promise<void>((resolve) => waiters.push(resolve)) })(), 3000, `${count} onClose calls`)
  }
}

async function publishAll (lobby: { publish: (event: 'message', data: { text: string }) => Promise<string> }, texts: string[]): Promise<string[]> {
  const ids: string[] = []
  for (const text of texts) ids.push(await lobby.publish('message', { text }))
  return ids
}

// ---- shutdown ----

t.test('app.close() sends 1001 to every client, runs onClose with 1001, and resolves, without forceCloseConnections', async (t) => {
  const app = Fastify({ forceCloseConnections: false })
  await app.register(fastifyWs, { heartbeat: 1000, authenticate: () => ({ name: 'ann' }) })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const clients = [
    await openReal(t, url, '/feed'),
    await openReal(t, url, '/feed?topic=1'),
    await openReal(t, url, '/feed?topic=1&after=0-0'),
    await openReal(t, url, '/feed')
  ]
  await route.lobby.publish('blob', 'x')
  clients[3]?.send({ type: 'hang', id: 1, data: null }) // a handler still running at shutdown
  await sleep(10)
  await within(app.close(), 2000, 'app.close()')
  const codes = await within(Promise.all(clients.map((client) => client.closed)), 2000, 'the clients\' closes')
  t.same(codes.map(({ code }) => code), [1001, 1001, 1001, 1001])
  t.same(route.closes, [1001, 1001, 1001, 1001])
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  route.hanging.resolve() // the late handler settles after the close: nothing to write, nothing thrown
  await sleep(10)
})

t.test('a client that never answers the close handshake does not hold app.close()', async (t) => {
  const app = Fastify({ forceCloseConnections: false })
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => ({ name: 'ann' }) })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const silent = await wsUpgrade(url, '/feed') // paused: never reads, never answers
  const deaf = await wsUpgrade(url, '/feed')
  deaf.resume() // reads everything, answers nothing
  const polite = await openReal(t, url, '/feed')
  await route.closedCount(0)
  t.equal(route.conns.length, 3)
  await within(app.close(), 2000, 'app.close()')
  t.equal((await polite.closed).code, 1001)
  t.same(route.closes.sort(), [1001, 1001, 1001], 'onClose ran for each, with the code the server sent')
  silent.destroy()
  deaf.destroy()
})

t.test('an upgrade that arrives while the server closes is refused, and app.close() still resolves', async (t) => {
  const app = Fastify({ forceCloseConnections: false })
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => ({ name: 'ann' }) })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  // The server side of every upgrade request, so a leaked one can be destroyed after the assertion.
  const upgradeSockets: Array<{ destroy: () => void }> = []
  app.server.on('upgrade', (request, socket) => { upgradeSockets.push(socket) })
  // It reads but never answers the close frame, which keeps the server in preClose for up to a second.
  const lingering = await wsUpgrade(url, '/feed')
  const reader = readFrames(lingering)
  const closing = app.close()
  const closeFrame = await within(reader.next(), 2000, 'the close frame')
  t.equal(closeFrame.opcode, Opcode.close)
  t.equal(closePayload(closeFrame.payload).code, 1001)
  const late = await rawUpgrade(url, '/feed').then((upgrade) => upgrade, (err: Error) => ({ statusCode: 0, head: err.message, socket: undefined }))
  t.not(late.statusCode, 101, `refused: ${late.head.split('\r\n')[0]}`)
  late.socket?.destroy()
  // Regression: the refused upgrade's socket was never destroyed, so app.close() waited for it forever.
  await t.resolves(within(closing, 3000, 'app.close() after a refused late upgrade'))
  t.equal(route.conns.length, 1, 'no connection was opened for it')
  for (const socket of upgradeSockets) socket.destroy()
  await within(closing, 3000, 'app.close() once the leaked socket is gone')
  lingering.destroy()
})

// ---- slow consumers ----

t.test('a subscriber that stops reading is closed with 1008 and its subscription freed; publishing stays bounded', async (t) => {
  const logs = captureLogs()
  const app = await buildWs(t, { maxBufferedBytes: 64 * 1024 }, { logger: { stream: logs.stream } })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await wsUpgrade(url, '/feed?topic=1') // paused: never reads
  await within((async () => { while (route.subscribed.length === 0) await tick() })(), 2000, 'the subscription')
  await route.subscribed[0]
  const conn = route.conns[0] as Connection<typeof feed>
  t.equal((app.realtime as any).subscriberCount('lobby'), 1)
  const blob = 'x'.repeat(4096)
  let published = 0
  while (!conn.signal.aborted && published < 16384) {
    await route.lobby.publish('blob', blob)
    published++
    if (published % 16 === 0) await tick() // let the socket report what the kernel took
  }
  t.equal(conn.signal.aborted, true, `cut after ${published} events of 4 KiB`)
  t.ok(published * 4096 < 64 * 1024 * 1024, 'long before the unread bytes could grow without bound')
  await route.closedCount(1)
  t.same(route.closes, [1008], 'onClose reports 1008')
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  t.equal(app.websocketServer.clients.size, 0, 'the socket is gone, though the client never read the close frame')
  t.ok(logs.lines.some((line) => /slow consumer/.test(line.msg)))
  t.equal(conn.send('blob', 'more'), false, 'later sends report the close')
  socket.destroy()
})

t.test('conn.send in a loop to a client that never reads ends with 1008', async (t) => {
  const app = await buildWs(t, { maxBufferedBytes: 32 * 1024 })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await wsUpgrade(url, '/feed')
  await within((async () => { while (route.conns.length === 0) await tick() })(), 2000, 'onOpen')
  const conn = route.conns[0] as Connection<typeof feed>
  const chunk = 'z'.repeat(8192)
  let sends = 0
  while (conn.send('blob', chunk) && sends < 8192) {
    sends++
    if (sends % 8 === 0) await tick()
  }
  t.equal(conn.signal.aborted, true, `cut after ${sends} sends of 8 KiB`)
  t.ok(sends * 8192 < 64 * 1024 * 1024)
  await route.closedCount(1)
  t.same(route.closes, [1008])
  socket.destroy()
})

t.test('a replay larger than the socket buffers waits for drain instead of cutting', async (t) => {
  const app = await buildWs(t, { maxBufferedBytes: 1024 * 1024 })
  const route = feedRoute(app)
  const [start] = await publishAll(route.lobby, ['start'])
  const blob = 'r'.repeat(16 * 1024)
  for (let i = 0; i < 600; i++) await route.lobby.publish('blob', blob) // ~9.6 MB of history
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await openReal(t, url, `/feed?topic=1&after=${start}`)
  const tcp = (client.socket as unknown as { _socket: { pause: () => void, resume: () => void } })._socket
  tcp.pause()
  await sleep(50)
  tcp.resume()
  for (let i = 0; i < 600; i++) {
    const frame = await client.next()
    if (frame.data !== blob) t.fail(`frame ${i} is ${JSON.stringify(frame).slice(0, 80)}`)
  }
  await route.subscribed[0]
  const live = await route.lobby.publish('blob', 'live')
  t.match(await client.next(), { type: 'event', topic: 'lobby', id: live, event: 'blob', data: 'live' }, 'every replayed event arrived, then the live one')
  t.same(route.closes, [], 'never cut')
})

// ---- heartbeat ----

t.test('heartbeat: a client that answers pings stays open across several intervals', async (t) => {
  const app = await buildWs(t, { heartbeat: 50 })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const client = await openReal(t, url, '/feed')
  let pings = 0
  const fivePings = deferred()
  client.socket.on('ping', () => { if (++pings === 5) fivePings.resolve() })
  await within(fivePings.promise, 3000, 'five pings')
  t.equal(client.socket.readyState, WebSocket.OPEN)
  t.same(route.closes, [])
  client.send({ type: 'ping', id: 1, data: null })
  t.same(await client.next(), { type: 'reply', id: 1, data: 'pong' })
})

t.test('heartbeat: a peer that never answers pings is terminated (onClose 1006)', async (t) => {
  const app = await buildWs(t, { heartbeat: 50 })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await wsUpgrade(url, '/feed?topic=1')
  const reader = readFrames(socket) // reads the pings, never pongs
  await route.closedCount(1)
  t.same(route.closes, [1006])
  t.ok(reader.frames.some((frame) => frame.opcode === Opcode.ping), 'it was pinged first')
  await within(reader.ended, 2000, 'the raw socket\'s end')
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  socket.destroy()
})

// ---- topics ----

t.test('conn.subscribe(topic) delivers event frames with topic and id', async (t) => {
  const app = await buildWs(t)
  const route = feedRoute(app)
  const ws = await openWS(app, '/feed?topic=1')
  await route.subscribed[0]
  const id = await route.lobby.publish('message', { text: 'hi' })
  t.same(await ws.nextFrame(), { type: 'event', topic: 'lobby', id, event: 'message', data: { text: 'hi' } })
  const two = await route.lobby.publish('blob', 'two')
  t.same(await ws.nextEvent(), { event: 'blob', data: 'two', topic: 'lobby', id: two })
})

// Replays and resets are written right after the upgrade: these tests read them with a real client,
// which listens before the 101 arrives (see the connectWS regression test in ws-messages.test.ts).
t.test('subscribe(topic, { after }) replays exactly the events after it, then goes live', async (t) => {
  const app = await buildWs(t)
  const route = feedRoute(app)
  const other = app.realtime.topic('other', { contract: feed })
  const [first, ...missed] = await publishAll(route.lobby, ['a', 'b', 'c'])
  await other.publish('message', { text: 'not mine' })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const ws = await openReal(t, url, `/feed?topic=1&after=${first}`)
  t.same(await ws.next(), { type: 'event', topic: 'lobby', id: missed[0], event: 'message', data: { text: 'b' } })
  t.same(await ws.next(), { type: 'event', topic: 'lobby', id: missed[1], event: 'message', data: { text: 'c' } })
  await route.subscribed[0]
  const live = await route.lobby.publish('message', { text: 'd' })
  t.same(await ws.next(), { type: 'event', topic: 'lobby', id: live, event: 'message', data: { text: 'd' } })
  const newest = await openReal(t, url, `/feed?topic=1&after=${live}`)
  await route.subscribed[1]
  const next = await route.lobby.publish('message', { text: 'e' })
  t.same(await newest.next(), { type: 'event', topic: 'lobby', id: next, event: 'message', data: { text: 'e' } }, 'resuming from the newest id replays nothing')
  t.same(await ws.next(), { type: 'event', topic: 'lobby', id: next, event: 'message', data: { text: 'e' } })
})

t.test('events published during the replay arrive once each, in order: no gap, no duplicate', async (t) => {
  const broker = slowHistoryBroker()
  t.teardown(() => broker.close())
  const app = await buildWs(t, { broker })
  const route = feedRoute(app)
  const [start, ...before] = await publishAll(route.lobby, ['start', 'b1', 'b2'])
  const ws = await openWS(app, `/feed?topic=1&after=${start}`)
  await broker.asked
  const during = await publishAll(route.lobby, ['d1', 'd2'])
  broker.release()
  await route.subscribed[0]
  const after = await publishAll(route.lobby, ['a1'])
  const got = []
  for (let i = 0; i < 5; i++) got.push((await ws.nextFrame()).id)
  t.same(got, [...before, ...during, ...after])
  ws.sendRaw('{"type":"mark","id":1,"data":null}')
  t.match(await ws.nextFrame(), { type: 'event', event: 'message', data: { text: 'mark' } }, 'and nothing else')
})

t.test('an after that cannot be resumed sends {"type":"reset"} first, then goes live', async (t) => {
  const app = await buildWs(t, { broker: memoryBroker({ maxLen: 2 }) })
  const route = feedRoute(app)
  const ids = await publishAll(route.lobby, ['a', 'b', 'c', 'd'])
  const [ms, seq] = (ids[0] as string).split('-').map(Number) as [number, number]
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const afters = ['garbage', '', '-1', `${ms}-${seq + 1000}`, `${ms + 1e9}-0`, `0${ids[3]}`, ids[0] as string, 'x'.repeat(300)]
  for (const [i, after] of afters.entries()) {
    const ws = await openReal(t, url, `/feed?topic=1&after=${encodeURIComponent(after)}`)
    await route.subscribed[i]
    const live = await route.lobby.publish('message', { text: `live ${i}` })
    t.same(await ws.next(), { type: 'reset', topic: 'lobby' }, `after=${after.slice(0, 20)}`)
    t.same(await ws.next(), { type: 'event', topic: 'lobby', id: live, event: 'message', data: { text: `live ${i}` } })
    ws.socket.close()
    await ws.closed
  }
})

t.test('subscribing twice to one topic delivers once; unsubscribe stops delivery', async (t) => {
  const app = await buildWs(t)
  const lobby = app.realtime.topic('lobby', { contract: feed })
  let conn!: Connection<typeof feed>
  app.ws('/twice', {
    contract: feed,
    async onOpen (c) {
      conn = c
      await c.subscribe(lobby)
      await c.subscribe(lobby)
    },
    handlers: {
      ping: () => 'pong' as const,
      leave: (data, c) => { c.unsubscribe(lobby) },
      mark: (data, c) => { c.send('message', { text: 'mark' }) },
      hang: () => {}
    }
  })
  const ws = await openWS(app, '/twice')
  t.equal(await ws.request('ping', null), 'pong', 'onOpen has run')
  t.equal((app.realtime as any).subscriberCount('lobby'), 1)
  const [one, two] = await publishAll(lobby, ['one', 'two'])
  t.equal((await ws.nextFrame()).id, one)
  t.equal((await ws.nextFrame()).id, two, 'not one again')
  await ws.request('leave', null)
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  await lobby.publish('message', { text: 'gone' })
  await ws.request('mark', null)
  t.match(await ws.nextFrame(), { type: 'event', event: 'message', data: { text: 'mark' } }, 'the unsubscribed event never came')
  t.doesNotThrow(() => conn.unsubscribe(lobby), 'unsubscribing again is a no-op')
  t.throws(() => conn.unsubscribe({ name: 'lobby' } as any), { code: 'FRT_ERR_INVALID_OPTION' })
  t.throws(() => { conn.subscribe('lobby' as any) }, { code: 'FRT_ERR_INVALID_OPTION' })
  t.throws(() => { conn.subscribe(lobby, { after: 5 as any }) }, { code: 'FRT_ERR_INVALID_OPTION' })
})

t.test('one published event reaches SSE streams and WebSocket connections with the same id', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse, { heartbeat: 0 })
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => ({ name: 'ann' }) })
  const route = feedRoute(app)
  app.get('/sse', async (request, reply) => { await reply.sse().subscribe(route.lobby) })
  await app.ready()
  const sse = await injectSSE(app, { url: '/sse' })
  const ws = await openWS(app, '/feed?topic=1')
  await route.subscribed[0]
  t.equal((app.realtime as any).subscriberCount('lobby'), 2, 'one hub, both transports')
  t.equal(await nextPosition(sse), '0-0')
  const id = await route.lobby.publish('message', { text: 'both' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"both"}', id })
  t.same(await ws.nextFrame(), { type: 'event', topic: 'lobby', id, event: 'message', data: { text: 'both' } })
  await sse.close()
})

t.test('a broadcast to many connections frames the event once', async (t) => {
  const app = await buildWs(t)
  const route = feedRoute(app)
  const clients: Awaited<ReturnType<typeof openWS>>[] = []
  for (let i = 0; i < 5; i++) clients.push(await openWS(app, '/feed?topic=1'))
  await Promise.all(route.subscribed)
  // Every encoding of a text to bytes measures it first.
  const byteLength = Buffer.byteLength
  let framed = 0
  Buffer.byteLength = ((...args: Parameters<typeof byteLength>) => {
    if (typeof args[0] === 'string' && args[0].includes('"once"')) framed++
    return (byteLength as any)(...args)
  }) as typeof Buffer.byteLength
  t.teardown(() => { Buffer.byteLength = byteLength })
  const id = await route.lobby.publish('message', { text: 'once' })
  Buffer.byteLength = byteLength
  for (const client of clients) t.same(await client.nextFrame(), { type: 'event', topic: 'lobby', id, event: 'message', data: { text: 'once' } })
  t.equal(framed, 1)
})

t.test('a history that cannot be read closes the connection with 1011, and subscribe() resolves', async (t) => {
  const logs = captureLogs()
  const inner = memoryBroker()
  t.teardown(() => inner.close())
  const broker: Broker = {
    publish: (topic, event, data) => inner.publish(topic, event, data),
    listen: (listener) => inner.listen(listener),
    history: () => Promise.reject(new Error('down')),
    close: () => inner.close()
  }
  const app = await buildWs(t, { broker }, { logger: { stream: logs.stream } })
  const route = feedRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const ws = await openReal(t, url, '/feed?topic=1&after=1-0')
  t.equal((await within(ws.closed, 2000, 'the close')).code, 1011)
  await t.resolves(within(route.subscribed[0] as Promise<void>, 2000, 'subscribe()'))
  await route.closedCount(1)
  t.same(route.closes, [1011])
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  t.ok(logs.lines.some((line) => /cannot read the history/.test(line.msg)))
})

// ---- memory ----

t.test('1,000 connect/subscribe/disconnect cycles leave nothing behind', async (t) => {
  const app = await buildWs(t)
  const route = feedRoute(app)
  await app.ready()
  let n = 0
  const cycle = async (): Promise<void> => {
    const ws = await connectWS(app, '/feed?topic=1')
    await ws.request('ping', null)
    if (++n % 10 === 0) {
      await route.lobby.publish('message', { text: 'tick' })
      await ws.nextFrame()
    }
    await ws.close()
  }
  const settle = (): Promise<void> => within((async () => {
    while (app.websocketServer.clients.size > 0) await sleep(20)
  })(), 5000, 'the server side of every connection to close')
  const gc = (globalThis as { gc?: () => void }).gc as () => void
  for (let i = 0; i < 100; i++) await cycle()
  await settle()
  gc()
  const baseline = process.memoryUsage().heapUsed
  for (let i = 0; i < 1000; i++) await cycle()
  await settle()
  route.conns.length = 0
  route.subscribed.length = 0
  route.closes.length = 0
  await sleep(20)
  gc()
  const growth = process.memoryUsage().heapUsed - baseline
  t.equal((app.realtime as any).subscriberCount('lobby'), 0, 'no subscription left')
  t.equal(app.websocketServer.clients.size, 0, 'no socket left')
  t.ok(growth < 3 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024)} KiB over 1,000 cycles`)
})

// ---- registration ----

t.test('registration: every contract message needs a handler, and only those', async (t) => {
  const app = await buildWs(t)
  t.throws(() => app.ws('/a', { contract: feed, handlers: { ping: () => 'pong' as const } } as any), { code: 'FRT_ERR_WS_MISSING_HANDLER' })
  t.throws(() => app.ws('/b', { contract: feed } as any), { code: 'FRT_ERR_WS_MISSING_HANDLER' })
  const handlers = { ping: () => 'pong' as const, leave: () => {}, mark: () => {}, hang: () => {} }
  t.throws(() => app.ws('/c', { contract: feed, handlers: { ...handlers, shout: () => {} } } as any), { code: 'FRT_ERR_INVALID_OPTION' })
  t.throws(() => app.ws('/d', { handlers: { ping: () => {} } } as any), { code: 'FRT_ERR_INVALID_OPTION' }, 'a handler with no contract')
  t.doesNotThrow(() => app.ws('/e', { contract: feed, handlers }))
})

t.test('registration: bad route options are refused with FRT_ERR_INVALID_OPTION', async (t) => {
  const app = await buildWs(t)
  const handlers = { ping: () => 'pong' as const, leave: () => {}, mark: () => {}, hang: () => {} }
  const bad: Array<[string, Record<string, unknown>]> = [
    ['handlers: a string', { handlers: 'ping' }],
    ['handlers: a number', { handlers: 42 }],
    ['handlers: a function', { handlers: () => {} }],
    ['onOpen: a string', { handlers, onOpen: 'open' }],
    ['onClose: an object', { handlers, onClose: {} }],
    ['rateLimit: {}', { handlers, rateLimit: {} }],
    ['rateLimit: true', { handlers, rateLimit: true }],
    ['rateLimit: zero messages', { handlers, rateLimit: { messages: 0, intervalMs: 1000 } }],
    ['maxPayload: 0', { handlers, maxPayload: 0 }],
    ['maxBufferedBytes: -1', { handlers, maxBufferedBytes: -1 }],
    ['authenticate: a string', { handlers, authenticate: 'yes' }],
    ['contract: a plain object', { handlers: {}, contract: { events: {} } }]
  ]
  for (const [what, options] of bad) {
    t.throws(() => app.ws(`/${what.replace(/\W/g, '')}`, { contract: feed, ...options } as any), { code: 'FRT_ERR_INVALID_OPTION' }, what)
  }
  t.throws(() => app.ws('/null', null as any), { code: 'FRT_ERR_INVALID_OPTION' })
})

t.test('a rateLimit without messages or intervalMs is refused at registration', async (t) => {
  // Regression: {} was accepted, then every message got "at most undefined per undefined ms" and
  // 4429 never came; { messages } alone never reset its window.
  const app = await buildWs(t)
  const handlers = { ping: () => 'pong' as const, leave: () => {}, mark: () => {}, hang: () => {} }
  for (const rateLimit of [{}, { messages: 5 }, { intervalMs: 1000 }, { messages: 5, intervalMs: undefined }]) {
    t.throws(() => app.ws(`/r${JSON.stringify(rateLimit).replace(/\W/g, '')}`, { contract: feed, handlers, rateLimit } as any), { code: 'FRT_ERR_INVALID_OPTION' }, `route rateLimit ${JSON.stringify(rateLimit)}`)
    await t.rejects(async () => {
      const plugin = Fastify()
      t.teardown(() => plugin.close())
      await plugin.register(fastifyWs, { authenticate: () => ({}), rateLimit } as any)
    }, { code: 'FRT_ERR_INVALID_OPTION' }, `plugin rateLimit ${JSON.stringify(rateLimit)}`)
  }
})

const optionsOf = (plugin: unknown, broker: Broker): any => plugin === fastifyWs ? { heartbeat: 0, authenticate: () => ({}), broker } : { heartbeat: 0, broker }

t.test('fastifySse and fastifyWs share one app.realtime hub, in either order', async (t) => {
  for (const order of [[fastifySse, fastifyWs], [fastifyWs, fastifySse]] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    await app.register(order[0] as any, optionsOf(order[0], broker))
    const hub = app.realtime
    await app.register(order[1] as any, optionsOf(order[1], broker))
    t.equal(app.realtime, hub, 'the same object')
    t.equal(app.realtime.broker, broker, 'the same broker passed to both is fine')
  }
})

t.test('two different brokers for fastifySse and fastifyWs are a registration error', async (t) => {
  for (const order of [[fastifySse, fastifyWs], [fastifyWs, fastifySse]] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    const first = memoryBroker()
    const second = memoryBroker()
    t.teardown(() => Promise.all([first.close(), second.close()]))
    await app.register(order[0] as any, optionsOf(order[0], first))
    await t.rejects(async () => { await app.register(order[1] as any, optionsOf(order[1], second)) }, { code: 'FRT_ERR_BROKER_CONFLICT' })
  }
  const defaults = Fastify()
  t.teardown(() => defaults.close())
  await defaults.register(fastifySse, { heartbeat: 0 })
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  await t.rejects(async () => { await defaults.register(fastifyWs, { authenticate: () => ({}), broker }) }, { code: 'FRT_ERR_BROKER_CONFLICT' }, 'a broker after a default one')
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
