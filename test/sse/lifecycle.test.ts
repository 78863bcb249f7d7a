import http2 from 'node:http2'
import { once } from 'node:events'
import t from 'tap'
import Fastify from 'fastify'
import { createRequire } from 'node:module'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, memoryBroker, type SseStream } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build, captureLogs, connect, listen, rawRequest, tick } from '../helpers/index.js'

// @fastify/sse's types do not describe its CommonJS export as a plugin under NodeNext.
const fastifySseOfficial = createRequire(import.meta.url)('@fastify/sse')

const feed = defineContract({ events: { blob: Type.String() } })

/** Rejects if `promise` has not settled within `ms`: a hang detector, not a speed measure. */
function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

t.test('app.close() ends every open stream and resolves, without forceCloseConnections', async (t) => {
  const app = Fastify({ forceCloseConnections: false })
  await app.register(fastifySse, { heartbeat: 1000 })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const streams: SseStream[] = []
  app.get('/push', (request, reply) => { streams.push(reply.sse()) })
  app.get('/topic', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    await stream.subscribe(lobby)
  })
  app.get('/source', (request, reply) => reply.sse((async function * () {
    while (true) {
      yield { data: 'tick' }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()))
  const url = await listen(app)
  const clients = await Promise.all(['/push', '/topic', '/source', '/push'].map((path) => connect(`${url}${path}`)))
  await lobby.publish('blob', 'x')
  await within(app.close(), 2000, 'app.close()')
  await within(Promise.all(clients.map((client) => client.ended)), 2000, 'the clients\' ends')
  await Promise.all(streams.map((stream) => stream.closed))
  t.ok(streams.every((stream) => stream.signal.aborted))
})

t.test('app.close() ends HTTP/2 streams and their sessions', async (t) => {
  const app = Fastify({ http2: true, forceCloseConnections: false })
  await app.register(fastifySse, { heartbeat: 0 })
  app.get('/e', (request, reply) => { reply.sse().send('hello', 'h2') })
  const url = await listen(app)
  const session = http2.connect(url)
  session.on('error', () => {})
  const request = session.request({ ':path': '/e' })
  request.setEncoding('utf8')
  await once(request, 'data')
  const ended = once(request, 'end')
  request.resume()
  await within(app.close(), 2000, 'app.close()')
  await within(ended, 2000, 'the HTTP/2 stream end')
  session.close()
  t.pass('closed')
})

t.test('a stream opened while the server closes is ended at once', async (t) => {
  const app = Fastify({ forceCloseConnections: false })
  await app.register(fastifySse, { heartbeat: 0 })
  let release!: () => void
  const closing = new Promise<void>((resolve) => { release = resolve })
  let late!: SseStream
  let entered!: () => void
  const inHandler = new Promise<void>((resolve) => { entered = resolve })
  app.get('/late', async (request, reply) => {
    entered()
    await closing
    late = reply.sse()
    t.equal(late.send('x', 'y'), false, 'already closed')
    return reply
  })
  app.addHook('preClose', (done) => { release(); done() })
  const url = await listen(app)
  const client = connect(`${url}/late`)
  await inHandler
  await within(app.close(), 2000, 'app.close()')
  await (await client).ended
  await late.closed
})

t.test('a client that never reads is closed at maxBufferedBytes, and memory stays bounded', async (t) => {
  const logs = captureLogs()
  const maxBufferedBytes = 64 * 1024
  const app = await build(t, { maxBufferedBytes }, { logger: { stream: logs.stream } })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  let stream!: SseStream
  let subscribed!: () => void
  const ready = new Promise<void>((resolve) => { subscribed = resolve })
  app.get('/e', async (request, reply) => {
    stream = reply.sse()
    await stream.subscribe(lobby)
    subscribed()
  })
  const socket = await rawRequest(await listen(app), '/e')
  socket.pause()
  await ready
  const blob = 'x'.repeat(4096)
  let published = 0
  while (!stream.signal.aborted && published < 20000) {
    await lobby.publish('blob', blob)
    published++
    if (published % 16 === 0) await tick() // let the socket report what the kernel took
  }
  t.equal(stream.signal.aborted, true, `cut after ${published} events of 4 KiB`)
  t.ok(published * 4096 < 64 * 1024 * 1024, 'long before the unread bytes could grow without bound')
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  t.ok(logs.lines.some((line) => /slow consumer/.test(line.msg)))
  const write = stream.send('blob', 'more')
  t.equal(write, false, 'later sends report the close')
  socket.destroy()
})

t.test('live events piling up during a replay count against maxBufferedBytes', async (t) => {
  const inner = memoryBroker()
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const app = await build(t, {
    maxBufferedBytes: 10000,
    broker: {
      publish: (topic, event, data) => inner.publish(topic, event, data),
      listen: (listener) => inner.listen(listener),
      history: async (after, topics) => { await gate; return inner.history(after, topics) },
      close: () => inner.close()
    }
  })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  let stream!: SseStream
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    subscribed = stream.subscribe(lobby)
  })
  const start = await lobby.publish('blob', 'start')
  await injectSSE(app, { url: '/e', lastEventId: start })
  for (let i = 0; i < 5; i++) await lobby.publish('blob', 'y'.repeat(4000))
  t.equal(stream.signal.aborted, true, 'cut while the replay was pending')
  release()
  await subscribed
  await inner.close()
})

