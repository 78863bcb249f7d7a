import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build } from '../helpers/index.js'
import { buildWs, openWS } from '../helpers/ws.js'

t.test('injectSSE rejects with FRT_ERR_TESTING when no headers come in time', async (t) => {
  const app = await build(t)
  let aborted!: () => void
  const gone = new Promise<void>((resolve) => { aborted = resolve })
  app.get('/never', (request) => {
    request.raw.on('error', aborted)
    return new Promise(() => {})
  })
  await t.rejects(injectSSE(app, { url: '/never', timeout: 20 }), { code: 'FRT_ERR_TESTING', message: /no response headers from \/never/ })
  await gone
  t.pass('the request was aborted')
})

t.test('next() rejects after its timeout, and events() rethrows it', async (t) => {
  const app = await build(t)
  app.get('/quiet', (request, reply) => { reply.sse() })
  const sse = await injectSSE(app, { url: '/quiet', timeout: 20 })
  await t.rejects(sse.next(), { code: 'FRT_ERR_TESTING', message: /no event within 20 ms/ })
  await t.rejects(async () => { for await (const event of sse.events()) t.fail(`unexpected ${event.event}`) }, { code: 'FRT_ERR_TESTING' })
  await sse.close()
})

t.test('next() after the end rejects at once; queued events are still read first', async (t) => {
  const app = await build(t)
  app.get('/two', (request, reply) => {
    const stream = reply.sse()
    stream.send('a', '1')
    stream.send('b', '2')
    stream.close()
  })
  const sse = await injectSSE(app, { url: '/two' })
  await sse.ended
  t.equal((await sse.next()).event, 'a')
  t.equal((await sse.next()).event, 'b')
  await t.rejects(sse.next(), { code: 'FRT_ERR_TESTING', message: /has ended/ })
})

t.test('POST streams with a body, and non-SSE answers keep their status', async (t) => {
  const app = await build(t)
  app.post('/ask', (request, reply) => reply.sse([{ event: 'echo', data: request.body as object }]))
  app.get('/denied', (request, reply) => { reply.code(401).send({ error: 'no' }) })
  const sse = await injectSSE(app, { url: '/ask', method: 'POST', payload: { q: 'hi' }, headers: { 'x-test': '1' } })
  t.same(await sse.next(), { event: 'echo', data: '{"q":"hi"}', id: undefined })
  const denied = await injectSSE(app, { url: '/denied' })
  t.equal(denied.statusCode, 401)
  await t.rejects(denied.next(), { code: 'FRT_ERR_TESTING' })
})

t.test('connectWS reads a refusal whose head arrives in several pieces', async (t) => {
  const { default: Fastify } = await import('fastify')
  const { fastifyWs } = await import('../../lib/index.js')
  const { connectWS } = await import('../../lib/testing/index.js')
  const app = Fastify()
  await app.register(fastifyWs, { heartbeat: 0 })
  t.teardown(() => app.close())
  app.ws('/teapot', {
    authenticate: false,
    onRequest: (request, reply, done) => {
      const socket = reply.raw.socket as NodeJS.WritableStream
      reply.hijack()
      socket.write('HTTP/1.1 418 I')
      setImmediate(() => socket.end('\'m a teapot\r\nContent-Length: 0\r\n\r\n'))
    }
  })
  await t.rejects(connectWS(app, '/teapot'), { code: 'FRT_ERR_TESTING', statusCode: 418 })
})

t.test('connectWS subscribe(), unsubscribe() and ping() speak the reserved messages', async (t) => {
  const chat = defineContract({ events: { message: Type.Object({ text: Type.String() }) } })
  const app = await buildWs(t)
  app.ws('/rt', { contract: chat, topics: { 'room:*': true } })
  const ws = await openWS(app, '/rt')
  const room = app.realtime.topic('room:1', { contract: chat })
  const first = await room.publish('message', { text: 'a' })
  const second = await room.publish('message', { text: 'b' })
  t.same(await ws.subscribe('room:1', { after: first }), { topic: 'room:1', position: second, resumed: true }, 'the reply, after the replay')
  t.same(await ws.nextEvent(), { event: 'message', data: { text: 'b' }, topic: 'room:1', id: second }, 'the replayed event')
  t.same(await ws.subscribe('room:2'), { topic: 'room:2', position: second, resumed: false }, 'without after')
  t.equal(await ws.unsubscribe('room:1'), undefined)
  t.equal(await ws.ping(), undefined)
  await t.rejects(ws.subscribe('lobby'), { code: 'FORBIDDEN' })
  await ws.close()
})
