// @ts-check
// A share of the load generator of `npm run soak` (bench/soak.mjs starts as many of these as the
// per-process file limit requires, pinned to CPU 0, with the soft limit raised to the hard one).
// It holds raw `node:net` clients (a hand-written SSE request or WebSocket upgrade), each bound to
// one of the loopback source addresses it was given, in turn, so that no address runs out of
// ephemeral ports; it counts events by scanning what arrives for a marker, and answers WebSocket
// pings. Over IPC, `{ id, cmd, ...args }`, each answered `{ id, ...result }` or `{ id, error }`:
//   open { kind, port, path, count, marker, ready?, concurrency }
//                 opens `count` more clients of `kind` ('sse' | 'ws'), at most `concurrency`
//                 handshakes at a time; each is confirmed by `ready` (a string the server sends once
//                 it subscribed the connection) or, without it, by the response head (200 / 101)
//                 -> { opened, seconds }
//   arm { target }  from now on, notes when every client has counted `target` markers -> {}
//   reached { stallMs }  waits for that (or fails after `stallMs` with no marker arriving)
//                 -> { at (clock ms of the last client's arrival), clients }
//   counts { expected }  -> { clients, total, short (clients under `expected`), over (above it) }
//   reset         sets every client's count to 0 (after clients joined late) -> {}
//   close         destroys every client, waits for their 'close' -> { closed }
//   exit          exits
// Clock: performance.timeOrigin + performance.now(), comparable across the processes of a machine.

import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { serveCommands } from './util.mjs'

const clock = () => performance.timeOrigin + performance.now()
const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

// RFC 6455 section 5.5.2: the server's ping (ws sends it with no payload), and the masked pong
// answering it (a client frame must be masked; a zero key is a key).
const PING = Buffer.from([0x89, 0x00])
const PONG = Buffer.from([0x8a, 0x80, 0, 0, 0, 0])

/**
 * @typedef {object} Client
 * @property {net.Socket} socket
 * @property {number} count markers seen
 * @property {boolean} ws
 */

const addresses = (process.env.SOAK_LOCAL_ADDRESSES ?? '127.0.0.1').split(',')
let nextAddress = 0

/** @type {Client[]} */
let clients = []
let target = Infinity
let pending = 0
let lastArrival = 0
// Markers counted by all clients so far: what a wait watches for progress.
let arrivals = 0

/**
 * Counts `marker` in a stream of chunks, one split across two chunks included.
 * @param {Buffer} marker
 */
function counter (marker) {
  /** @type {Buffer} */
  let tail = Buffer.alloc(0)
  return (/** @type {Buffer} */ chunk) => {
    let found = 0
    for (let at = chunk.indexOf(marker); at !== -1; at = chunk.indexOf(marker, at + marker.length)) found++
    if (tail.length > 0) {
      const seam = Buffer.concat([tail, chunk.subarray(0, marker.length - 1)])
      for (let at = seam.indexOf(marker); at !== -1; at = seam.indexOf(marker, at + 1)) {
        if (at < tail.length && at + marker.length > tail.length) found++
      }
    }
    tail = chunk.length >= marker.length - 1 ? chunk.subarray(chunk.length - (marker.length - 1)) : Buffer.concat([tail, chunk]).subarray(-(marker.length - 1))
    return found
  }
}

/**
 * Opens one client and resolves once it is confirmed.
 * @param {{ kind: 'sse' | 'ws', port: number, path: string, marker: string, ready?: string }} options
 * @returns {Promise<Client>}
 */
