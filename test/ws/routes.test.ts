import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { fastifyWs } from '../../lib/index.js'
import { connectWS } from '../../lib/testing/index.js'

async function build (t: Test) {
  const app = Fastify()
  await app.register(fastifyWs, { heartbeat: 0 })
  t.teardown(() => app.close())
  return app
}

t.test('a route without a contract sends untyped events, checked only for their name', async (t) => {
  const app = await build(t)
  const codes: string[] = []
  app.ws('/free', {
    authenticate: false,
    onOpen (conn) {
      conn.send('hello', { any: ['thing'] })
      try { conn.send('bad name', 1) } catch (err) { codes.push((err as { code: string }).code) }
      try { conn.send('big', 10n) } catch (err) { codes.push((err as { code: string }).code) }
    }
  })
  const ws = await connectWS(app, '/free')
  t.same(await ws.nextEvent('hello'), { event: 'hello', data: { any: ['thing'] } }, 'no topic, no id')
  t.same(codes, ['FRT_ERR_INVALID_NAME', 'FRT_ERR_SERIALIZE'])
  await t.rejects(ws.request('anything', {}), { code: 'UNKNOWN_TYPE' }, 'no contract, no messages')
})

t.test('route hooks given as a function or an array run after the library\'s', async (t) => {
  const app = await build(t)
  const order: string[] = []
  app.ws('/hooked', {
    authenticate: async () => { order.push('authenticate'); return 'ann' },
    onRequest: [async () => { order.push('onRequest 1') }, async () => { order.push('onRequest 2') }],
    preHandler: async () => { order.push('preHandler') }
  })
  app.ws('/one-hook', { authenticate: false, onRequest: async () => { order.push('single') } })
  await (await connectWS(app, '/hooked')).close()
  t.same(order, ['onRequest 1', 'onRequest 2', 'authenticate', 'preHandler'])
  await (await connectWS(app, '/one-hook')).close()
  t.equal(order.at(-1), 'single')
})

t.test('plain { websocket: true } routes get the origin policy too', async (t) => {
  const app = await build(t)
  app.get('/plain', { websocket: true }, (socket) => { socket.send('hi') })
  await t.rejects(connectWS(app, '/plain', { headers: { origin: 'https://evil.example' } }), { code: 'FRT_ERR_TESTING', statusCode: 403 })
  const ws = await connectWS(app, '/plain', { headers: { origin: 'http://localhost' } })
  t.same(await ws.nextFrame(), { type: 'raw', data: 'hi' }, 'same host: allowed; plain text comes as a raw frame')
  await ws.close()
})

t.test('a null rateLimit is an invalid option', async (t) => {
  const app = Fastify()
  await t.rejects(async () => { await app.register(fastifyWs, { rateLimit: null as any }) }, { code: 'FRT_ERR_INVALID_OPTION' })
})

t.test('replies: no schema sends the value as it is; a reply failing at its root is a HANDLER_ERROR', async (t) => {
  const { Type } = await import('@sinclair/typebox')
  const { defineContract } = await import('../../lib/index.js')
  const contract = defineContract({
    messages: { free: Type.Object({}), strict: Type.Object({}) },
    replies: { strict: Type.Object({ ok: Type.Boolean() }) }
  })
  const app = await build(t)
  app.ws('/replies', {
    authenticate: false,
    contract,
    handlers: { free: (() => ({ anything: [1, 'two'] })) as () => void, strict: () => 'not an object' as any }
  })
  const ws = await connectWS(app, '/replies')
  t.same(await ws.request('free', {}), { anything: [1, 'two'] })
  await t.rejects(ws.request('strict', {}), { code: 'HANDLER_ERROR', message: 'The handler failed.' })
})

t.test('close() after close is a no-op; a ws error without a close code is only logged', async (t) => {
  const app = await build(t)
  const closes: number[] = []
  let conn!: import('../../lib/index.js').Connection<undefined>
  app.ws('/c', { authenticate: false, onOpen (c) { conn = c }, onClose (c, code) { closes.push(code) } })
  const ws = await connectWS(app, '/c')
  const [server] = app.websocketServer.clients
  server?.emit('error', new Error('a transport error with no close code'))
  conn.close(4000, 'first')
  conn.close(4001, 'second')
  t.same(await ws.closed, { code: 4000, reason: 'first' })
  t.same(closes, [4000])
})

t.test('an expiry past the 24.8-day timer limit takes several hops, then closes with 4401', async (t) => {
  const app = await build(t)
  const far = Date.now() + 2 ** 31 + 1000
  const { setTimeout: realSetTimeout } = globalThis
  const hops: Array<() => void> = []
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    if (ms === 2 ** 31 - 1) hops.push(fn)
    return realSetTimeout(fn, ms)
  }) as typeof setTimeout
  t.teardown(() => { globalThis.setTimeout = realSetTimeout })
  app.ws('/long', { authenticate: () => ({ user: 'ann', expiresAt: far }) })
  const ws = await connectWS(app, '/long')
  t.equal(hops.length, 1, 'the first hop is as long as a timer can be')
  hops[0]?.()
  t.equal(hops.length, 2, 'not expired yet: another hop')
  const { now } = Date
  Date.now = () => far + 1
  t.teardown(() => { Date.now = now })
  hops[1]?.()
  Date.now = now
  t.same(await ws.closed, { code: 4401, reason: 'authentication expired' })
})

