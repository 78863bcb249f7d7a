// The fan-out write path: each topic event is framed once (an HTTP/1.1 chunk for SSE, a whole
// WebSocket frame for WS) and that buffer goes to every socket, batched per tick. Checked with
// clients this project did not write (eventsource-parser, ws), at every frame-length boundary.
import net from 'node:net'
import { once } from 'node:events'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import WebSocket from 'ws'
import { defineContract } from '../../lib/index.js'
import { chunk, chunkBody } from '../../lib/sse/chunk.js'
import { framePayload, textFrame } from '../../lib/ws/frame.js'
import { build, connect, listen } from '../helpers/index.js'
import { buildWs, until, within } from '../helpers/ws.js'

const feed = defineContract({ events: { blob: Type.Object({ n: Type.Integer(), text: Type.String() }) } })

// Payload sizes around the 7-bit, 16-bit and 64-bit WebSocket length forms, and a multi-byte text.
const SIZES = [0, 60, 125, 126, 127, 65535, 65536, 70000]
const texts = [...SIZES.map((size) => 'x'.repeat(size)), 'é€😀\u2028'.repeat(40)]

t.test('textFrame builds RFC 6455 server frames at every length form, and framePayload reads them back', async (t) => {
  for (const size of [0, 125, 126, 65535, 65536, 70000]) {
    const payload = 'a'.repeat(size)
    const frame = textFrame(payload)
    t.equal(frame[0], 0x81, `${size}: FIN and the text opcode`)
    const length = (frame[1] as number) & 0x7f
    t.equal(length, size < 126 ? size : size < 65536 ? 126 : 127, `${size}: the length form`)
    t.equal(framePayload(frame).toString(), payload, `${size}: the payload`)
  }
  t.equal(framePayload(textFrame('é€😀')).toString(), 'é€😀', 'multi-byte text is measured in bytes')
})

t.test('chunk builds one HTTP/1.1 chunk, and chunkBody reads the frame back', async (t) => {
  for (const text of ['', 'data: a\n\n', 'data: é€😀\n\n', 'x'.repeat(70000)]) {
    const buffer = chunk(text)
    const size = Buffer.byteLength(text)
    t.equal(buffer.toString('latin1', 0, buffer.indexOf(10) + 1), `${size.toString(16)}\r\n`, 'the size line')
    t.equal(buffer.toString('latin1', buffer.length - 2), '\r\n', 'the chunk ends with CRLF')
    t.equal(chunkBody(buffer).toString(), text, 'the frame inside')
  }
})

t.test('WebSocket: every frame length form reaches ws clients intact, with and without permessage-deflate', async (t) => {
  for (const perMessageDeflate of [false, true]) {
    const app = await buildWs(t, { perMessageDeflate, maxBufferedBytes: 8 * 1024 * 1024 })
    const topic = app.realtime.topic('feed', { contract: feed })
    const subscribed: Promise<void>[] = []
    app.ws('/feed', { authenticate: false, onOpen (conn) { subscribed.push(conn.subscribe(topic)) }, handlers: {} })
    const url = (await listen(app)).replace('http', 'ws')
    const clients = await Promise.all(Array.from({ length: 3 }, async () => {
      const ws = new WebSocket(`${url}/feed`, { perMessageDeflate })
      const received: any[] = []
      ws.on('message', (data) => received.push(JSON.parse(String(data))))
      await once(ws, 'open')
      t.equal(ws.extensions, perMessageDeflate ? 'permessage-deflate' : '', 'the extension negotiated as asked')
      return { ws, received }
    }))
    await within(Promise.all(subscribed), 2000, 'subscriptions')
    // Published in one tick: the frames of several events leave together.
    const ids = await Promise.all(texts.map((text, n) => topic.publish('blob', { n, text })))
    for (const { ws, received } of clients) {
      await until(() => received.length >= texts.length, 5000, 'every event')
      t.same(received.map((frame) => frame.data.text), texts, `deflate ${String(perMessageDeflate)}: every payload intact and in order`)
      t.same(received.map((frame) => frame.id), ids, 'with its id')
      ws.close()
    }
  }
})

t.test('SSE: HTTP/1.1 streams get the shared chunks; every size arrives intact to eventsource-parser', async (t) => {
  const app = await build(t)
  const topic = app.realtime.topic('feed', { contract: feed })
  app.get('/e', async (request, reply) => { await reply.sse().subscribe(topic) })
  const url = await listen(app)
  const clients = await Promise.all(Array.from({ length: 3 }, () => connect(`${url}/e`)))
  t.equal(clients[0]?.response.headers['transfer-encoding'], 'chunked')
  await Promise.all(texts.map((text, n) => topic.publish('blob', { n, text })))
  for (const client of clients) {
    const events = await within(client.waitFor(texts.length), 5000, 'every event')
    t.same(events.map((event) => JSON.parse(event.data).text), texts, 'every payload intact and in order')
    client.destroy()
  }
})

/** Sends a raw HTTP request and collects what comes back until `expected` appears. */
async function rawExchange (url: string, request: string, expected: string): Promise<{ socket: net.Socket, text: () => string }> {
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('data', (data: string) => { received += data })
  socket.write(request)
  await until(() => received.includes(expected), 3000, expected)
  return { socket, text: () => received }
}

