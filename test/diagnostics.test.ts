// The diagnostics channels, over real sockets: one open and one close per connection however it
// ends, refusals, bad messages, resumes, publishes, slow consumers, the handler tracing channel,
// and payloads that never carry a token or message data.
import diagnostics from 'node:diagnostics_channel'
import net from 'node:net'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import {
  DiagnosticsChannel,
  bearerToken,
  defineContract,
  fastifySse,
  publicError
} from '../lib/index.js'
import { connectWS, injectSSE } from '../lib/testing/index.js'
import { on, recordChannels } from './helpers/diagnostics.js'
import { listen, rawRequest } from './helpers/index.js'
import { buildWs, rawUpgrade, sleep, until, wsUpgrade, clientFrame, Opcode } from './helpers/ws.js'

const room = defineContract({
  events: { message: Type.Object({ text: Type.String() }), blob: Type.String() },
  messages: {
    say: Type.Object({ text: Type.String() }),
    later: Type.Object({ text: Type.String() }),
    fail: Type.Null(),
    reject: Type.Null(),
    leave: Type.Null(),
    flood: Type.Integer()
  },
  replies: { say: Type.Object({ ok: Type.Boolean() }) }
})

const SECRET = 'tok-3f9a1c'
const MARKER = 'marker-7d2e'
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** An app with fastifySse and fastifyWs, a room route (authenticated by a bearer token) and a public SSE route. */
async function build (t: Test, wsOptions: Record<string, unknown> = {}) {
  const app = await buildWs(t, { authenticate: (request) => bearerToken(request) === SECRET ? { name: 'ann' } : null, ...wsOptions })
  await app.register(fastifySse, { heartbeat: 0 })
  const topic = app.realtime.topic('lobby', { contract: room })
  app.ws('/rooms/:room', {
    contract: room,
    onOpen (conn) { return conn.subscribe(topic) },
    handlers: {
      say: (data) => ({ ok: data.text.length > 0 }),
      later: async () => { await sleep(5) },
      fail: () => { throw new Error(`handler failed with ${MARKER}`) },
      reject: async () => { throw publicError('NOPE', 'no') },
      leave: (_data, conn) => { conn.close(4000, 'bye') },
      flood: (size, conn) => { for (let i = 0; i < 64; i++) conn.send('blob', 'x'.repeat(size)) }
    }
  })
  app.get('/feed', { sse: { contract: room } }, async (request, reply) => {
    const stream = reply.sse()
    await stream.subscribe(topic)
    return reply
  })
  return { app, topic }
}

/** A real ws client with the token in a `bearer.<token>` subprotocol. */
async function open (url: string, path: string): Promise<{ socket: WebSocket, closed: Promise<number> }> {
  const socket = new WebSocket(`${url.replace('http', 'ws')}${path}`, ['realtime.v1', `bearer.${SECRET}`])
  const closed = new Promise<number>((resolve) => socket.once('close', resolve))
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
  return { socket, closed }
}

t.test('the channel names are the documented constants', async (t) => {
  t.same(DiagnosticsChannel, {
    ConnectionOpen: 'fastify-realtime:connection:open',
    ConnectionClose: 'fastify-realtime:connection:close',
    ConnectionReject: 'fastify-realtime:connection:reject',
    MessageInvalid: 'fastify-realtime:message:invalid',
    TopicPublish: 'fastify-realtime:topic:publish',
    SubscriptionResume: 'fastify-realtime:subscription:resume',
    ConsumerSlow: 'fastify-realtime:consumer:slow',
    WsHandler: 'fastify-realtime.ws.handler'
  })
  t.ok(Object.isFrozen(DiagnosticsChannel))
})

