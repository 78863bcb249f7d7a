// @ts-check
// The server side of the transport suites: every file of bench/servers/ builds one implementation
// and hands it to serve(), which listens on 127.0.0.1 (a free port), tracks the raw TCP sockets of
// its HTTP server, and obeys the driver (bench/common.mjs) over IPC:
//   (start)                          -> { type: 'ready', port }
//   { cmd: 'count' }                 -> { type: 'count', subscribers, sockets }
//   { cmd: 'publish', from, count }  -> publishes events from..from+count-1 as fast as backpressure
//                                       allows, starting a measured window; -> { type: 'published', start, publishMs }
//   { cmd: 'publish', from, count, rate } -> the same at a fixed rate (events/s), for latency
//   (a window starts with a full GC, unless the message says `gc: false`)
//   { cmd: 'mark' }                  -> starts a measured window without publishing (echo) -> { type: 'marked', start }
//   { cmd: 'stop' }                  -> ends the window -> { type: 'stopped', cpuMs, userMs, systemMs, wallMs,
//                                       waits, waitMs } (how often and how long the publisher waited for drain)
//   { cmd: 'memory' }                -> gc(), 100 ms, gc() -> { type: 'memory', heapUsed, rss, external, arrayBuffers }
//   { cmd: 'exit' }                  -> closes the implementation (at most 3 s) and exits
// CPU is process.cpuUsage() (user + system) between the start of the window and `stop`, which the
// driver sends once every client has every event: the bytes still buffered when publishing ends
// are flushed inside the window. Any failure is answered { type: 'error', message }.
//
// Publishing "as fast as backpressure allows", the same for every implementation: events go out in
// batches of BATCH (16; the driver's `--batch=N` sets it) with a setImmediate between batches, so an
// implementation that coalesces the writes of one tick (fastify-realtime corks the sockets it writes
// to until the next tick) sends up to BATCH events per write. When a client's unsent bytes (its
// socket's writableLength, plus what the implementation queues outside the socket) pass HIGH_WATER,
// the publisher waits until every socket that asked for it has emitted 'drain' and the backlog is
// back under LOW_WATER. Each event is built here: `{"seq":n,"ts":<send time, ms>,"text":"xx…"}`, 200 bytes
// of JSON for 5-digit seqs, named `tick` by every implementation.

import { performance } from 'node:perf_hooks'

/** @typedef {import('node:net').Socket} Socket */

/**
 * @typedef {object} BenchEvent
 * @property {number} seq
 * @property {number} ts ms since the epoch, with µs, comparable across processes
 * @property {string} text padding
 */

/**
 * @typedef {object} Implementation
 * @property {import('node:http').Server} server the HTTP server, not yet listening
 * @property {() => Promise<number>} listen listens on 127.0.0.1, resolves to the port
 * @property {() => number} subscribers connections ready to receive events
 * @property {(event: BenchEvent) => void} publish fans one event out to every subscriber
 * @property {() => number} [queued] the largest backlog in bytes a client has outside its socket
 * @property {() => Promise<void>} close
 */

export const EVENT = 'tick'
export const BATCH = Number(process.env.BENCH_BATCH ?? 16)
export const HIGH_WATER = 256 * 1024
export const LOW_WATER = 64 * 1024
const STALL_MS = 10000
const SAMPLE_TS = 1763966653123.457 // a 17-char timestamp, to size the padding
export const TEXT = 'x'.repeat(200 - JSON.stringify({ seq: 10000, ts: SAMPLE_TS, text: '' }).length)

/** @param {number} seq @returns {BenchEvent} */
export function makeEvent (seq) {
  return { seq, ts: Math.round((performance.timeOrigin + performance.now()) * 1000) / 1000, text: TEXT }
}

/**
 * An echo request's result, computed the same way by every implementation.
 * @param {{ a: number, b: number, text: string }} data
 */
export function addReply (data) {
  return { sum: data.a + data.b, text: data.text }
}

/**
 * A queue of items read by an async iterator, for sources that pull (fastify-sse-v2). `length` is
 * what waits to be read.
 * @template T
 */
export class Feed {
  /** @type {T[]} */
  items = []
  head = 0
  /** @type {((result: IteratorResult<T>) => void) | undefined} */
  waiting
  ended = false

  get length () { return this.items.length - this.head }

  /** @param {T} item */
  push (item) {
    if (this.waiting !== undefined) {
      const resolve = this.waiting
      this.waiting = undefined
      resolve({ value: item, done: false })
      return
    }
    this.items.push(item)
  }

  end () {
    this.ended = true
    this.waiting?.({ value: undefined, done: true })
    this.waiting = undefined
  }

  /** @returns {Promise<IteratorResult<T>>} */
  next () {
    if (this.head < this.items.length) {
      const value = /** @type {T} */ (this.items[this.head++])
      if (this.head > 1024 && this.head * 2 > this.items.length) {
        this.items = this.items.slice(this.head)
        this.head = 0
      }
      return Promise.resolve({ value, done: false })
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve) => { this.waiting = resolve })
  }

  /** @returns {Promise<IteratorResult<T>>} */
  return () {
    this.end()
    return Promise.resolve({ value: undefined, done: true })
  }

  [Symbol.asyncIterator] () { return this }
}

/** @param {unknown} err */
const describe = (err) => err instanceof Error ? (err.stack ?? err.message) : String(err)

/**
 * Runs an implementation under the driver's commands. Never returns.
 * @param {() => Promise<Implementation>} create
 */
