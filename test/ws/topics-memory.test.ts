// A client that subscribes to ever new topic names (`room:<random>`) cannot grow the server: the hub
// forgets a topic made for client subscriptions once no connection holds it. Heap measured after GC.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { buildWs, listenWs, openWS, readFrames, wsUpgrade } from '../helpers/ws.js'

const chat = defineContract({ events: { message: Type.Object({ text: Type.String() }) } })
const gc = (globalThis as { gc?: () => void }).gc

/** The heap in use after a full collection, in bytes. */
async function heapAfterGc (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    ;(gc as () => void)()
  }
  return process.memoryUsage().heapUsed
}

const MiB = 1024 * 1024
// Two million messages on a shared machine: a bound for a hang, not a speed measure.
t.setTimeout(600000)

const subscribe = (topic: string): string => `{"type":"realtime.subscribe","data":{"topic":"${topic}"}}`
const unsubscribe = (topic: string): string => `{"type":"realtime.unsubscribe","data":{"topic":"${topic}"}}`

/**
 * A client text frame of fewer than 126 bytes, masked with the key 0 (RFC 6455 section 5.3 lets a
 * client pick any key; XOR with 0 leaves the payload as it is), cheap to build by the million.
 */
function textFrame (payload: string): Buffer {
  const frame = Buffer.alloc(6 + Buffer.byteLength(payload))
  frame[0] = 0x81
  frame[1] = 0x80 | (frame.length - 6)
  frame.write(payload, 6)
  return frame
}

async function serve (t: Test) {
  const app = await buildWs(t, { rateLimit: false })
  app.ws('/rt', { contract: chat, topics: { 'room:*': true } })
  await app.ready()
  return app
}

t.test('a million fresh names subscribed and unsubscribed over time: the heap stays flat', async (t) => {
  t.ok(gc !== undefined, 'run with --expose-gc (.taprc sets it)')
  const app = await serve(t)
  const hub = app.realtime as any
  // A client on a real socket that writes its messages in batches, as a hostile one would.
  const socket = await wsUpgrade(`http://127.0.0.1:${await listenWs(app)}`, '/rt')
  t.teardown(() => socket.destroy())
  const server = readFrames(socket)
  let next = 0
  let pings = 0
  /** Subscribes to and unsubscribes from `count` names never used before; resolves once the server has handled them. */
  async function churn (count: number): Promise<void> {
    for (let sent = 0; sent < count; sent += 2000) {
      const frames: Buffer[] = []
      for (let i = 0; i < 2000; i++) {
        const topic = `room:${(next++).toString(36)}`
        frames.push(textFrame(subscribe(topic)), textFrame(unsubscribe(topic)))
      }
      // Answers keep arrival order: the ping's reply comes once everything before it is handled.
      frames.push(textFrame(`{"type":"realtime.ping","id":${++pings}}`))
      socket.write(Buffer.concat(frames))
      const answer = JSON.parse((await server.next()).payload.toString())
      if (answer.id !== pings) throw new Error(`expected the reply to ping ${pings}, got ${JSON.stringify(answer)}`)
    }
  }
  await churn(50000) // warm up: code paths compiled, pools and buffers at their working size
  const before = await heapAfterGc()
  for (let round = 0; round < 19; round++) await churn(50000)
  const after = await heapAfterGc()
  t.equal(next, 1000000, 'a million names')
  t.equal(server.frames.length, pings, 'nothing but the pings\' replies came back')
  t.notOk(hub.hasTopic('room:0') || hub.hasTopic(`room:${(next - 1).toString(36)}`), 'no name is left in the hub')
  t.ok(after - before < 4 * MiB, `the heap grew by ${((after - before) / MiB).toFixed(2)} MiB (a leak of one topic per name would be hundreds)`)
})

t.test('connections that subscribe to fresh names and close without unsubscribing: the heap stays flat', async (t) => {
  const app = await serve(t)
  const hub = app.realtime as any
  let next = 0
  async function visit (connections: number): Promise<void> {
    for (let c = 0; c < connections; c++) {
      const ws = await openWS(app, '/rt')
      for (let i = 0; i < 100; i++) ws.sendRaw(subscribe(`room:${(next++).toString(36)}`))
      await ws.ping()
      await ws.close()
    }
  }
  await visit(200)
  const before = await heapAfterGc()
  await visit(1800)
  const after = await heapAfterGc()
  t.equal(next, 200000, '200,000 names over 2,000 connections')
  t.notOk(hub.hasTopic('room:0') || hub.hasTopic(`room:${(next - 1).toString(36)}`), 'no name is left in the hub')
  t.ok(after - before < 4 * MiB, `the heap grew by ${((after - before) / MiB).toFixed(2)} MiB`)
})
