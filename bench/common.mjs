// @ts-check
// What the transport suites (sse-fanout, ws-fanout, ws-echo, idle-memory) share on the driver side:
// - options (`--reps=N`, `--quick`), medians, quantiles, the Markdown table, results as JSON;
// - server processes: one per (implementation, repetition), spawned with `taskset -c 1` when pinning
//   is available (this driver runs on CPU 0), `--expose-gc`, talking over IPC (bench/servers/harness.mjs
//   documents the commands); every request to a server has a deadline;
// - the load generator's clients: raw `node:net` sockets with a hand-written HTTP request or
//   WebSocket upgrade (client frames masked with a zero key, which RFC 6455 allows), counting
//   messages by scanning the received bytes for a marker, no parser on the hot path. A few clients
//   also read the sequence number and send time after the marker to sample delivery latency.

import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { quantile, root, spawnServer, within } from './util.mjs'

export { quantile, root, within }

const args = new Map(process.argv.slice(2).map((arg) => {
  const [key = '', value = 'true'] = arg.replace(/^--/, '').split('=')
  return [key, value]
}))
export const quick = args.has('quick')
export const REPS = Number(args.get('reps') ?? (quick ? 2 : 5))
if (!Number.isInteger(REPS) || REPS < 1) throw new Error(`--reps must be a positive integer, got ${args.get('reps')}`)
/** Events a fan-out server publishes per tick (between two setImmediate); `--batch=1` publishes one per tick. */
export const BATCH = Number(args.get('batch') ?? 16)
if (!Number.isInteger(BATCH) || BATCH < 1) throw new Error(`--batch must be a positive integer, got ${args.get('batch')}`)

/**
 * `--baseline=<dir>`: another checkout of fastify-realtime, built (its dist/), whose servers run next
 * to this tree's in the same session, e.g. the previous release or main: `git worktree add /tmp/base
 * main && (cd /tmp/base && npm ci && npm run build)`, then `npm run bench -- --baseline=/tmp/base`.
 */
export const BASELINE = args.has('baseline') ? resolve(String(args.get('baseline'))) : undefined
const baselineEntry = BASELINE === undefined ? undefined : `${BASELINE}/dist/esm/index.js`
if (baselineEntry !== undefined && !existsSync(baselineEntry)) {
  throw new Error(`--baseline: no ${baselineEntry}; build that checkout first (npm run build in ${BASELINE})`)
}

/**
 * With `--baseline`, each fastify-realtime implementation twice: as built from this tree, then from
 * the baseline checkout (named "<name> (baseline)"). Without it, the list as it is.
 * @template {{ name: string, server: string }} T
 * @param {T[]} implementations
 * @returns {Array<T & { baseline?: boolean }>}
 */
export function withBaseline (implementations) {
  if (BASELINE === undefined) return implementations
  return implementations.flatMap((impl) => impl.server.endsWith('-realtime')
    ? [impl, { ...impl, name: `${impl.name} (baseline)`, baseline: true }]
    : [impl])
}

/**
 * `--only=a,b`: the implementations (files of bench/servers/, without .mjs) a suite runs, for a
 * profile or a quick look; the baseline and ceiling run too when a ratio needs them. All when absent.
 */
export const ONLY = args.get('only')?.split(',')

/** Absolute time in ms, comparable across the processes of this machine. */
export const clock = () => performance.timeOrigin + performance.now()

export const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ---- statistics and output ----

/** @param {number[]} values */
export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  if (sorted.length === 0) return NaN
  return sorted.length % 2 === 1 ? (sorted[middle] ?? NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

/** @param {number} value @param {number} [digits] */
export const fixed = (value, digits = 0) => Number.isFinite(value)
  ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
  : '-'

/** @param {number[]} values @param {number} [digits] */
export const spread = (values, digits = 0) => `${fixed(Math.min(...values), digits)}-${fixed(Math.max(...values), digits)}`

/**
 * A Markdown table: the first column left-aligned, the others right-aligned.
 * @param {string[][]} rows the header first
 */
export function table (rows) {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)))
  const line = (/** @type {string[]} */ row) =>
    `| ${row.map((cell, column) => column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)).join(' | ')} |`
  const rule = `|${widths.map((width, column) => column === 0 ? '-'.repeat(width + 2) : `${'-'.repeat(width + 1)}:`).join('|')}|`
  return [line(rows[0] ?? []), rule, ...rows.slice(1).map(line)].join('\n')
}