t.test('a plain { websocket: true } route whose handler throws closes with 1011, logged', async (t) => {
  const lines: Array<Record<string, any>> = []
  const app = Fastify({ logger: { stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  await app.register(fastifyWs, { heartbeat: 0 })
  t.teardown(() => app.close())
  app.get('/throws', { websocket: true }, () => { throw new Error('plain handler broke') })
  const ws = await connectWS(app, '/throws')
  t.same(await ws.closed, { code: 1011, reason: 'server error' })
  t.ok(lines.some((line) => line.level === 50 && line.err?.message === 'plain handler broke'))
})

t.test('a protocol error keeps the close code ws sends (not a terminate)', async (t) => {
  const app = await build(t)
  app.ws('/big', { authenticate: false, maxPayload: 16 })
  app.get('/plain-big', { websocket: true }, () => {})
  for (const url of ['/big', '/plain-big']) {
    const ws = await connectWS(app, url)
    ws.sendRaw('x'.repeat(70000))
    t.equal((await ws.closed).code, 1009, url)
  }
})

t.test('a replay event that pushes unsent bytes past maxBufferedBytes cuts the client (1008) part-way', async (t) => {
  // (With events smaller than the bound, a replay to a client that stops reading waits for drain,
  // its memory bounded; the heartbeat ends it if the peer is dead.)
  const { Type } = await import('@sinclair/typebox')
  const { defineContract } = await import('../../lib/index.js')
  const { wsUpgrade, within } = await import('../helpers/ws.js')
  const feed = defineContract({ events: { blob: Type.String() } })
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const start = await lobby.publish('blob', 'start')
  for (let i = 0; i < 100; i++) await lobby.publish('blob', 'b'.repeat(100 * 1024)) // ~10 MB of history
  let subscribing!: (subscribed: Promise<void>) => void
  const subscribed = new Promise<Promise<void>>((resolve) => { subscribing = resolve })
  const closes: number[] = []
  app.ws('/replay', {
    authenticate: false,
    maxBufferedBytes: 64 * 1024,
    onOpen (conn) { subscribing(conn.subscribe(lobby, { after: start })) },
    onClose (conn, code) { closes.push(code) }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await wsUpgrade(url, '/replay') // paused: never reads
  await within(within(subscribed, 2000, 'the subscription'), 2000, 'subscribe() after the cut')
  await within((async () => { while (closes.length === 0) await new Promise((resolve) => setTimeout(resolve, 10)) })(), 3000, 'onClose')
  t.same(closes, [1008])
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  socket.destroy()
})

t.test('messages that arrive after the server began closing are not handled', async (t) => {
  const { Type } = await import('@sinclair/typebox')
  const { defineContract } = await import('../../lib/index.js')
  const { Opcode, clientFrame, closePayload, readFrames, within, wsUpgrade } = await import('../helpers/ws.js')
  const contract = defineContract({ messages: { bye: Type.Null(), later: Type.Null() } })
  const app = await build(t)
  let later = 0
  app.ws('/bye', {
    authenticate: false,
    contract,
    handlers: { bye: (data, conn) => { conn.close(4000, 'bye') }, later: () => { later++ } }
  })
  const socket = await wsUpgrade(await app.listen({ port: 0, host: '127.0.0.1' }), '/bye')
  const frames = readFrames(socket)
  // One TCP write: the server reads "later" after it has begun closing.
  socket.write(Buffer.concat([
    clientFrame(Opcode.text, '{"type":"bye","data":null}'),
    clientFrame(Opcode.text, '{"type":"later","data":null}'),
    clientFrame(Opcode.text, '{"type":"later","data":null}')
  ]))
  const frame = await within(frames.next(), 2000, 'the close frame')
  t.equal(frame.opcode, Opcode.close)
  t.same(closePayload(frame.payload), { code: 4000, reason: 'bye' })
  t.equal(later, 0)
  socket.destroy()
})

t.test('a reply schema that allows undefined (Type.Unknown) answers a handler returning nothing with a reply without data', async (t) => {
  const { Type } = await import('@sinclair/typebox')
  const { defineContract } = await import('../../lib/index.js')
  const contract = defineContract({ messages: { echo: Type.Unknown() }, replies: { echo: Type.Unknown() } })
  const app = await build(t)
  app.ws('/echo', { authenticate: false, contract, handlers: { echo: (data) => data } })
  const ws = await connectWS(app, '/echo')
  ws.sendRaw('{"type":"echo","id":0}')
  t.same(await ws.nextFrame(), { type: 'reply', id: 0 }, 'no data sent, no data back; not a HANDLER_ERROR')
})
