import http2 from 'node:http2'
import { once } from 'node:events'
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, type SseStream } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build, captureLogs, connect, listen, tick } from '../helpers/index.js'

const chat = defineContract({
  events: {
    message: Type.Object({ user: Type.String(), text: Type.String() }),
    note: Type.String()
  }
})

t.test('headers are committed at once, before any event', async (t) => {
  const app = await build(t)
  let stream!: SseStream<typeof chat>
  app.get('/e', (request, reply) => { stream = reply.sse({ contract: chat }) })
  const url = await listen(app)
  const client = await connect(`${url}/e`)
  t.equal(client.response.statusCode, 200)
  t.equal(client.response.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(client.response.headers['cache-control'], 'no-cache, no-transform')
  t.equal(client.response.headers['x-accel-buffering'], 'no')
  t.equal(client.response.headers.connection, 'keep-alive')
  t.equal(client.events.length, 0, 'the response arrived with no event sent')
  stream.send('note', 'hi')
  t.same((await client.waitFor(1))[0], { event: 'note', data: '"hi"', id: undefined })
  client.destroy()
  await stream.closed
})

t.test('headers set with reply.header() before reply.sse() are kept', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => {
    reply.header('access-control-allow-origin', 'https://app.example')
    reply.header('access-control-allow-credentials', 'true')
    reply.header('content-length', '10')
    reply.header('content-type', 'application/json')
    reply.code(201)
    reply.sse().close()
  })
  const response = await app.inject({ url: '/e' })
  t.equal(response.statusCode, 200, 'an EventSource accepts 200 only')
  t.equal(response.headers['access-control-allow-origin'], 'https://app.example')
  t.equal(response.headers['access-control-allow-credentials'], 'true')
  t.equal(response.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.notOk('content-length' in response.headers)
})

t.test('a contract types, validates and JSON-encodes every event', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => {
    const stream = reply.sse({ contract: chat })
    t.equal(stream.send('message', { user: 'ann', text: 'hi\nthere' }), true)
    t.equal(stream.send('note', 'a string event'), true)
    t.throws(() => stream.send('message', { user: 'ann' } as any), { code: 'FRT_ERR_VALIDATION', details: [{ path: '/text' }] })
    t.throws(() => (stream.send as any)('nope', {}), { code: 'FRT_ERR_UNKNOWN_EVENT' })
    stream.close()
  })
  const sse = await injectSSE(app, { url: '/e' })
  t.same(await sse.next(), { event: 'message', data: '{"user":"ann","text":"hi\\nthere"}', id: undefined })
  t.same(await sse.next(), { event: 'note', data: '"a string event"', id: undefined })
  await t.rejects(sse.next(), { code: 'FRT_ERR_TESTING' }, 'nothing invalid went out')
})

t.test('without a contract strings go out as they are and other data as JSON', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    stream.send('text', 'line 1\r\nline 2\rline 3\nline 4')
    stream.send('json', { n: 1 })
    stream.send('ids', 'x', { id: '0' })
    stream.send('ids', 'y', { id: '' })
    stream.send('retry', 'z', { retry: 0 })
    t.throws(() => stream.send('bad\nevent', 'x'), { code: 'FRT_ERR_SSE_INVALID_FIELD' })
    t.throws(() => stream.send('e', 'x', { id: 'a\0b' }), { code: 'FRT_ERR_SSE_INVALID_FIELD' })
    t.throws(() => stream.send('e', 'x', { retry: -1 }), { code: 'FRT_ERR_INVALID_OPTION' })
    t.throws(() => stream.send('e', 10n), { code: 'FRT_ERR_SERIALIZE' })
    t.equal(stream.comment('a comment\ndata: forged'), true)
    stream.close()
  })
  const sse = await injectSSE(app, { url: '/e' })
  const events = []
  for await (const event of sse.events()) events.push(event)
  t.same(events, [
    { event: 'text', data: 'line 1\nline 2\nline 3\nline 4', id: undefined },
    { event: 'json', data: '{"n":1}', id: undefined },
    { event: 'ids', data: 'x', id: '0' },
    { event: 'ids', data: 'y', id: '' },
    { event: 'retry', data: 'z', id: undefined }
  ], 'the comment forged nothing')
  t.equal(sse.retry, 0)
})