export async function serve (create) {
  const send = (/** @type {Record<string, unknown>} */ message) => process.send?.(message)
  if (process.send === undefined) throw new Error('bench/servers/* run under the bench driver (an IPC channel)')
  process.on('disconnect', () => process.exit(1)) // the driver is gone
  process.on('uncaughtException', (err) => {
    send({ type: 'error', message: `uncaught: ${describe(err)}` })
    process.exit(1)
  })
  process.on('unhandledRejection', (err) => {
    send({ type: 'error', message: `unhandled rejection: ${describe(err)}` })
    process.exit(1)
  })

  const impl = await create()
  /** @type {Set<Socket>} */
  const sockets = new Set()
  impl.server.on('connection', (/** @type {Socket} */ socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const port = await impl.listen()

  function backlog () {
    let max = impl.queued?.() ?? 0
    for (const socket of sockets) if (socket.writableLength > max) max = socket.writableLength
    return max
  }

  /** Resolves once every socket that needs to drain has, and the backlog is under LOW_WATER. */
  async function drained () {
    const deadline = Date.now() + STALL_MS
    for (;;) {
      /** @type {Promise<unknown>[]} */
      const waits = []
      for (const socket of sockets) {
        if (socket.writableNeedDrain && !socket.destroyed) {
          waits.push(new Promise((resolve) => {
            const done = () => {
              socket.off('drain', done)
              socket.off('close', done)
              resolve(undefined)
            }
            socket.on('drain', done)
            socket.on('close', done)
          }))
        }
      }
      if (waits.length > 0) await Promise.all(waits)
      else if (backlog() > LOW_WATER) await new Promise((resolve) => setTimeout(resolve, 1))
      else return
      if (Date.now() > deadline) throw new Error(`the clients did not read for ${STALL_MS} ms (backlog ${backlog()} bytes)`)
    }
  }

  // How often, and how long, the publisher waited for the clients during the window.
  const stats = { waits: 0, waitMs: 0 }

  /**
   * Publishes at a fixed rate instead, checking every 2 ms how many events are due: for latency
   * below saturation.
   * @param {number} from @param {number} count @param {number} rate events per second
   */
  async function publishAtRate (from, count, rate) {
    const start = performance.now()
    let seq = from
    const end = from + count
    while (seq < end) {
      const due = Math.min(end, from + Math.floor((performance.now() - start) / 1000 * rate) + 1)
      while (seq < due) impl.publish(makeEvent(seq++))
      if (seq < end) await new Promise((resolve) => setTimeout(resolve, 2))
    }
  }

  /** @param {number} from @param {number} count */
  async function publish (from, count) {
    const end = from + count
    let seq = from
    while (seq < end) {
      const stop = Math.min(end, seq + BATCH)
      while (seq < stop) impl.publish(makeEvent(seq++))
      if (backlog() > HIGH_WATER) {
        const waitStart = performance.now()
        await drained()
        stats.waits++
        stats.waitMs += performance.now() - waitStart
      } else {
        await new Promise(setImmediate)
      }
    }
  }

  /** @type {{ cpu: NodeJS.CpuUsage, wall: number } | undefined} */
  let window
  const startWindow = (gc = true) => {
    if (gc) globalThis.gc?.()
    window = { cpu: process.cpuUsage(), wall: performance.now() }
    return performance.timeOrigin + window.wall
  }

  process.on('message', async (/** @type {any} */ message) => {
    try {
      switch (message.cmd) {
        case 'count':
          send({ type: 'count', subscribers: impl.subscribers(), sockets: sockets.size })
          break
        case 'publish': {
          const start = startWindow(message.gc !== false)
          if (message.rate === undefined) await publish(message.from, message.count)
          else await publishAtRate(message.from, message.count, message.rate)
          send({ type: 'published', start, publishMs: performance.timeOrigin + performance.now() - start })
          break
        }
        case 'mark':
          send({ type: 'marked', start: startWindow() })
          break
        case 'stop': {
          if (window === undefined) throw new Error('stop without a window')
          const used = process.cpuUsage(window.cpu)
          send({ type: 'stopped', cpuMs: (used.user + used.system) / 1000, userMs: used.user / 1000, systemMs: used.system / 1000, wallMs: performance.now() - window.wall, ...stats })
          window = undefined
          stats.waits = 0
          stats.waitMs = 0
          break
        }
        case 'memory': {
          if (globalThis.gc === undefined) throw new Error('run with --expose-gc')
          globalThis.gc()
          await new Promise((resolve) => setTimeout(resolve, 100))
          globalThis.gc()
          const { heapUsed, rss, external, arrayBuffers } = process.memoryUsage()
          send({ type: 'memory', heapUsed, rss, external, arrayBuffers })
          break
        }
        case 'exit': {
          const timer = setTimeout(() => process.exit(0), 3000)
          for (const socket of sockets) socket.destroy()
          await impl.close().catch(() => {})
          clearTimeout(timer)
          process.exit(0)
          break
        }
        default:
          throw new Error(`unknown command ${message.cmd}`)
      }
    } catch (err) {
      send({ type: 'error', message: describe(err) })
    }
  })
  send({ type: 'ready', port })
}

/**
 * Listens on a free port of 127.0.0.1.
 * @param {import('node:http').Server} server
 * @returns {Promise<number>}
 */
export function listenHttp (server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(/** @type {import('node:net').AddressInfo} */ (server.address()).port))
  })
}

/**
 * Closes an HTTP server, its connections included.
 * @param {import('node:http').Server} server
 * @returns {Promise<void>}
 */
export function closeHttp (server) {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

/**
 * Listens on a free port of 127.0.0.1.
 * @param {import('fastify').FastifyInstance} app
 */
export async function listenFastify (app) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return /** @type {import('node:net').AddressInfo} */ (app.server.address()).port
}
