import { deflateRawSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifyWs, type FastifyWsOptions } from '../../lib/index.js'
import { connectWS } from '../../lib/testing/index.js'
import { Opcode, closePayload, readFrames, within, wsUpgrade } from '../helpers/ws.js'

// A raw peer: hand-built frames on a real socket, against app.ws(). ws parses the frames; these
// tests prove the plugin's configuration answers each one with the RFC 6455 close code, and that
// other connections are untouched.

const echo = defineContract({ messages: { echo: Type.String() }, replies: { echo: Type.String() } })

interface FrameSpec {
  fin?: boolean
  rsv?: number
  opcode: number
  mask?: boolean
  payload?: Buffer | string
  /** Overrides the length field (for lying headers such as 2^63). */
  length?: bigint
}

/** Any frame, valid or not (RFC 6455 section 5.2). */
function frame ({ fin = true, rsv = 0, opcode, mask = true, payload = Buffer.alloc(0), length }: FrameSpec): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  const size = length ?? BigInt(data.length)
  const first = (fin ? 0x80 : 0) | (rsv << 4) | opcode
  let header: Buffer
  if (size < 126n) {
    header = Buffer.from([first, (mask ? 0x80 : 0) | Number(size)])
  } else if (size < 65536n) {
    header = Buffer.alloc(4)
    header[0] = first
    header[1] = (mask ? 0x80 : 0) | 126
    header.writeUInt16BE(Number(size), 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = first
    header[1] = (mask ? 0x80 : 0) | 127
    header.writeBigUInt64BE(size, 2)
  }
  if (!mask) return Buffer.concat([header, data])
  const key = randomBytes(4)
  const masked = Buffer.from(data)
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) ^ (key[i % 4] as number)
  return Buffer.concat([header, key, masked])
}