t.test('SSE over HTTP/1.0 (no chunked encoding) writes plain frames', async (t) => {
  const app = await build(t)
  const topic = app.realtime.topic('feed', { contract: feed })
  const subscribed: Promise<void>[] = []
  app.get('/e', (request, reply) => { subscribed.push(reply.sse().subscribe(topic)) })
  const url = await listen(app)
  const { socket, text } = await rawExchange(url, 'GET /e HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n', '\r\n\r\n')
  await Promise.all(subscribed)
  await topic.publish('blob', { n: 1, text: 'plain' })
  await until(() => text().includes('plain'), 3000, 'the event')
  const body = text().slice(text().indexOf('\r\n\r\n') + 4)
  t.notMatch(text(), /transfer-encoding: chunked/i)
  t.match(body, /^id: 0-0\nevent: realtime.position\ndata: \{\}\n\nid: \d+-\d+\nevent: blob\ndata: \{"n":1,"text":"plain"\}\n\n$/, 'the frames with no chunk size around them')
  socket.destroy()
})

t.test('SSE pipelined behind another request on the same connection writes through the response, in order', async (t) => {
  const app = await build(t)
  const topic = app.realtime.topic('feed', { contract: feed })
  const subscribed: Promise<void>[] = []
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  app.get('/slow', async () => { await held; return 'first' })
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    subscribed.push(stream.subscribe(topic))
  })
  const url = await listen(app)
  const { socket, text } = await rawExchange(url,
    'GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n', '')
  await until(() => subscribed.length > 0, 3000, 'the stream opens')
  await Promise.all(subscribed)
  await topic.publish('blob', { n: 1, text: 'behind' })
  release()
  await until(() => text().includes('behind'), 3000, 'the event')
  const received = text()
  t.ok(received.indexOf('first') < received.indexOf('text/event-stream'), 'the first response comes first')
  t.match(received, /event: blob\r?\ndata: \{"n":1,"text":"behind"\}/, 'then the event, intact')
  socket.destroy()
})

t.test('a burst larger than the cork limit in one tick reaches a reading client whole', async (t) => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 * 1024 })
  const topic = app.realtime.topic('feed', { contract: feed })
  app.get('/e', async (request, reply) => { await reply.sse().subscribe(topic) })
  const url = await listen(app)
  const client = await connect(`${url}/e`)
  const big = 'y'.repeat(20000)
  const count = 50 // 1 MB in one tick
  await Promise.all(Array.from({ length: count }, (_, n) => topic.publish('blob', { n, text: big })))
  const events = await within(client.waitFor(count), 10000, 'the burst')
  t.same(events.map((event) => JSON.parse(event.data).n), Array.from({ length: count }, (_, n) => n))
  client.destroy()
})

t.test('a client that vanishes while its socket is corked costs nothing', async (t) => {
  const app = await build(t)
  const topic = app.realtime.topic('feed', { contract: feed })
  const streams: any[] = []
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    await stream.subscribe(topic)
  })
  const url = await listen(app)
  const gone = await connect(`${url}/e`)
  const other = await connect(`${url}/e`)
  t.equal(streams.length, 2)
  // Written (corked for the tick), then the socket is destroyed before the batch leaves.
  const published = topic.publish('blob', { n: 1, text: 'lost' })
  ;(streams[0] as { socket: net.Socket }).socket.destroy()
  await published
  await within(streams[0].closed, 2000, 'the stream ends')
  await within(gone.ended, 2000, 'the client sees the end')
  t.equal((await within(other.waitFor(1), 2000, 'the other client'))[0]?.data, '{"n":1,"text":"lost"}', 'the other client is served')
  other.destroy()
})

t.test('one stream subscribed to three topics in three calls gets all three, and frees all three when it ends', async (t) => {
  const app = await build(t)
  const topics = ['a', 'b', 'c'].map((name) => app.realtime.topic(name, { contract: feed }))
  const streams: any[] = []
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    for (const topic of topics) await stream.subscribe(topic)
  })
  const url = await listen(app)
  const client = await connect(`${url}/e`)
  await until(() => (app.realtime as any).subscriberCount('c') > 0, 2000, 'subscribed')
  for (const [n, topic] of topics.entries()) await topic.publish('blob', { n, text: topic.name })
  const events = await within(client.waitFor(3), 2000, 'three events')
  t.same(events.map((event) => JSON.parse(event.data).text), ['a', 'b', 'c'])
  streams[0].close()
  await within(client.ended, 2000, 'the end')
  t.same(['a', 'b', 'c'].map((name) => (app.realtime as any).subscriberCount(name)), [0, 0, 0], 'every subscription freed')
})

t.test('a frame written after the stream ended is dropped', async (t) => {
  const app = await build(t)
  let stream: any
  app.get('/e', (request, reply) => { stream = reply.sse() })
  const url = await listen(app)
  const client = await connect(`${url}/e`)
  stream.close()
  t.equal(stream.write(chunk('data: late\n\n')), false)
  await within(client.ended, 2000, 'the end')
  t.equal(client.events.length, 0)
})

t.test('a stream written through the response (HTTP/1.0) is cut at maxBufferedBytes when its client does not read', async (t) => {
  const app = await build(t, { maxBufferedBytes: 256 * 1024 })
  const topic = app.realtime.topic('feed', { contract: feed })
  const streams: any[] = []
  const subscribed: Promise<void>[] = []
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    subscribed.push(stream.subscribe(topic))
  })
  const url = await listen(app)
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  socket.write('GET /e HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n')
  await once(socket, 'data')
  socket.pause()
  await until(() => subscribed.length > 0, 2000, 'the stream opens')
  await Promise.all(subscribed)
  t.equal(streams[0].socket, undefined, 'no chunked encoding: frames go through res.write()')
  const text = 'z'.repeat(16 * 1024)
  for (let n = 0; n < 2000 && !streams[0].signal.aborted; n++) {
    await topic.publish('blob', { n, text })
    if (n % 16 === 15) await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(streams[0].signal.aborted, 'cut as a slow consumer')
  t.equal((app.realtime as any).subscriberCount('feed'), 0)
  socket.destroy()
})