t.test('WebSocket: one open and one close per connection, with the same id, for every way it ends', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t)
  const url = await listen(app)
  const byClient = await open(url, '/rooms/a')
  const byServer = await open(url, '/rooms/b')
  const terminated = await open(url, '/rooms/c')
  const atShutdown = await open(url, '/rooms/d')
  t.same(app.realtime.stats().connections, { sse: 0, ws: 4 })

  byClient.socket.close(1000)
  byServer.socket.send(JSON.stringify({ type: 'leave', data: null }))
  terminated.socket.terminate()
  await Promise.all([byClient.closed, byServer.closed, terminated.closed])
  await until(() => on(seen, DiagnosticsChannel.ConnectionClose).length === 3, 5000, 'three closes')
  await app.close()
  t.equal(await atShutdown.closed, 1001)

  const opens = on(seen, DiagnosticsChannel.ConnectionOpen)
  const closes = on(seen, DiagnosticsChannel.ConnectionClose)
  t.equal(opens.length, 4)
  t.equal(closes.length, 4)
  for (const event of opens) {
    t.same(Object.keys(event).sort(), ['connectionId', 'route', 'transport'])
    t.match(event, { transport: 'ws', route: '/rooms/:room' }, 'the URL pattern, not the URL')
    t.equal(closes.filter((close) => close.connectionId === event.connectionId).length, 1, 'exactly one close for this open')
  }
  t.same(closes.map((close) => close.code).sort(), [1000, 1001, 1006, 4000])
  for (const close of closes) t.ok(close.durationMs >= 0 && Number.isFinite(close.durationMs), 'a duration in ms')
  const stats = app.realtime.stats()
  t.same(stats.connections, { sse: 0, ws: 0 }, 'back to zero')
  t.match(stats.totals, { opened: 4, closed: 4, rejected: 0 })
  t.equal(stats.subscriptions, 0)
})

t.test('a refused upgrade: a reject with its status, no open and no close', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t)
  const url = await listen(app)
  const unauthorized = await rawUpgrade(url, '/rooms/a')
  const forbidden = await rawUpgrade(url, '/rooms/a', { origin: 'https://evil.example', authorization: `Bearer ${SECRET}` })
  t.equal(unauthorized.statusCode, 401)
  t.equal(forbidden.statusCode, 403)
  unauthorized.socket.destroy()
  forbidden.socket.destroy()
  // An injected upgrade is refused the same way.
  await t.rejects(connectWS(app, '/rooms/a'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
  t.same(on(seen, DiagnosticsChannel.ConnectionReject), [
    { transport: 'ws', route: '/rooms/:room', status: 401 },
    { transport: 'ws', route: '/rooms/:room', status: 403 },
    { transport: 'ws', route: '/rooms/:room', status: 401 }
  ])
  t.same(on(seen, DiagnosticsChannel.ConnectionOpen), [])
  t.same(on(seen, DiagnosticsChannel.ConnectionClose), [])
  t.match(app.realtime.stats(), { connections: { sse: 0, ws: 0 }, totals: { opened: 0, rejected: 3 } })
})

t.test('upgrades refused before routing (upgradeRateLimit, a closing server) are rejects without a route', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t, { upgradeRateLimit: { upgrades: 1, intervalMs: 60000 } })
  const url = await listen(app)
  const first = await wsUpgrade(url, '/rooms/a', { authorization: `Bearer ${SECRET}` })
  const second = await rawUpgrade(url, '/rooms/a', { authorization: `Bearer ${SECRET}` })
  t.equal(second.statusCode, 429)
  second.socket.destroy()
  // The first socket never answers the close frame: app.close() waits for it, and meanwhile a new upgrade gets 503.
  const closing = app.close()
  await until(() => app.realtime.stats().connections.ws === 1 && on(seen, DiagnosticsChannel.ConnectionClose).length === 0, 1000, 'closing')
  const late = await rawUpgrade(url, '/rooms/a', { authorization: `Bearer ${SECRET}` }).catch(() => undefined)
  first.destroy()
  await closing
  t.equal(late?.statusCode, 503)
  t.same(on(seen, DiagnosticsChannel.ConnectionReject), [{ transport: 'ws', route: null, status: 429 }, { transport: 'ws', route: null, status: 503 }])
  t.equal(app.realtime.stats().totals.rejected, 2)
})

