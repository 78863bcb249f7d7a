// @ts-check
// Hostile peers for the latency phase of `npm run soak` (bench/soak.mjs starts this process niced,
// so the well-behaved clients it measures get the CPU first). Over IPC:
//   { cmd: 'start', port, attacks: [...] }  starts the named attacks against 127.0.0.1:port
//   { cmd: 'stop' }                          stops them, closes every socket, answers with counts
// Attacks (each peer reconnects as soon as the server drops it):
//   ping-flood       4 peers sending ping frames as fast as the socket takes them (ws terminates a
//                    peer whose automatic pongs pile up; the rate limit closes with 4429)
//   fragment-flood   4 peers sending one text message as 1-byte fragments, forever
//   never-reader     a WebSocket and an SSE subscriber of `firehose` that never read (the driver
//                    has the server publish 16 KiB events on it every 2 ms; cut at maxBufferedBytes)
//   connect-flood    32 loops from one address: upgrade, close frame, again
//   invalid-frames   16 loops: upgrade, an unmasked frame (a protocol error), again

import { randomBytes } from 'node:crypto'
import net from 'node:net'

/** @typedef {{ connections: number, errors: number }} Counts */

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** A masked client frame with a zero masking key (RFC 6455 section 5.3 allows any key). */
function frame (/** @type {number} */ first, /** @type {Buffer} */ payload) {
  if (payload.length >= 126) throw new Error('short frames only')
  return Buffer.concat([Buffer.from([first, 0x80 | payload.length, 0, 0, 0, 0]), payload])
}

const PING = frame(0x89, Buffer.alloc(0))
const PONG = frame(0x8a, Buffer.alloc(0))
const FIRST_FRAGMENT = frame(0x01, Buffer.from('x'))
const CONTINUATION = frame(0x00, Buffer.from('x'))
const CLOSE = frame(0x88, Buffer.from([0x03, 0xe8]))
const UNMASKED = Buffer.from([0x81, 0x01, 0x78])

const state = { stopped: false }
/** @type {Set<net.Socket>} */
const sockets = new Set()
/** @type {Promise<void>[]} */
let loops = []
/** @type {Record<string, Counts>} */
let counts = {}

/**
 * Opens a socket and sends a request; resolves with the socket once `head` (a status line prefix)
 * arrived, rejects on anything else. `read: false` leaves it paused without waiting for a head.
 * @param {number} port
 * @param {string} path
 * @param {{ websocket: boolean, read?: boolean }} options
 * @returns {Promise<net.Socket>}
 */
function open (port, path, { websocket, read = true }) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', reject)
    const head = websocket
      ? `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`
      : `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`
    socket.write(head)
    if (!read) {
      socket.once('connect', () => {
        socket.pause()
        resolve(socket)
      })
      return
    }
    let received = ''
    const onData = (/** @type {Buffer} */ chunk) => {
      received += chunk.toString('latin1')
      if (!received.includes('\r\n\r\n')) return
      socket.removeListener('data', onData)
      if (received.startsWith(websocket ? 'HTTP/1.1 101' : 'HTTP/1.1 200')) resolve(socket)
      else {
        socket.destroy()
        reject(new Error(received.split('\r\n')[0]))
      }
    }
    socket.on('data', onData)
    socket.once('close', () => reject(new Error('closed before a head')))
  })
}

/** Resolves when the socket has closed. */
function closed (/** @type {net.Socket} */ socket) {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(undefined)
    else socket.once('close', resolve)
  })
}

/**
 * Runs `body` again and again until stopped, counting its connections and errors.
 * @param {string} name
 * @param {() => Promise<void>} body
 */
function loop (name, body) {
  const count = (counts[name] ??= { connections: 0, errors: 0 })
  loops.push((async () => {
    while (!state.stopped) {
      try {
        count.connections++
        await body()
      } catch {
        count.errors++
        await sleep(10)
      }
    }
  })())
}

/**
 * Writes `chunk` whenever the socket takes more, until it closes or the attack stops.
 * @param {net.Socket} socket
 * @param {Buffer} chunk
 */
function flood (socket, chunk) {
  socket.resume() // read (and drop) whatever the server sends, its close frame included
  const pump = () => {
    if (state.stopped || socket.destroyed) return socket.destroy()
    if (socket.write(chunk)) setImmediate(pump)
    else socket.once('drain', pump)
  }
  pump()
  return closed(socket)
}

/** @type {Record<string, (port: number) => void>} */
const attacks = {
  'ping-flood' (port) {
    const burst = Buffer.concat(Array.from({ length: 64 }, () => PING))
    for (let i = 0; i < 4; i++) loop('ping-flood', async () => { await flood(await open(port, '/echo', { websocket: true }), burst) })
  },
  'fragment-flood' (port) {
    const burst = Buffer.concat(Array.from({ length: 256 }, () => CONTINUATION))
    for (let i = 0; i < 4; i++) {
      loop('fragment-flood', async () => {
        const socket = await open(port, '/echo', { websocket: true })
        socket.write(FIRST_FRAGMENT)
        await flood(socket, burst)
      })
    }
  },
  'never-reader' (port) {
    for (const websocket of [true, false]) {
      loop('never-reader', async () => {
        const socket = await open(port, websocket ? '/ws?topic=firehose' : '/sse?topic=firehose', { websocket, read: false })
        // A socket that never reads never sees the server's FIN either: a write every 100 ms (an
        // unsolicited pong, which needs no answer, or a blank line between HTTP requests) fails once
        // the server has cut it, and it comes back.
        const probe = setInterval(() => socket.write(websocket ? PONG : '\r\n'), 100)
        await closed(socket)
        clearInterval(probe)
      })
    }
  },
  'connect-flood' (port) {
    for (let i = 0; i < 32; i++) {
      loop('connect-flood', async () => {
        const socket = await open(port, '/echo', { websocket: true })
        socket.resume()
        socket.write(CLOSE)
        await closed(socket)
      })
    }
  },
  'invalid-frames' (port) {
    for (let i = 0; i < 16; i++) {
      loop('invalid-frames', async () => {
        const socket = await open(port, '/echo', { websocket: true })
        socket.resume()
        socket.write(UNMASKED)
        await closed(socket)
      })
    }
  }
}

process.on('message', async (/** @type {any} */ message) => {
  if (message.cmd === 'start') {
    state.stopped = false
    counts = {}
    for (const name of message.attacks) attacks[name]?.(message.port)
    process.send?.({ started: true })
  } else if (message.cmd === 'stop') {
    state.stopped = true
    for (const socket of sockets) socket.destroy()
    await Promise.race([Promise.all(loops), sleep(5000)])
    loops = []
    process.send?.({ stopped: true, counts })
  }
})
process.on('disconnect', () => process.exit(0))
process.send?.({ ready: true })