t.test('send, comment and close after close return false and never throw', async (t) => {
  const app = await build(t)
  let stream!: SseStream<typeof chat>
  app.get('/e', (request, reply) => {
    stream = reply.sse({ contract: chat })
    stream.close()
  })
  const sse = await injectSSE(app, { url: '/e' })
  await sse.ended
  t.equal(stream.send('message', { user: 'a', text: 'b' }), false)
  t.equal(stream.send('message', { invalid: true } as any), false, 'not even invalid data throws once closed')
  t.equal(stream.comment('x'), false)
  t.doesNotThrow(() => stream.close())
  t.equal(stream.signal.aborted, true, 'a signal read after the end is aborted')
  await stream.closed
  await t.resolves(stream.subscribe(app.realtime.topic('t')))
})

t.test('signal and closed settle when the client leaves', async (t) => {
  const app = await build(t)
  let stream!: SseStream
  app.get('/e', (request, reply) => { stream = reply.sse() })
  const sse = await injectSSE(app, { url: '/e' })
  const { signal } = stream
  t.equal(signal.aborted, false)
  await sse.close()
  await stream.closed
  t.equal(signal.aborted, true)
  t.equal(stream.send('x', 'y'), false)
})

t.test('a real client that disconnects ends the stream', async (t) => {
  const app = await build(t)
  let stream!: SseStream
  app.get('/e', (request, reply) => { stream = reply.sse() })
  const client = await connect(`${await listen(app)}/e`)
  client.destroy()
  await stream.closed
  t.equal(stream.signal.aborted, true)
})

t.test('a POST stream is not ended when the request body has been read', async (t) => {
  // Node emits 'close' on the request once its body is consumed: that is not the client leaving.
  const app = await build(t)
  let stream!: SseStream
  app.post('/e', (request, reply) => {
    stream = reply.sse()
    setTimeout(() => { stream.send('echo', request.body as object); stream.close() }, 50)
  })
  const url = await listen(app)
  const response = await fetch(`${url}/e`, { method: 'POST', body: '{"q":"x"}', headers: { 'content-type': 'application/json' } })
  t.equal(await response.text(), 'event: echo\ndata: {"q":"x"}\n\n')
})

t.test('lastEventId comes from the header, else ?lastEventId=, and is dropped past 256 chars', async (t) => {
  const app = await build(t)
  const seen: Array<string | undefined> = []
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    seen.push(stream.lastEventId)
    stream.close()
  })
  await (await injectSSE(app, { url: '/e', lastEventId: '5-0' })).ended
  await (await injectSSE(app, { url: '/e?lastEventId=6-1' })).ended
  await (await injectSSE(app, { url: '/e', lastEventId: 'x'.repeat(257) })).ended
  await (await injectSSE(app, { url: '/e', lastEventId: 'x'.repeat(256) })).ended
  await (await injectSSE(app, { url: '/e' })).ended
  t.same(seen, ['5-0', '6-1', undefined, 'x'.repeat(256), undefined])
})

t.test('retry is sent first, from the route or the plugin', async (t) => {
  const app = await build(t, { retry: 2000 })
  app.get('/plugin', (request, reply) => { reply.sse().close() })
  app.get('/route', (request, reply) => { reply.sse({ retry: 0 }).close() })
  const plugin = await app.inject({ url: '/plugin' })
  t.equal(plugin.body, 'retry: 2000\n\n')
  const route = await app.inject({ url: '/route' })
  t.equal(route.body, 'retry: 0\n\n')
})

t.test('options are checked', async (t) => {
  for (const options of [{ heartbeat: -1 }, { retry: 1.5 }, { maxBufferedBytes: 0 }, { broker: {} as any }]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifySse, options) }, { code: 'FRT_ERR_INVALID_OPTION' }, JSON.stringify(options))
  }

  const ok = await build(t)
  const errors: unknown[] = []
  ok.get('/e', (request, reply) => {
    const tries = [
      () => (reply.sse as any)('nope'),
      () => reply.sse({ retry: -5 }),
      () => reply.sse({ heartbeat: 1.5 }),
      () => reply.sse({ maxBufferedBytes: -1 }),
      () => reply.sse({ contract: { events: {} } as any })
    ]
    for (const attempt of tries) {
      try { attempt() } catch (err) { errors.push((err as { code: string }).code) }
    }
    reply.send('fine')
  })
  t.equal((await ok.inject({ url: '/e' })).body, 'fine')
  t.same(errors, Array(5).fill('FRT_ERR_INVALID_OPTION'))
})