/**
 * The version of an installed package, read from its package.json (not every package exports it).
 * @param {string} name
 */
export function packageVersion (name) {
  try {
    const own = JSON.parse(readFileSync(`${root}package.json`, 'utf8'))
    if (name === own.name) return own.version
    return JSON.parse(readFileSync(`${root}node_modules/${name}/package.json`, 'utf8')).version
  } catch {
    return undefined
  }
}

/**
 * What the results are worth knowing alongside: machine, Node, pinning, and the versions of the peers.
 * @param {string[]} packages
 */
export function machineInfo (packages) {
  return {
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    platform: `${os.platform()} ${os.release()}`,
    loadavg: os.loadavg().map((value) => Math.round(value * 100) / 100),
    pinned: pinning ? 'driver on CPU 0, servers on CPU 1' : 'no (taskset missing or one core)',
    packages: Object.fromEntries(packages.map((name) => [name, packageVersion(name)])),
    // The library is measured as built from this tree: its commit, and whether lib/ had changes on top.
    commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).stdout.trim(),
    libChanged: spawnSync('git', ['status', '--porcelain', 'lib'], { cwd: root, encoding: 'utf8' }).stdout.trim() !== '',
    ...(BASELINE === undefined
      ? {}
      : { baseline: { dir: BASELINE, commit: spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: BASELINE, encoding: 'utf8' }).stdout.trim() } })
  }
}

/**
 * Writes bench/results/<suite>-<time>.json; returns its path.
 * @param {string} suite
 * @param {object} data
 */