t.test('a push stream to a client that never reads is cut, and send() then reports false', async (t) => {
  const app = await build(t, { maxBufferedBytes: 32 * 1024 })
  let stream!: SseStream
  let opened!: () => void
  const ready = new Promise<void>((resolve) => { opened = resolve })
  app.get('/e', (request, reply) => {
    stream = reply.sse({ maxBufferedBytes: 16 * 1024 })
    opened()
  })
  const socket = await rawRequest(await listen(app), '/e')
  socket.pause()
  await ready
  const chunk = 'z'.repeat(8192)
  let sends = 0
  while (stream.send('blob', chunk) && sends < 100000) {
    sends++
    if (sends % 8 === 0) await tick()
  }
  t.equal(stream.signal.aborted, true, `cut after ${sends} sends of 8 KiB`)
  socket.destroy()
})

t.test('a drain wait settles when the client leaves mid-drain', async (t) => {
  const app = await build(t, { maxBufferedBytes: 1024 * 1024 * 256 })
  let returned!: () => void
  const stopped = new Promise<void>((resolve) => { returned = resolve })
  let waiting!: () => void
  const congested = new Promise<void>((resolve) => { waiting = resolve })
  let pulled = 0
  app.get('/e', (request, reply) => reply.sse({
    [Symbol.asyncIterator] () {
      return {
        next: async () => {
          pulled++
          if (pulled === 2000) waiting()
          return { done: false, value: { data: 'w'.repeat(4096) } }
        },
        return: async () => {
          returned()
          return { done: true, value: undefined }
        }
      }
    }
  }))
  const socket = await rawRequest(await listen(app), '/e')
  socket.pause()
  await Promise.race([congested, new Promise((resolve) => setTimeout(resolve, 1000))])
  const pulledBeforeLeaving = pulled
  socket.destroy()
  await stopped
  t.ok(pulledBeforeLeaving > 0)
  t.pass('the pump left its drain wait and stopped the source')
})

t.test('registering next to @fastify/sse fails with a coded error, in either order', async (t) => {
  const before = Fastify()
  await before.register(fastifySseOfficial)
  await t.rejects(async () => { await before.register(fastifySse) }, { code: 'FRT_ERR_SSE_CONFLICT', message: /@fastify\/sse/ })

  const after = Fastify()
  await after.register(fastifySse)
  after.register(fastifySseOfficial)
  await t.rejects(async () => { await after.ready() }, { code: 'FRT_ERR_SSE_CONFLICT', message: /@fastify\/sse/ })
  await after.close()

  const twice = Fastify()
  await twice.register(fastifySse)
  await t.rejects(async () => { await twice.register(fastifySse) }, { code: 'FRT_ERR_SSE_CONFLICT', message: /registered twice/ })
  await twice.close()
})

t.test('a borrowed broker is not closed by app.close(); the default one is', async (t) => {
  const broker = memoryBroker()
  const app = Fastify()
  await app.register(fastifySse, { broker })
  await app.close()
  await t.resolves(broker.publish('t', 'e', '1'), 'still open after the app closed')
  await broker.close()

  const owner = Fastify()
  await owner.register(fastifySse)
  const topic = owner.realtime.topic('t')
  await owner.close()
  await t.rejects(topic.publish('e', 1), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
})

t.test('1,000 open/close cycles leave nothing behind', async (t) => {
  const app = await build(t, { heartbeat: 15000 })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    stream.send('hello', 'x')
    await stream.subscribe(lobby)
  })
  const cycle = async (): Promise<void> => {
    const sse = await injectSSE(app, { url: '/e', lastEventId: '1-0' })
    await sse.next()
    await sse.close()
  }
  const gc = (globalThis as { gc?: () => void }).gc as () => void
  for (let i = 0; i < 100; i++) await cycle()
  await tick()
  gc()
  const baseline = process.memoryUsage().heapUsed
  for (let i = 0; i < 1000; i++) await cycle()
  await new Promise((resolve) => setTimeout(resolve, 20))
  gc()
  const growth = process.memoryUsage().heapUsed - baseline
  t.equal((app.realtime as any).subscriberCount('lobby'), 0, 'no subscription left')
  t.ok(growth < 2 * 1024 * 1024, `heap grew by ${Math.round(growth / 1024)} KiB over 1,000 cycles`)
})

t.test('a replay larger than the socket buffers waits for drain instead of cutting', async (t) => {
  const app = await build(t, { maxBufferedBytes: 1024 * 1024 })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => { subscribed = reply.sse().subscribe(lobby) })
  const start = await lobby.publish('blob', 'start')
  const blob = 'r'.repeat(16 * 1024)
  for (let i = 0; i < 600; i++) await lobby.publish('blob', blob) // ~9.6 MB of history
  const client = await connect(`${await listen(app)}/e`, { 'last-event-id': start })
  client.response.pause()
  await new Promise((resolve) => setTimeout(resolve, 50))
  client.response.resume()
  await client.waitFor(600)
  await subscribed
  const live = await lobby.publish('blob', 'live')
  const events = await client.waitFor(601)
  t.equal(events.at(-1)?.id, live, 'every replayed event arrived, then the live one')
  client.destroy()
})

t.test('a client that leaves during a replay\'s drain wait ends it', async (t) => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * 1024 })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  let subscribed!: Promise<void>
  let stream!: SseStream
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    subscribed = stream.subscribe(lobby)
  })
  const start = await lobby.publish('blob', 'start')
  const blob = 'l'.repeat(16 * 1024)
  for (let i = 0; i < 600; i++) await lobby.publish('blob', blob)
  const socket = await rawRequest(await listen(app), '/e', { 'last-event-id': start })
  socket.pause()
  await new Promise((resolve) => setTimeout(resolve, 50))
  socket.destroy()
  await within(subscribed, 2000, 'subscribe()')
  await stream.closed
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
})
