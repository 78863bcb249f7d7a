// The slow-consumer bound counts unsent bytes: a client that reads steadily, slower than the server
// writes, while the server keeps the response's unsent bytes far under maxBufferedBytes, stays
// connected however many bytes go through.
import type net from 'node:net'
import t from 'tap'
import type { SseStream } from '../../lib/index.js'
import { build, deferred, listen, rawRequest, tick } from '../helpers/index.js'

const MAX = 512 * 1024
const FRAME = 'x'.repeat(8 * 1024)

t.test('a stream is not cut while its unsent bytes stay under maxBufferedBytes, however many pass through', async (t) => {
  const app = await build(t)
  const opened = deferred<{ stream: SseStream, socket: net.Socket }>()
  app.get('/steady', (request, reply) => {
    opened.resolve({ stream: reply.sse({ maxBufferedBytes: MAX }), socket: request.raw.socket })
    return reply
  })
  const base = await listen(app)
  const client = await rawRequest(base, '/steady')
  client.pause()
  t.teardown(() => client.destroy())
  const { stream, socket } = await opened.promise

  // Fill the kernel's buffers until the response's own buffer holds bytes (the client reads nothing yet).
  for (let i = 0; i < 10000 && socket.writableLength === 0; i++) {
    for (let j = 0; j < 16; j++) stream.send('message', FRAME)
    await tick()
  }
  t.ok(socket.writableLength > 0, 'the response buffers bytes the socket could not take')

  // The client reads one chunk every 2 ms; the server keeps about 128 KiB unsent.
  const reader = setInterval(() => {
    client.once('data', () => client.pause())
    client.resume()
  }, 2)
  t.teardown(() => clearInterval(reader))
  let written = 0
  let most = 0
  for (let round = 0; round < 20000 && written < 3 * MAX && !stream.signal.aborted; round++) {
    while (socket.writableLength < 128 * 1024 && stream.send('message', FRAME)) written += FRAME.length
    most = Math.max(most, socket.writableLength)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  t.ok(most < MAX, `the unsent bytes stayed under maxBufferedBytes (at most ${most})`)
  t.equal(stream.signal.aborted, false, `the stream is still open after ${written} bytes`)
  stream.close()
})
