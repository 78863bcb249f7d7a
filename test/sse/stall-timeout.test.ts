// stallTimeout: a stream whose socket holds unsent bytes and sends none of them for that long is
// closed as a slow consumer, push, iterable and replay streams alike, well before maxBufferedBytes;
// a reader that reads slowly but steadily is never cut. Real sockets: a TCP client that stops
// reading (paused, so the kernel's buffers fill and the server's socket keeps what they cannot take).
import diagnostics from 'node:diagnostics_channel'
import http2 from 'node:http2'
import { once } from 'node:events'
import type net from 'node:net'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { DiagnosticsChannel, defineContract, fastifySse, type ConsumerSlowEvent, type SseStream } from '../../lib/index.js'
import { build, captureLogs, deferred, listen, rawRequest, tick } from '../helpers/index.js'

const feed = defineContract({ events: { blob: Type.String() } })
// Far above anything these tests write: only the stall bound can close their streams.
const MAX_BUFFERED = 256 * 1024 * 1024
const STALL = 200
// For the steady readers: once a client reads again, the kernel takes more of a stream's bytes only
// when a third of its send buffer is free (Linux; loopback buffers grow to megabytes), so a reader
// must consume that much within the timeout.
const STEADY_STALL = 500

/**
 * A push stream to a TCP client that reads nothing, written `blob` by `blob` until the server's
 * socket keeps 64 KiB it cannot send.
 */
async function congestedPushStream (t: Test, stallTimeout: number, blob: string) {
  const logs = captureLogs()
  const app = await build(t, { stallTimeout, maxBufferedBytes: MAX_BUFFERED }, { logger: { stream: logs.stream } })
  const opened = deferred<{ stream: SseStream, socket: net.Socket }>()
  app.get('/e', (request, reply) => {
    opened.resolve({ stream: reply.sse({ contract: feed }), socket: request.raw.socket })
    return reply
  })
  const client = await rawRequest(await listen(app), '/e')
  client.pause()
  t.teardown(() => client.destroy())
  const { stream, socket } = await opened.promise
  for (let i = 0; i < 10000 && socket.writableLength < 64 * 1024; i++) {
    stream.send('blob', blob)
    await tick()
  }
  return { logs, app, stream, socket, client }
}

/** True once the log holds the stall cut (and no byte-bound cut). */
function cutByStall (lines: Array<Record<string, any>>): boolean {
  return lines.some((line) => line.stallTimeout === STALL && /has not read/.test(line.msg)) &&
    !lines.some((line) => line.maxBufferedBytes !== undefined)
}

t.test('a push stream whose client stopped reading is closed after stallTimeout, far under maxBufferedBytes', async (t) => {
  // Write until the socket keeps bytes it cannot send, then write nothing more.
  const { logs, app, stream, socket } = await congestedPushStream(t, STALL, 'p'.repeat(16 * 1024))
  const unsent = socket.writableLength
  t.ok(unsent >= 64 * 1024, `the server's socket holds ${unsent} unsent bytes`)
  const reported: ConsumerSlowEvent[] = []
  const onSlow = (event: unknown): void => { reported.push(event as ConsumerSlowEvent) }
  diagnostics.subscribe(DiagnosticsChannel.ConsumerSlow, onSlow)
  t.teardown(() => diagnostics.unsubscribe(DiagnosticsChannel.ConsumerSlow, onSlow))
  await stream.closed
  t.ok(cutByStall(logs.lines), 'closed as a stalled slow consumer, not by its unsent bytes')
  t.equal(stream.send('blob', 'more'), false, 'later sends report the close')
  t.equal(reported.length, 1, 'reported once on the consumer:slow channel')
  t.equal(reported[0]?.stallTimeout, STALL, 'with the stall timeout that closed it')
  t.ok((reported[0]?.bufferedBytes ?? 0) < MAX_BUFFERED, 'far under maxBufferedBytes')
  t.equal(app.realtime.stats().totals.slowConsumers, 1, 'counted as a slow consumer')
})

t.test('an iterable source whose client stopped reading is closed after stallTimeout, and its return() runs', async (t) => {
  const logs = captureLogs()
  const app = await build(t, { stallTimeout: STALL, maxBufferedBytes: MAX_BUFFERED }, { logger: { stream: logs.stream } })
  const returned = deferred()
  let pulled = 0
  app.get('/e', (request, reply) => reply.sse((async function * () {
    try {
      while (true) {
        pulled++
        yield { data: 'i'.repeat(64 * 1024) }
      }
    } finally {
      returned.resolve()
    }
  })()))
  const client = await rawRequest(await listen(app), '/e')
  client.pause()
  t.teardown(() => client.destroy())
  await returned.promise
  t.ok(cutByStall(logs.lines), `closed as a stalled slow consumer after ${pulled} items, not by its unsent bytes`)
  const before = pulled
  await new Promise((resolve) => setTimeout(resolve, 2 * STALL))
  t.equal(pulled, before, 'nothing is pulled after the close')
})