async function build (t: Test, options: FastifyWsOptions = {}): Promise<{ app: FastifyInstance, url: string, closes: number[] }> {
  const app = Fastify()
  await app.register(fastifyWs, { heartbeat: 0, ...options })
  t.teardown(() => app.close())
  const closes: number[] = []
  app.ws('/echo', {
    authenticate: false,
    contract: echo,
    handlers: { echo: (text) => text },
    onClose (conn, code) { closes.push(code) }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url, closes }
}

/** Sends the bytes from a raw peer and returns the close code the server sent. */
async function closeCodeFor (url: string, bytes: Buffer | Buffer[], headers: Record<string, string> = {}): Promise<number> {
  const socket = await wsUpgrade(url, '/echo', headers)
  const frames = readFrames(socket)
  for (const chunk of Array.isArray(bytes) ? bytes : [bytes]) socket.write(chunk)
  try {
    for (;;) {
      const received = await within(frames.next(), 3000, 'the close frame')
      if (received.opcode === Opcode.close) return closePayload(received.payload).code
    }
  } finally {
    socket.destroy()
  }
}

const cases: Array<[string, number, () => Buffer | Buffer[]]> = [
  ['RSV1 set without an extension', 1002, () => frame({ rsv: 4, opcode: Opcode.text, payload: '"x"' })],
  ['RSV2 and RSV3 set', 1002, () => frame({ rsv: 3, opcode: Opcode.text, payload: '"x"' })],
  ['a reserved data opcode (0x3)', 1002, () => frame({ opcode: 0x3, payload: 'x' })],
  ['a reserved control opcode (0xB)', 1002, () => frame({ opcode: 0xb })],
  ['an unmasked client frame', 1002, () => frame({ opcode: Opcode.text, mask: false, payload: '{"type":"echo","data":"x"}' })],
  ['a fragmented control frame', 1002, () => frame({ fin: false, opcode: Opcode.ping, payload: 'x' })],
  ['a control frame over 125 bytes', 1002, () => frame({ opcode: Opcode.ping, payload: Buffer.alloc(126) })],
  ['close code 1005 on the wire', 1002, () => frame({ opcode: Opcode.close, payload: Buffer.from([0x03, 0xed]) })],
  ['a continuation with nothing to continue', 1002, () => frame({ opcode: 0x0, payload: 'x' })],
  ['a 2^63 length header', 1009, () => frame({ opcode: Opcode.text, length: 2n ** 63n })],
  ['a message over maxPayload', 1009, () => frame({ opcode: Opcode.text, payload: Buffer.alloc(65537, 0x20) })],
  ['invalid UTF-8 in a text frame', 1007, () => frame({ opcode: Opcode.text, payload: Buffer.from([0x22, 0xc3, 0x28, 0x22]) })],
  ['invalid UTF-8 split across fragments', 1007, () => [
    frame({ fin: false, opcode: Opcode.text, payload: Buffer.from([0x22, 0xe2, 0x82]) }),
    frame({ opcode: 0x0, payload: Buffer.from([0x28, 0x22]) })
  ]],
  ['a binary frame on a JSON route', 1003, () => frame({ opcode: Opcode.binary, payload: Buffer.from([1, 2, 3]) })],
  // ws (>= 8.21, maxFragments) answers a fragment flood with 1008, policy violation.
  ['a flood of tiny fragments', 1008, () => {
    const fragments = [frame({ fin: false, opcode: Opcode.text, payload: 'x' })]
    for (let i = 0; i < 20000; i++) fragments.push(frame({ fin: false, opcode: 0x0, payload: i % 2 === 0 ? '' : 'y' }))
    return Buffer.concat(fragments)
  }]
]

for (const [name, code, bytes] of cases) {
  t.test(`${name}: close ${code}, and other connections are untouched`, async (t) => {
    const { app, url } = await build(t)
    const bystander = await connectWS(app, '/echo')
    t.equal(await closeCodeFor(url, bytes()), code)
    t.equal(await bystander.request('echo', 'still here'), 'still here')
    await bystander.close()
  })
}

t.test('onClose reports the protocol error\'s code', async (t) => {
  const { url, closes } = await build(t)
  await closeCodeFor(url, frame({ opcode: Opcode.text, payload: Buffer.from([0xff]) }))
  await within((async () => { while (closes.length === 0) await new Promise((resolve) => setTimeout(resolve, 5)) })(), 2000, 'onClose')
  t.same(closes, [1007])
})

t.test('a deflate bomb with compression on: 1009, memory flat', async (t) => {
  const { app, url } = await build(t, { perMessageDeflate: true })
  const bomb = deflateRawSync(Buffer.alloc(50 * 1024 * 1024, 0x20)) // 50 MB of spaces in ~50 KB
  const payload = bomb.subarray(0, bomb.length - 4) // RFC 7692: the trailing 00 00 ff ff is left out
  t.ok(payload.length < 64 * 1024, `the compressed frame (${payload.length} bytes) is within maxPayload`)
  const before = process.memoryUsage().rss
  const bystander = await connectWS(app, '/echo')
  t.equal(await closeCodeFor(url, frame({ rsv: 4, opcode: Opcode.text, payload }), { 'Sec-WebSocket-Extensions': 'permessage-deflate' }), 1009)
  const grown = process.memoryUsage().rss - before
  t.ok(grown < 20 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1024 / 1024)} MB, not by the 50 MB inflated`)
  t.equal(await bystander.request('echo', 'fine'), 'fine')
  await bystander.close()
})

t.test('a compressed frame is refused when compression is off (the default)', async (t) => {
  const { url } = await build(t)
  const payload = deflateRawSync(Buffer.from('"x"')).subarray(0, -4)
  t.equal(await closeCodeFor(url, frame({ rsv: 4, opcode: Opcode.text, payload }), { 'Sec-WebSocket-Extensions': 'permessage-deflate' }), 1002)
})

/** One text message split into `count` fragments (the first a text frame, the rest continuations). */
function fragmented (text: string, count: number): Buffer[] {
  const data = Buffer.from(text)
  const size = Math.ceil(data.length / count)
  return Array.from({ length: count }, (_, i) => frame({
    fin: i === count - 1,
    opcode: i === 0 ? Opcode.text : 0x0,
    payload: data.subarray(i * size, Math.min(data.length, (i + 1) * size))
  }))
}

/** Sends the bytes from a raw peer: the first text frame the server sends back, or its close code. */
async function answerTo (url: string, bytes: Buffer[]): Promise<string | number> {
  const socket = await wsUpgrade(url, '/echo')
  const frames = readFrames(socket)
  socket.write(Buffer.concat(bytes))
  try {
    const received = await within(frames.next(), 3000, 'an answer')
    return received.opcode === Opcode.close ? closePayload(received.payload).code : received.payload.toString()
  } finally {
    socket.destroy()
  }
}

t.test('a message may come in 64 fragments; the 65th is a fragment flood (1008)', async (t) => {
  const { url } = await build(t)
  const message = JSON.stringify({ type: 'echo', id: 1, data: 'f'.repeat(200) })
  t.same(JSON.parse(String(await answerTo(url, fragmented(message, 64)))), { type: 'reply', id: 1, data: 'f'.repeat(200) })
  t.equal(await answerTo(url, fragmented(message, 65)), 1008)
})

t.test('a larger maxPayload allows one fragment per KiB of it', async (t) => {
  const { url } = await build(t, { maxPayload: 256 * 1024 })
  const message = JSON.stringify({ type: 'echo', id: 2, data: 'g'.repeat(1000) })
  t.same(JSON.parse(String(await answerTo(url, fragmented(message, 256)))), { type: 'reply', id: 2, data: 'g'.repeat(1000) })
  t.equal(await answerTo(url, fragmented(message, 257)), 1008)
})

/** Writes `chunk` to the socket for `ms`, as fast as it takes it; resolves with the bytes it took. */
async function writeFor (socket: import('node:net').Socket, chunk: Buffer, ms: number): Promise<number> {
  let taken = 0
  const end = Date.now() + ms
  while (Date.now() < end && !socket.destroyed) {
    if (socket.write(chunk)) taken += chunk.length
    else await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return taken
}

for (const [name, first] of [
  ['a protocol error (1002)', () => frame({ opcode: Opcode.text, mask: false, payload: 'x' })],
  ['too many bad messages (4400)', () => Buffer.concat(Array.from({ length: 10 }, () => frame({ opcode: Opcode.text, payload: 'not json' })))]
] as const) {
  t.test(`a peer that keeps writing after ${name} is not read any further`, async (t) => {
    const { app, url, closes } = await build(t)
    const socket = await wsUpgrade(url, '/echo')
    socket.on('error', () => {})
    socket.resume()
    const [server] = [...app.websocketServer.clients] as unknown as Array<{ _socket: import('node:net').Socket }>
    socket.write(first())
    // Then junk for half a second, as fast as the server reads it.
    await writeFor(socket, Buffer.alloc(64 * 1024, 0x41), 500)
    const read = (server as { _socket: import('node:net').Socket })._socket.bytesRead
    t.ok(read < 8 * 1024 * 1024, `the server read ${read} bytes, then stopped`)
    await within(new Promise<void>((resolve) => { const poll = setInterval(() => { if (closes.length > 0) { clearInterval(poll); resolve() } }, 10) }), 3000, 'onClose')
    t.same(closes, [name.includes('1002') ? 1002 : 4400])
    socket.destroy()
  })
}