t.test('SSE: one open and one close per stream: the client leaving, close(), app.close()', async (t) => {
  const seen = recordChannels(t)
  const { app, topic } = await build(t)
  app.get('/once', (request, reply) => { reply.sse().close() })
  await app.ready()
  const leaving = await injectSSE(app, { url: '/feed' })
  const staying = await injectSSE(app, { url: '/feed' })
  await injectSSE(app, { url: '/once' })
  await until(() => app.realtime.stats().subscriptions === 2, 5000, 'two subscriptions')
  t.same(app.realtime.stats().connections, { sse: 2, ws: 0 })
  await topic.publish('message', { text: 'hi' })
  await leaving.next()
  await leaving.close()
  await until(() => on(seen, DiagnosticsChannel.ConnectionClose).length === 2, 5000, 'two closes')
  await app.close()
  await staying.ended

  const opens = on(seen, DiagnosticsChannel.ConnectionOpen)
  const closes = on(seen, DiagnosticsChannel.ConnectionClose)
  t.equal(opens.length, 3)
  t.same(opens.map((open) => open.route).sort(), ['/feed', '/feed', '/once'])
  for (const open of opens) {
    t.equal(open.transport, 'sse')
    t.match(open.connectionId, UUID)
    t.equal(closes.filter((close) => close.connectionId === open.connectionId).length, 1, 'exactly one close for this open')
  }
  t.same(closes.map((close) => close.code), [1000, 1006, 1001], 'close(), the client left, app.close()')
  t.same(on(seen, DiagnosticsChannel.TopicPublish), [{ topic: 'lobby', event: 'message', id: on(seen, DiagnosticsChannel.TopicPublish)[0]?.id }])
  t.match(app.realtime.stats(), { connections: { sse: 0, ws: 0 }, subscriptions: 0, topics: 0, totals: { opened: 3, closed: 3 } })
})

t.test('a stream opened where no route matched has an empty route', async (t) => {
  const seen = recordChannels(t)
  const app = await buildWs(t)
  await app.register(fastifySse, { heartbeat: 0 })
  app.setNotFoundHandler((request, reply) => { reply.sse().close() })
  await app.ready()
  await (await injectSSE(app, { url: '/nowhere' })).ended
  t.same(on(seen, DiagnosticsChannel.ConnectionOpen).map((open) => open.route), [''])
})

t.test('a declared SSE route answered without a stream is a reject; a failed source closes with 1011', async (t) => {
  const seen = recordChannels(t)
  const app = await buildWs(t)
  await app.register(fastifySse, { heartbeat: 0 })
  app.get('/refused', { sse: true }, (request, reply) => reply.code(401).send())
  app.get('/broken', { sse: true }, (request, reply) => reply.sse((async function * () { throw new Error('source failed') })()))
  await app.ready()
  t.equal((await app.inject('/refused')).statusCode, 401)
  const broken = await injectSSE(app, { url: '/broken' })
  await broken.ended
  t.same(on(seen, DiagnosticsChannel.ConnectionReject), [{ transport: 'sse', route: '/refused', status: 401 }])
  t.same(on(seen, DiagnosticsChannel.ConnectionClose).map((close) => [close.route, close.code]), [['/broken', 1011]])
})

t.test('a bad message is published with its code, a good one is not', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t)
  const ws = await connectWS(app, '/rooms/a', { headers: { authorization: `Bearer ${SECRET}` } })
  ws.sendRaw('{not json')
  await ws.nextFrame('error')
  await t.rejects(ws.request('nope', {}), { code: 'UNKNOWN_TYPE' })
  await t.rejects(ws.request('say', { text: 1 }), { code: 'VALIDATION' })
  t.same(await ws.request('say', { text: 'x' }), { ok: true })
  const invalid = on(seen, DiagnosticsChannel.MessageInvalid)
  t.same(invalid.map((event) => event.code), ['BAD_JSON', 'UNKNOWN_TYPE', 'VALIDATION'])
  t.match(invalid[0], { transport: 'ws', route: '/rooms/:room' })
  t.match(app.realtime.stats().totals, { invalid: 3, received: 4 })
  await ws.close()
})

t.test('resumes: a reset for an id that cannot be resumed, a replay for one that can', async (t) => {
  const seen = recordChannels(t)
  const { app, topic } = await build(t)
  await app.ready()
  const first = await topic.publish('message', { text: 'one' })
  await topic.publish('message', { text: 'two' })
  const reset = await injectSSE(app, { url: '/feed', lastEventId: 'nonsense' })
  t.equal((await reset.next()).event, 'realtime.reset')
  const resumed = await injectSSE(app, { url: '/feed', lastEventId: first })
  t.equal(JSON.parse((await resumed.next()).data).text, 'two')
  await reset.close()
  await resumed.close()
  const resumes = on(seen, DiagnosticsChannel.SubscriptionResume)
  t.same(resumes.map(({ transport, route, topics, resumed, replayed }) => ({ transport, route, topics, resumed, replayed })), [
    { transport: 'sse', route: '/feed', topics: ['lobby'], resumed: false, replayed: 0 },
    { transport: 'sse', route: '/feed', topics: ['lobby'], resumed: true, replayed: 1 }
  ])
  t.match(app.realtime.stats().totals, { resumed: 1, resets: 1 })
})