function openOne ({ kind, port, path, marker, ready }) {
  return new Promise((resolve, reject) => {
    const localAddress = addresses[nextAddress++ % addresses.length]
    const socket = net.connect({ port, host: '127.0.0.1', localAddress, noDelay: true })
    const head = kind === 'sse'
      ? `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`
      : `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`
    socket.write(head)
    /** @type {Client} */
    const client = { socket, count: 0, ws: kind === 'ws' }
    const count = counter(Buffer.from(marker))
    const readyMarker = ready === undefined ? undefined : Buffer.from(ready)
    /** @type {Buffer | undefined} */
    let early = Buffer.alloc(0)
    let confirmed = false
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`${kind} ${path} from ${localAddress}: not confirmed within 20 s`))
    }, 20000)
    const confirm = () => {
      confirmed = true
      early = undefined
      clearTimeout(timer)
      resolve(client)
    }
    socket.on('data', (/** @type {Buffer} */ chunk) => {
      if (early !== undefined) {
        // The handshake: the status line, then (when asked) the server's confirmation.
        early = Buffer.concat([early, chunk])
        const end = early.indexOf('\r\n\r\n')
        if (end === -1) return
        const status = early.subarray(0, 12).toString('latin1')
        if (status !== (kind === 'sse' ? 'HTTP/1.1 200' : 'HTTP/1.1 101')) {
          socket.destroy()
          reject(new Error(`${kind} ${path}: ${status}`))
          return
        }
        if (readyMarker !== undefined && early.indexOf(readyMarker, end) === -1) return
        chunk = early.subarray(end + 4)
        confirm()
      }
      if (client.ws && chunk.indexOf(PING) !== -1) socket.write(PONG)
      const found = count(chunk)
      if (found === 0) return
      arrivals += found
      const before = client.count
      client.count += found
      if (before < target && client.count >= target) {
        lastArrival = clock()
        pending--
      }
    })
    socket.on('error', (err) => { if (!confirmed) reject(err) })
    socket.once('close', () => {
      if (!confirmed) {
        clearTimeout(timer)
        reject(new Error(`${kind} ${path}: closed before it was confirmed`))
      }
    })
  })
}

/** @type {Record<string, (args: any) => Promise<object> | object>} */
const commands = {
  async open ({ kind, port, path, count, marker, ready, concurrency }) {
    const started = performance.now()
    let next = 0
    /** @type {Client[]} */
    const opened = []
    const worker = async () => {
      while (next < count) {
        next++
        opened.push(await openOne({ kind, port, path, marker, ready }))
      }
    }
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
    } catch (err) {
      for (const client of opened) client.socket.destroy()
      throw err
    }
    clients = clients.concat(opened)
    return { opened: opened.length, seconds: (performance.now() - started) / 1000 }
  },
  arm ({ target: value }) {
    target = value
    lastArrival = 0
    pending = clients.filter((client) => client.count < target).length
    return {}
  },
  async reached ({ stallMs }) {
    let seen = arrivals
    let since = Date.now()
    // `pending` falls as the clients' data handlers run, between these sleeps.
    // eslint-disable-next-line no-unmodified-loop-condition
    while (pending > 0) {
      await sleep(1)
      if (arrivals !== seen) {
        seen = arrivals
        since = Date.now()
      } else if (Date.now() - since > stallMs) {
        const closed = clients.filter((client) => client.socket.destroyed).length
        throw new Error(`${pending} of ${clients.length} clients short of ${target} markers for ${stallMs} ms (${closed} closed)`)
      }
    }
    target = Infinity
    return { at: lastArrival, clients: clients.length }
  },
  counts ({ expected }) {
    let total = 0
    let short = 0
    let over = 0
    for (const client of clients) {
      total += client.count
      if (client.count < expected) short++
      else if (client.count > expected) over++
    }
    return { clients: clients.length, total, short, over }
  },
  reset () {
    for (const client of clients) client.count = 0
    return {}
  },
  async close () {
    const closing = clients.map((client) => new Promise((resolve) => {
      if (client.socket.closed) resolve(undefined)
      else client.socket.once('close', resolve)
    }))
    for (const client of clients) client.socket.destroy()
    await Promise.all(closing)
    const closed = clients.length
    clients = []
    return { closed }
  },
  exit () {
    setImmediate(() => process.exit(0))
    return {}
  }
}

serveCommands(commands)