t.test('a replay whose client stopped reading is closed after stallTimeout, and subscribe() resolves', async (t) => {
  const logs = captureLogs()
  const app = await build(t, { stallTimeout: STALL, maxBufferedBytes: MAX_BUFFERED }, { logger: { stream: logs.stream } })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const opened = deferred<{ stream: SseStream, subscribed: Promise<void> }>()
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    opened.resolve({ stream, subscribed: stream.subscribe(lobby) })
    return reply
  })
  const start = await lobby.publish('blob', 'start')
  const blob = 'r'.repeat(16 * 1024)
  for (let i = 0; i < 600; i++) await lobby.publish('blob', blob) // ~9.6 MB of history
  const client = await rawRequest(await listen(app), '/e', { 'last-event-id': start })
  client.pause()
  t.teardown(() => client.destroy())
  const { stream, subscribed } = await opened.promise
  await subscribed
  await stream.closed
  t.ok(cutByStall(logs.lines), 'closed as a stalled slow consumer in the middle of the replay')
  t.equal((app.realtime as any).subscriberCount('lobby'), 0, 'no subscription left')
})

t.test('an HTTP/2 stream whose client stopped reading is closed after stallTimeout', async (t) => {
  const logs = captureLogs()
  const app = Fastify({ http2: true, logger: { stream: logs.stream } })
  await app.register(fastifySse, { heartbeat: 0, stallTimeout: STALL, maxBufferedBytes: MAX_BUFFERED })
  t.teardown(() => app.close())
  const opened = deferred<SseStream>()
  app.get('/e', (request, reply) => {
    opened.resolve(reply.sse({ contract: feed }))
    return reply
  })
  const session = http2.connect(await listen(app))
  t.teardown(() => session.destroy())
  const request = session.request({ ':path': '/e' })
  await once(request, 'response')
  request.pause() // HTTP/2 flow control: the server may send a window's worth, then its stream buffers
  const stream = await opened.promise
  const blob = 'h'.repeat(16 * 1024)
  for (let i = 0; i < 10000 && stream.send('blob', blob) && !stream.signal.aborted; i++) {
    if (i % 4 === 0) await tick()
  }
  await stream.closed
  t.ok(cutByStall(logs.lines), 'closed as a stalled slow consumer, not by its unsent bytes')
})

/**
 * Reads one chunk from `client` every `everyMs`, for as long as the test runs: slowly, but steadily.
 * @returns the bytes read so far
 */
function readSteadily (t: Test, client: net.Socket, everyMs: number): { bytes: number } {
  const read = { bytes: 0 }
  client.on('data', (chunk: Buffer) => {
    read.bytes += chunk.length
    client.pause()
  })
  const reader = setInterval(() => client.resume(), everyMs)
  t.teardown(() => clearInterval(reader))
  return read
}