t.test('a publish is published once, whatever the number of subscribers', async (t) => {
  const seen = recordChannels(t)
  const { app, topic } = await build(t)
  await app.ready()
  const clients = await Promise.all([1, 2, 3].map(() => connectWS(app, '/rooms/a', { headers: { authorization: `Bearer ${SECRET}` } })))
  await until(() => app.realtime.stats().subscriptions === 3, 5000, 'three subscriptions')
  const id = await topic.publish('message', { text: MARKER })
  await Promise.all(clients.map((client) => client.nextEvent('message')))
  t.same(on(seen, DiagnosticsChannel.TopicPublish), [{ topic: 'lobby', event: 'message', id }])
  t.match(app.realtime.stats(), { subscriptions: 3, topics: 1 })
  await Promise.all(clients.map((client) => client.close()))
})

t.test('slow consumers: published with their unsent bytes, closed with 1008, on both transports', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t, { maxBufferedBytes: 4096 })
  app.get('/big', (request, reply) => {
    const stream = reply.sse({ maxBufferedBytes: 4096 })
    for (let i = 0; i < 64 && stream.send('blob', 'x'.repeat(64 * 1024)); i++);
  })
  const url = await listen(app)
  const sse = await rawRequest(url, '/big')
  sse.pause()
  const ws = await wsUpgrade(url, '/rooms/a', { authorization: `Bearer ${SECRET}` })
  ws.write(clientFrame(Opcode.text, JSON.stringify({ type: 'flood', data: 64 * 1024 })))
  await until(() => on(seen, DiagnosticsChannel.ConsumerSlow).length === 2, 5000, 'two slow consumers')
  const slow = on(seen, DiagnosticsChannel.ConsumerSlow)
  t.same(slow.map((event) => event.transport).sort(), ['sse', 'ws'])
  for (const event of slow) {
    t.equal(event.maxBufferedBytes, 4096)
    t.ok(event.bufferedBytes > 4096, `${event.transport}: ${event.bufferedBytes} unsent bytes`)
  }
  await until(() => on(seen, DiagnosticsChannel.ConnectionClose).length === 2, 5000, 'two closes')
  t.same(on(seen, DiagnosticsChannel.ConnectionClose).map((close) => close.code), [1008, 1008])
  t.equal(app.realtime.stats().totals.slowConsumers, 2)
  sse.destroy()
  ws.destroy()
})

t.test('a slow SSE consumer written through the response (HTTP/1.0, no chunks) is published with its unsent bytes', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t)
  app.get('/big10', (request, reply) => {
    const stream = reply.sse({ maxBufferedBytes: 4096 })
    for (let i = 0; i < 64 && stream.send('blob', 'x'.repeat(64 * 1024)); i++);
  })
  const url = new URL(await listen(app))
  const socket = net.connect(Number(url.port), url.hostname)
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  socket.write('GET /big10 HTTP/1.0\r\nHost: localhost\r\n\r\n')
  socket.pause()
  await until(() => on(seen, DiagnosticsChannel.ConsumerSlow).length === 1, 5000, 'one slow consumer')
  const [slow] = on(seen, DiagnosticsChannel.ConsumerSlow)
  t.equal(slow.transport, 'sse')
  t.ok(slow.bufferedBytes > 4096, `${slow.bufferedBytes} unsent bytes`)
})