export function writeResults (suite, data) {
  mkdirSync(new URL('results/', import.meta.url), { recursive: true })
  const file = new URL(`results/${suite}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url)
  writeFileSync(file, JSON.stringify({ suite, date: new Date().toISOString(), ...data }, null, 2) + '\n')
  return file.pathname
}

// ---- server processes ----

/**
 * True when the driver and the servers can be pinned to two different cores. (The machine's count
 * of CPUs: availableParallelism() counts those of this process's affinity, one once run.mjs pinned it.)
 */
export const pinning = os.cpus().length > 1 && spawnSync('taskset', ['-c', '1', 'true']).status === 0

// Run directly (not through `npm run bench`): pin this driver and its threads to CPU 0 all the same.
if (pinning && process.env.BENCH_PINNED === undefined) {
  spawnSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' })
}

/**
 * Starts a server of bench/servers/ (pinned to CPU 1 when possible) and waits for its port. A
 * server that does not start is tried once more after a second (dist/ may have been in the middle
 * of a rebuild); a second failure is final.
 * @param {string} name the file name without .mjs, e.g. 'sse-raw'
 * @param {{ baseline?: boolean }} [impl] with `baseline`, the server loads the --baseline checkout's build
 * @returns {Promise<import('./util.mjs').ServerProcess>}
 */
export async function startServer (name, { baseline = false } = {}) {
  /** @type {Record<string, string>} */
  const env = { BENCH_BATCH: String(BATCH) }
  if (baseline && baselineEntry !== undefined) env.BENCH_REALTIME = pathToFileURL(baselineEntry).href
  const options = { cpu: pinning ? 1 : undefined, env }
  try {
    return await spawnServer(name, options)
  } catch (err) {
    console.error(`  (${/** @type {Error} */ (err).message}; trying once more)`)
    await sleep(1000)
    return spawnServer(name, options)
  }
}

// ---- clients ----

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

/**
 * The bytes of a masked client text frame with a zero mask key (the payload goes out as it is).
 * @param {string} text
 */
export function clientFrame (text) {
  const payload = Buffer.from(text)
  const length = payload.length
  if (length < 126) return Buffer.concat([Buffer.from([0x81, 0x80 | length, 0, 0, 0, 0]), payload])
  if (length < 65536) return Buffer.concat([Buffer.from([0x81, 0x80 | 126, length >> 8, length & 0xff, 0, 0, 0, 0]), payload])
  throw new Error('frame too large for the bench client')
}

/**
 * Opens a raw TCP connection, writes `head`, and resolves once the first bytes arrive: `onData`
 * gets every chunk (the first included). Rejects on error, on close before any byte, or after 10 s.
 * @param {number} port
 * @param {string} head the request, written at once
 * @param {(chunk: Buffer, socket: net.Socket) => void} onData
 * @param {(chunk: Buffer) => boolean} [isReady] whether the bytes so far confirm the connection (default: any byte)
 * @returns {Promise<net.Socket>}
 */
export function rawConnect (port, head, onData, isReady = () => true) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true })
    let ready = false
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`no answer from 127.0.0.1:${port} within 10 s`))
    }, 10000)
    socket.on('connect', () => socket.write(head))
    socket.on('data', (chunk) => {
      onData(chunk, socket)
      if (!ready && isReady(chunk)) {
        ready = true
        clearTimeout(timer)
        resolve(socket)
      }
    })
    socket.on('error', (err) => {
      clearTimeout(timer)
      if (!ready) reject(err)
    })
    socket.on('close', () => {
      clearTimeout(timer)
      if (!ready) reject(new Error(`127.0.0.1:${port} closed the connection before answering`))
    })
  })
}

/** @param {number} port @param {string} path */
export const sseRequest = (port, path) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n`

/** @param {number} port @param {string} path */
export const upgradeRequest = (port, path) =>
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${KEY}\r\n\r\n`

export const SOCKET_IO_PATH = '/socket.io/?EIO=4&transport=websocket'
// Engine.IO over WebSocket: the server opens with `0{...}` and pings with `2` (a text frame of one
// byte: 0x81 0x01 0x32, which cannot occur inside JSON text); the client answers `3`. `40` joins
// the default namespace, answered by `40{"sid":...}`.
const EIO_PING = Buffer.from([0x81, 0x01, 0x32])
const EIO_PONG = clientFrame('3')
const EIO_JOIN = clientFrame('40')
const EIO_JOINED = Buffer.from('40{')

/**
 * Answers Engine.IO pings found in a chunk (a ping split across two chunks is missed; the next one is not).
 * @param {Buffer} chunk
 * @param {net.Socket} socket
 */
export function answerEioPings (chunk, socket) {
  if (chunk.indexOf(EIO_PING) !== -1) socket.write(EIO_PONG)
}

/**
 * A client of one implementation, confirmed connected (SSE: response head; WS: 101; socket.io:
 * joined the default namespace). Every chunk, the handshake's included, goes to `onData`.
 * @param {'sse' | 'ws' | 'socket.io'} protocol
 * @param {number} port
 * @param {string} path ignored for socket.io
 * @param {(chunk: Buffer, socket: net.Socket) => void} onData
 */
export async function openClient (protocol, port, path, onData) {
  if (protocol === 'sse') return rawConnect(port, sseRequest(port, path), onData)
  if (protocol === 'ws') return rawConnect(port, upgradeRequest(port, path), onData)
  let joined = false
  let joinSent = false
  let received = Buffer.alloc(0)
  return rawConnect(port, upgradeRequest(port, SOCKET_IO_PATH), (chunk, socket) => {
    if (!joined) {
      // The handshake is short: look for `0{` (open) then `40{` (joined) in what came so far.
      received = Buffer.concat([received, chunk])
      if (!joinSent && received.indexOf('\r\n\r\n') !== -1 && received.indexOf('0{"sid"') !== -1) {
        joinSent = true
        socket.write(EIO_JOIN)
      }
      if (received.indexOf(EIO_JOINED) !== -1) joined = true
    } else {
      answerEioPings(chunk, socket)
    }
    onData(chunk, socket)
  }, () => joined)
}

/**
 * Opens `count` clients, at most `parallel` handshakes at a time.
 * @param {number} count
 * @param {number} parallel
 * @param {(index: number) => Promise<net.Socket>} open
 */
export async function openMany (count, parallel, open) {
  /** @type {net.Socket[]} */
  const sockets = new Array(count)
  let nextIndex = 0
  async function worker () {
    while (nextIndex < count) {
      const index = nextIndex++
      sockets[index] = await open(index)
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker))
  } catch (err) {
    for (const socket of sockets) socket?.destroy()
    throw err
  }
  return sockets
}

/**
 * Waits until the server reports `count` subscribers (a connection is counted once it is subscribed
 * or registered, which the response bytes alone do not prove for every implementation).
 * @param {import('./util.mjs').ServerProcess} server
 * @param {number} count
 */
export async function waitSubscribers (server, count) {
  const deadline = Date.now() + 15000
  for (;;) {
    const { subscribers } = await server.request({ cmd: 'count' })
    if (subscribers === count) return
    if (Date.now() > deadline) throw new Error(`the server has ${subscribers} subscribers, expected ${count}`)
    await sleep(20)
  }
}

/**
 * Counts the occurrences of `marker` in a stream of chunks, including one split across two chunks.
 * @param {Buffer} marker
 */
export function markerCounter (marker) {
  const overlap = marker.length - 1
  /** @type {Buffer} */
  let tail = Buffer.alloc(0)
  return {
    count: 0,
    /** @param {Buffer} chunk */
    add (chunk) {
      let found = 0
      for (let at = chunk.indexOf(marker); at !== -1; at = chunk.indexOf(marker, at + marker.length)) found++
      if (tail.length > 0) {
        // A match that straddles the boundary starts in the tail and ends in the chunk's head.
        const seam = Buffer.concat([tail, chunk.subarray(0, overlap)])
        for (let at = seam.indexOf(marker); at !== -1; at = seam.indexOf(marker, at + 1)) {
          if (at < tail.length && at + marker.length > tail.length) found++
        }
      }
      tail = chunk.length >= overlap ? chunk.subarray(chunk.length - overlap) : Buffer.concat([tail, chunk]).subarray(-overlap)
      this.count += found
      return found
    }
  }
}

const SEQ = Buffer.from('"seq":')
const TS = Buffer.from(',"ts":')

/** @param {number} code */
const isNumberChar = (code) => (code >= 48 && code <= 57) || code === 46 || code === 101 || code === 69 || code === 43 || code === 45

/**
 * A counter of events that also reads `"seq":<n>,"ts":<ms>` after each marker: it records the
 * delivery latency (receive time - ts, in ms) of the events whose seq is a multiple of `every` and
 * at least `from` (both can be changed between windows), and counts events that arrive out of order. For the few sampled clients only:
 * it copies what straddles two chunks.
 * @param {number} every
 */
export function sampledCounter (every) {
  /** @type {Buffer} */
  let rest = Buffer.alloc(0)
  return {
    count: 0,
    from: 0,
    every,
    lastSeq: -1,
    outOfOrder: 0,
    /** @type {number[]} */
    latencies: [],
    /** @param {Buffer} chunk */
    add (chunk) {
      const now = clock()
      const data = rest.length > 0 ? Buffer.concat([rest, chunk]) : chunk
      let found = 0
      let keepFrom = Math.max(0, data.length - (SEQ.length - 1))
      for (let at = data.indexOf(SEQ); at !== -1;) {
        let p = at + SEQ.length
        let seq = 0
        while (p < data.length && (data[p] ?? 0) >= 48 && (data[p] ?? 0) <= 57) seq = seq * 10 + (data[p++] ?? 0) - 48
        const tsStart = p + TS.length
        let end = tsStart
        while (end < data.length && isNumberChar(data[end] ?? 0)) end++
        if (end >= data.length) { // cut in the middle: finish it with the next chunk
          keepFrom = at
          break
        }
        if (seq % this.every === 0 && seq >= this.from && data.subarray(p, tsStart).equals(TS)) {
          this.latencies.push(now - Number(data.toString('latin1', tsStart, end)))
        }
        if (seq <= this.lastSeq) this.outOfOrder++
        this.lastSeq = seq
        found++
        at = data.indexOf(SEQ, end)
        if (at === -1) keepFrom = Math.max(end, data.length - (SEQ.length - 1))
      }
      rest = data.subarray(keepFrom)
      this.count += found
      return found
    }
  }
}

/**
 * Waits until `done()` or fails when `progress()` has not moved for `stallMs`.
 * @param {() => boolean} done
 * @param {() => number} progress
 * @param {number} stallMs
 * @param {() => string} describe what to say when it stalls
 */
export async function until (done, progress, stallMs, describe) {
  let seen = progress()
  let since = Date.now()
  while (!done()) {
    await sleep(done() ? 0 : 2)
    const now = progress()
    if (now !== seen) {
      seen = now
      since = Date.now()
    } else if (Date.now() - since > stallMs) {
      throw new Error(`stalled for ${stallMs} ms: ${describe()}`)
    }
  }
}