t.test('a push stream read slowly but steadily is never cut, congested for many times stallTimeout', async (t) => {
  // Fill the kernel's buffers until the server's socket keeps bytes (the client reads nothing yet).
  const blob = 's'.repeat(8 * 1024)
  const { logs, stream, socket, client } = await congestedPushStream(t, STEADY_STALL, blob)
  const read = readSteadily(t, client, 5)
  // For six stall timeouts the server keeps the socket congested (over its high-water mark), so
  // the stall watch runs throughout.
  const until = Date.now() + 6 * STEADY_STALL
  let congestedChecks = 0
  while (Date.now() < until && !stream.signal.aborted) {
    while (socket.writableLength < 64 * 1024 && stream.send('blob', blob));
    if (socket.writableNeedDrain) congestedChecks++
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  t.ok(congestedChecks > 0, 'the socket stayed congested')
  t.ok(read.bytes > 0, `the client read ${read.bytes} bytes`)
  t.equal(stream.signal.aborted, false, 'the stream is still open')
  t.notOk(logs.lines.some((line) => /slow consumer/.test(line.msg)), 'nothing was cut')
  stream.close()
})

t.test('an iterable source read slowly but steadily is never cut, and ends with its last item', async (t) => {
  const logs = captureLogs()
  const app = await build(t, { stallTimeout: STEADY_STALL, maxBufferedBytes: MAX_BUFFERED }, { logger: { stream: logs.stream } })
  const ITEMS = 1500
  const ITEM = 16 * 1024
  const opened = deferred<net.Socket>()
  app.get('/e', (request, reply) => {
    opened.resolve(request.raw.socket)
    return reply.sse((async function * () {
      for (let i = 0; i < ITEMS; i++) yield { data: String(i % 10).repeat(ITEM) }
    })())
  })
  const client = await rawRequest(await listen(app), '/e')
  client.pause()
  t.teardown(() => client.destroy())
  const socket = await opened.promise
  // How often the server's socket is seen congested: the source then waits for 'drain', watched.
  let congested = 0
  const sampler = setInterval(() => { if (socket.writableNeedDrain) congested++ }, 2)
  t.teardown(() => clearInterval(sampler))
  // The kernel's buffers fill first (well within one stall timeout), then the client reads one
  // chunk every 5 ms: 24 MB at that pace take several stall timeouts, with the source waiting on
  // the client all along.
  await new Promise((resolve) => setTimeout(resolve, STEADY_STALL / 5))
  // The stream ends with the source: the response's last chunk (RFC 9112 section 7.1) arrives.
  const ended = deferred()
  let tail = ''
  client.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString('latin1')).slice(-16)
    if (tail.endsWith('\r\n0\r\n\r\n')) ended.resolve()
  })
  readSteadily(t, client, 5)
  await ended.promise
  t.ok(congested > 0, `the source waited on the client (congested at ${congested} samples)`)
  t.notOk(logs.lines.some((line) => /slow consumer/.test(line.msg)), 'nothing was cut')
})

t.test('streams with the same stallTimeout share one timer, which runs only while one of them is congested', async (t) => {
  const app = await build(t, { stallTimeout: 8000, maxBufferedBytes: MAX_BUFFERED })
  const streams: Array<{ stream: SseStream, socket: net.Socket }> = []
  app.get('/e', (request, reply) => {
    streams.push({ stream: reply.sse({ contract: feed }), socket: request.raw.socket })
    return reply
  })
  const base = await listen(app)
  // The stall timers (8000 / 8 ms) alive at any moment.
  const live = new Set<NodeJS.Timeout>()
  let made = 0
  const { setInterval: realSet, clearInterval: realClear } = globalThis
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    const timer = realSet(fn, ms)
    if (ms === 1000) {
      made++
      live.add(timer)
    }
    return timer
  }) as typeof setInterval
  globalThis.clearInterval = ((timer: NodeJS.Timeout) => { live.delete(timer); realClear(timer) }) as typeof clearInterval
  t.teardown(() => { globalThis.setInterval = realSet; globalThis.clearInterval = realClear })
  const clients = await Promise.all([rawRequest(base, '/e'), rawRequest(base, '/e'), rawRequest(base, '/e')])
  for (const client of clients) client.pause()
  t.teardown(() => { for (const client of clients) client.destroy() })
  while (streams.length < clients.length) await tick()
  t.equal(made, 0, 'no timer while no stream is congested')
  // Write to each stream until all three are congested at once (one may drain while another fills).
  const blob = 'w'.repeat(16 * 1024)
  for (let i = 0; i < 10000 && !streams.every(({ socket }) => socket.writableNeedDrain); i++) {
    for (const { stream, socket } of streams) if (!socket.writableNeedDrain) stream.send('blob', blob)
    await tick()
  }
  t.ok(streams.every(({ socket }) => socket.writableNeedDrain), 'all three are congested')
  t.equal(live.size, 1, `one timer for the three, checking 8 times per timeout (${made} made in all)`)
  for (const client of clients) client.destroy()
  await Promise.all(streams.map(({ stream }) => stream.closed))
  t.equal(live.size, 0, 'released with the last congested stream')
})

t.test('stallTimeout must be a positive integer, in the plugin and in reply.sse()', async (t) => {
  for (const stallTimeout of [0, -1, 1.5, '30000', null, Number.NaN]) {
    await t.rejects(build(t, { stallTimeout: stallTimeout as any }), { code: 'FRT_ERR_INVALID_OPTION' }, `plugin: ${String(stallTimeout)}`)
  }
  const app = await build(t)
  app.get('/e', (request, reply) => {
    reply.sse({ stallTimeout: 0 })
  })
  const response = await app.inject({ url: '/e' })
  t.equal(response.statusCode, 500)
  t.equal(response.json().code, 'FRT_ERR_INVALID_OPTION')
})