t.test('the handler tracing channel: the order of Fastify\'s, for sync, async, throwing and rejecting handlers', async (t) => {
  const seen = recordChannels(t)
  const { app } = await build(t)
  const ws = await connectWS(app, '/rooms/a', { headers: { authorization: `Bearer ${SECRET}` } })
  const traced = async (send: () => Promise<unknown>): Promise<string[]> => {
    seen.length = 0
    await send().catch(() => {})
    return seen.filter((entry) => entry.channel.startsWith('tracing:')).map((entry) => entry.channel.slice('tracing:'.length))
  }
  t.same(await traced(() => ws.request('say', { text: 'x' })), ['start', 'end'], 'sync')
  t.same(await traced(() => ws.request('later', { text: 'x' })), ['start', 'end', 'asyncStart', 'asyncEnd'], 'async')
  t.same(await traced(() => ws.request('fail', null)), ['start', 'error', 'end'], 'throws')
  t.same(await traced(() => ws.request('reject', null)), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'], 'rejects')
  const context = seen.find((entry) => entry.channel === 'tracing:error')?.message
  t.match(context, { transport: 'ws', route: '/rooms/:room', type: 'reject', async: true, error: { code: 'NOPE' } })
  t.match(context.connectionId, UUID)
  await ws.close()
})

t.test('the tracing channel binds its stores: the handler runs inside them', async (t) => {
  const { AsyncLocalStorage } = await import('node:async_hooks')
  const store = new AsyncLocalStorage<string>()
  const tracing = diagnostics.tracingChannel(DiagnosticsChannel.WsHandler)
  tracing.start.bindStore(store, (context: any) => `${context.type} on ${context.route}`)
  t.teardown(() => tracing.start.unbindStore(store))
  const app = await buildWs(t)
  let inside: string | undefined
  app.ws('/store', { authenticate: false, contract: defineContract({ messages: { look: Type.Null() } }), handlers: { look: () => { inside = store.getStore() } } })
  await app.ready()
  const ws = await connectWS(app, '/store')
  await ws.request('look', null)
  t.equal(inside, 'look on /store')
  await ws.close()
})

t.test('no event holds a token, message data, a request, a reply or a socket', async (t) => {
  const seen = recordChannels(t)
  const { app, topic } = await build(t)
  const url = await listen(app)
  const client = await open(url, `/rooms/${MARKER}`)
  const replies: string[] = []
  client.socket.on('message', (frame) => replies.push(String(frame)))
  for (const type of ['say', 'later', 'fail', 'reject']) client.socket.send(JSON.stringify({ type, id: MARKER, data: type === 'fail' || type === 'reject' ? null : { text: MARKER } }))
  client.socket.send(JSON.stringify({ type: 'say', id: 1, data: { text: 7, note: MARKER } }))
  await topic.publish('message', { text: MARKER })
  const sse = await injectSSE(app, { url: '/feed', headers: { authorization: `Bearer ${SECRET}` }, lastEventId: MARKER })
  await sse.next()
  await sse.close()
  await until(() => replies.length >= 6, 5000, 'the answers')
  client.socket.close()
  await client.closed
  await until(() => on(seen, DiagnosticsChannel.ConnectionClose).length === 2, 5000, 'both closes')
  t.ok(seen.length > 15, `${seen.length} events`)
  for (const { channel, message } of seen) {
    const json = JSON.stringify(message, (key, value) => key === 'error' ? undefined : value)
    t.notOk(json.includes(SECRET), `${channel}: no token`)
    t.notOk(json.includes(MARKER), `${channel}: no message data, id or concrete URL`)
    for (const [key, value] of Object.entries(message)) {
      if (key === 'error') continue
      const plain = value === null || ['string', 'number', 'boolean'].includes(typeof value) ||
        (Array.isArray(value) && value.every((item) => typeof item === 'string'))
      t.ok(plain, `${channel}.${key} is a plain value`)
    }
  }
})

t.test('nothing is published while nobody listens, and the channels say so', async (t) => {
  const { app, topic } = await build(t)
  await app.ready()
  for (const name of Object.values(DiagnosticsChannel)) {
    if (name !== DiagnosticsChannel.WsHandler) t.notOk(diagnostics.channel(name).hasSubscribers, `${name} has no subscriber`)
  }
  const ws = await connectWS(app, '/rooms/a', { headers: { authorization: `Bearer ${SECRET}` } })
  t.same(await ws.request('say', { text: 'x' }), { ok: true })
  await ws.request('later', { text: 'x' })
  await topic.publish('message', { text: 'hi' })
  await ws.nextEvent('message')
  await ws.close()
  // A subscriber that arrives now sees only what happens from now on.
  const seen = recordChannels(t)
  await app.close()
  t.same(seen, [])
  t.match(app.realtime.stats(), { connections: { ws: 0 }, totals: { opened: 1, closed: 1, received: 2 } })
})