t.test('reply.sse() twice, or after a send, is refused', async (t) => {
  const app = await build(t)
  const codes: string[] = []
  app.get('/twice', (request, reply) => {
    const stream = reply.sse()
    try { reply.sse() } catch (err) { codes.push((err as { code: string }).code) }
    stream.close()
  })
  app.get('/sent', async (request, reply) => {
    await reply.send('done')
    try { reply.sse() } catch (err) { codes.push((err as { code: string }).code) }
  })
  await app.inject({ url: '/twice' })
  await app.inject({ url: '/sent' })
  t.same(codes, ['FRT_ERR_SSE_ALREADY_SENT', 'FRT_ERR_SSE_ALREADY_SENT'])
})

t.test('heartbeat comments keep the stream alive, and can be turned off per stream', async (t) => {
  const app = await build(t, { heartbeat: 10 })
  app.get('/beat', (request, reply) => { reply.sse() })
  app.get('/quiet', (request, reply) => { reply.sse({ heartbeat: false }) })
  const url = await listen(app)
  const beat = await connect(`${url}/beat`)
  await once(beat.response, 'data')
  t.match(beat.raw, /^:\n\n/, 'a comment, not an event')
  const quiet = await connect(`${url}/quiet`)
  await once(beat.response, 'data')
  await once(beat.response, 'data')
  t.equal(quiet.raw, '', 'no heartbeat on a stream that turned it off')
  t.equal(beat.events.length, 0)
  beat.destroy()
  quiet.destroy()
  await Promise.all([beat.ended, quiet.ended])
})

t.test('streams of one interval share one heartbeat timer, released with the last stream', async (t) => {
  const app = await build(t, { heartbeat: 60000 })
  const streams: SseStream[] = []
  app.get('/e', (request, reply) => { streams.push(reply.sse()) })
  app.get('/other', (request, reply) => { streams.push(reply.sse({ heartbeat: 30000 })) })
  const intervals: number[] = []
  let cleared = 0
  const { setInterval: realSet, clearInterval: realClear } = globalThis
  globalThis.setInterval = ((fn: () => void, ms: number) => { intervals.push(ms); return realSet(fn, ms) }) as typeof setInterval
  globalThis.clearInterval = ((timer: NodeJS.Timeout) => { cleared++; realClear(timer) }) as typeof clearInterval
  t.teardown(() => { globalThis.setInterval = realSet; globalThis.clearInterval = realClear })
  const clients = await Promise.all([injectSSE(app, { url: '/e' }), injectSSE(app, { url: '/e' }), injectSSE(app, { url: '/other' })])
  t.same(intervals.sort(), [30000, 60000], 'one timer per interval, not per stream')
  await clients[0]!.close()
  await streams[0]!.closed
  t.equal(cleared, 0, 'kept while a stream uses it')
  await clients[1]!.close()
  await clients[2]!.close()
  await Promise.all(streams.map((stream) => stream.closed))
  t.equal(cleared, 2, 'released with the last stream of each interval')
})

t.test('works on HTTP/2, without a connection header', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(fastifySse, { heartbeat: 0 })
  t.teardown(() => app.close())
  let stream!: SseStream
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    stream.send('hello', 'h2')
  })
  const url = await listen(app)
  const session = http2.connect(url)
  t.teardown(() => session.close())
  const request = session.request({ ':path': '/e' })
  const [headers] = await once(request, 'response') as [http2.IncomingHttpHeaders]
  t.equal(headers[':status'], 200)
  t.equal(headers['content-type'], 'text/event-stream; charset=utf-8')
  t.notOk('connection' in headers)
  request.setEncoding('utf8')
  const [chunk] = await once(request, 'data')
  t.equal(chunk, 'event: hello\ndata: h2\n\n')
  request.close()
  await stream.closed
  t.pass('the stream ended when the client closed its HTTP/2 stream')
})

t.test('an error on the response ends the stream', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  let stream!: SseStream
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    setImmediate(() => reply.raw.emit('error', new Error('boom')))
  })
  await injectSSE(app, { url: '/e' })
  await stream.closed
  t.equal(stream.signal.aborted, true)
  await tick()
})
