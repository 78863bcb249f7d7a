// @ts-check
// The server of `npm run soak` (bench/soak.mjs starts it, pinned to CPU 1, with --expose-gc): one
// Fastify app with fastifySse and fastifyWs from the built package, driven over IPC.
//
//   node --expose-gc bench/soak-server.mjs [--heartbeat=0] [--upgrades-per-second=N]
//   (--heartbeat=0: no SSE heartbeat comment, no WS ping; --upgrades-per-second: upgradeRateLimit per address)
//
// Routes (no authentication; topics are created on first use, all with one contract):
//   GET /sse?topic=t   a push stream subscribed to t; `: subscribed` comment once subscribe() resolved
//   WS  /ws?topic=t    subscribes to t in onOpen; a `ready` event once subscribe() resolved
//   WS  /echo          message `echo` (a string) replied with the same string
// IPC requests `{ id, cmd, ...args }`, each answered with `{ id, ...result }` (or `{ id, error }`):
//   stats { gc? }                 memory (after a full GC when asked) and the open connection counts
//   publish { topic, count, batch }  ticks n = 0..count-1 on topic, `batch` per event-loop turn, paced
//                                 so that no connection has more than PACE_BYTES unsent (readers that
//                                 keep up are never cut); answers once the last one is written, with
//                                 `at`, the clock time (timeOrigin + now) publishing began
//   feed { topic, bytes, everyMs }   starts publishing `bytes`-sized events every `everyMs` ms
//   stopFeed                      stops it
//   close                         app.close(), then the process exits

import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs } from 'fastify-realtime'
import { serveCommands } from './util.mjs'

const heartbeatArg = process.argv.find((arg) => arg.startsWith('--heartbeat='))
const heartbeat = heartbeatArg === undefined ? undefined : Number(heartbeatArg.split('=')[1])
// --upgrades-per-second=N: fastifyWs's per-address upgrade budget (phase 4 only; off otherwise).
const upgradesArg = process.argv.find((arg) => arg.startsWith('--upgrades-per-second='))
const upgradeRateLimit = upgradesArg === undefined ? false : { upgrades: Number(upgradesArg.split('=')[1]), intervalMs: 1000 }
// Half the default maxBufferedBytes: a publisher that waits below it never makes a reader a slow consumer.
const PACE_BYTES = 512 * 1024

const contract = defineContract({
  events: {
    tick: Type.Object({ n: Type.Integer() }),
    blob: Type.String(),
    ready: Type.Object({})
  }
})
const echo = defineContract({
  messages: { echo: Type.String({ maxLength: 1024 }) },
  replies: { echo: Type.String() }
})

const app = Fastify({ logger: false })
await app.register(fastifySse, { heartbeat })
await app.register(fastifyWs, { heartbeat, upgradeRateLimit })

/** @param {unknown} name */
function topicOf (name) {
  return app.realtime.topic(typeof name === 'string' && name !== '' ? name : 'soak', { contract })
}

/** Sockets of open SSE streams, to pace publishing by their unsent bytes. @type {Set<import('node:net').Socket>} */
const sseSockets = new Set()
let sseOpen = 0
let wsOpen = 0

app.get('/sse', async (request, reply) => {
  const stream = reply.sse({ contract })
  const socket = reply.raw.socket
  sseOpen++
  if (socket !== null) sseSockets.add(socket)
  stream.closed.then(() => {
    sseOpen--
    if (socket !== null) sseSockets.delete(socket)
  })
  await stream.subscribe(topicOf(/** @type {{ topic?: string }} */ (request.query).topic))
  stream.comment('subscribed')
})

app.ws('/ws', {
  contract,
  authenticate: false,
  async onOpen (conn) {
    wsOpen++
    await conn.subscribe(topicOf(/** @type {{ topic?: string }} */ (conn.request.query).topic))
    conn.send('ready', {})
  },
  onClose () { wsOpen-- }
})

app.ws('/echo', {
  contract: echo,
  authenticate: false,
  handlers: { echo: (text) => text }
})

const address = await app.listen({ port: 0, host: '127.0.0.1' })

/** The most unsent bytes any connection has. */
function maxUnsent () {
  let max = 0
  for (const socket of sseSockets) max = Math.max(max, socket.writableLength)
  for (const ws of app.websocketServer.clients) max = Math.max(max, ws.bufferedAmount)
  return max
}

const turn = () => new Promise((resolve) => setImmediate(resolve))
const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

const loopDelay = monitorEventLoopDelay({ resolution: 1 })
loopDelay.enable()

/** @type {NodeJS.Timeout | undefined} */
let feedTimer

/** @type {Record<string, (args: any) => Promise<object> | object>} */
const commands = {
  async stats ({ gc }) {
    if (gc === true && typeof globalThis.gc === 'function') {
      for (let i = 0; i < 4; i++) {
        globalThis.gc()
        await sleep(20)
      }
    }
    const memory = process.memoryUsage()
    return { heapUsed: memory.heapUsed, heapTotal: memory.heapTotal, rss: memory.rss, external: memory.external, arrayBuffers: memory.arrayBuffers, sse: sseOpen, ws: wsOpen, wsSockets: app.websocketServer.clients.size }
  },
  async publish ({ topic, count, batch }) {
    const target = topicOf(topic)
    const started = performance.now()
    let waits = 0
    for (let n = 0; n < count;) {
      const end = Math.min(count, n + batch)
      for (; n < end; n++) target.publish('tick', { n }).catch(() => {})
      await turn()
      while (maxUnsent() > PACE_BYTES) {
        waits++
        await sleep(1)
      }
    }
    return { at: performance.timeOrigin + started, ms: performance.now() - started, waits }
  },
  feed ({ topic, bytes, everyMs }) {
    const target = topicOf(topic)
    const blob = 'f'.repeat(bytes)
    clearInterval(feedTimer)
    feedTimer = setInterval(() => { target.publish('blob', blob).catch(() => {}) }, everyMs)
    return {}
  },
  stopFeed () {
    clearInterval(feedTimer)
    return {}
  },
  // The server's event-loop delay since the last call (p99 and max, ms): how long any connection's
  // work waited for the loop, whatever the measuring clients' own process went through.
  loopDelay () {
    const result = { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 }
    loopDelay.reset()
    return result
  },
  async close () {
    clearInterval(feedTimer)
    await app.close()
    setImmediate(() => process.exit(0))
    return {}
  }
}

serveCommands(commands, { port: new URL(address).port })
