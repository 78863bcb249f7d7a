// @ts-check
// The phases of `npm run soak` at the limit of the machine (bench/soak.mjs runs them first):
//
// Limit: as many connections as one server process can hold: the hard limit of open files
// (`ulimit -Hn`), less the descriptors the server holds before any connection and a margin
// (FD_MARGIN). Half SSE, half WebSocket, each subscribed to one topic and confirmed by the server
// (bench/soak-server.mjs, its defaults: heartbeats on, answered by the clients). The load generator
// is split over as many processes (bench/soak-clients.mjs) as the same limit requires, each binding
// its sockets to source addresses of its own (127.0.0.2 and up), enough that the ephemeral port
// range (`ip_local_port_range`) covers its connections several times over, TIME_WAIT included.
// Measured: heap and RSS per connection after a full GC; EVENTS_AT_LIMIT events published one at a
// time, each reaching every connection (time from the publish to the last arrival); every client's
// count (none lost, none twice); the heap after every client left, against the baseline (10 MB).
//
// Curve: per transport, fastify-realtime next to the bare peer (SSE: a `node:http` route; WebSocket:
// `@fastify/websocket`), each a server of bench/servers/ (the bench's own, harness.mjs). One process
// per implementation: a warm-up (WARM_UP: connections that publish enough events to fill
// fastify-realtime's history, then leave), its baseline, then it grows through 1,000, 5,000, 10,000
// connections and the limit above; at each: heap and RSS per connection after a full GC, TIMES_TO_ALL single events timed
// to the last connection (p50, max), and a window of about WINDOW_DELIVERIES deliveries published
// as fast as backpressure allows (publishes/s sustained, server CPU per million deliveries). Then
// every client leaves and the server's memory is compared with its baseline.

import { readFileSync } from 'node:fs'
import { Fleet, Server, limits, openFiles, pinned } from './soak-processes.mjs'
import { quantile, spawnServer, within } from './util.mjs'

const MB = 1024 * 1024
/** Descriptors a server may need beyond those it holds at start (a log file, a DNS lookup, a stray accept). */
const FD_MARGIN = 100
/** Descriptors a load generator process keeps free of clients (its own, the IPC channel, slack). */
const CLIENT_FD_HEADROOM = 1000
const EVENTS_AT_LIMIT = 5
const TIMES_TO_ALL = 7
const WINDOW_DELIVERIES = 1_000_000
const WARM_UP = { connections: 100, events: 11000 }
const MEMORY_LIMIT_MB = 10
/** How many times the source addresses' ports must cover one process's clients (TIME_WAIT of earlier runs). */
const PORT_COVER = 6

const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The ephemeral port range's size (`net.ipv4.ip_local_port_range`), 28,232 where /proc cannot tell. */
function portsPerAddress () {
  try {
    const [low = 32768, high = 60999] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    return high - low + 1
  } catch {
    return 28232
  }
}

/**
 * The kernel's memory that grows with sockets, machine-wide (every process's, both ends of a
 * loopback connection): slab (socket, inode, file and epoll objects) and TCP buffer pages.
 */
function kernelMemory () {
  try {
    const meminfo = readFileSync('/proc/meminfo', 'utf8')
    const slab = Number(/^Slab:\s+(\d+) kB/m.exec(meminfo)?.[1]) * 1024
    const sockstat = readFileSync('/proc/net/sockstat', 'utf8')
    const tcpPages = Number(/^TCP:.* mem (\d+)/m.exec(sockstat)?.[1])
    return { slab, tcpBuffers: tcpPages * 4096 }
  } catch {
    return { slab: NaN, tcpBuffers: NaN }
  }
}

/**
 * How the run is sized from the file limit.
 * @param {number} serverFiles descriptors the server holds with no connection
 * @param {boolean} quick
 */
export function plan (serverFiles, quick) {
  const headroom = serverFiles + FD_MARGIN
  let connections = Math.floor((limits.hard - headroom) / 2) * 2
  if (quick) connections = Math.floor(connections / 20) * 2
  const perProcess = limits.hard - CLIENT_FD_HEADROOM
  const processes = Math.max(1, Math.ceil(connections / perProcess))
  const ports = portsPerAddress()
  const addressesEach = Math.max(1, Math.ceil(PORT_COVER * Math.ceil(connections / processes) / ports))
  return { hardLimit: limits.hard, serverFiles, headroom, connections, perProcess, processes, ports, addressesEach }
}

/** @typedef {ReturnType<typeof plan>} Plan */

/**
 * @typedef {object} LimitResult
 * @property {Plan} plan
 * @property {number} connections
 * @property {number} sse
 * @property {number} ws
 * @property {number} openSeconds
 * @property {number} serverFilesOpen descriptors the server held with every connection open
 * @property {number} heapPerConnection bytes
 * @property {number} rssPerConnection bytes
 * @property {number} kernelPerConnection bytes of slab per connection, both ends, machine-wide
 * @property {number} tcpBuffersPerConnection bytes of TCP buffers per connection at their peak while one event was on its way (both ends)
 * @property {number} heapMB
 * @property {number} rssMB
 * @property {number[]} timesToAll ms, one per event, from the publish to its arrival at the last client
 * @property {number[]} timesWritten ms, one per event, from the publish until the server had written it to every socket
 * @property {number} events published
 * @property {number} delivered
 * @property {number} lost
 * @property {number} duplicated connections that counted an event more than once
 * @property {number} baseHeapMB
 * @property {number} afterHeapMB
 * @property {number} heapDeltaMB
 * @property {number} rssDeltaMB
 */

/**
 * Starts the load generator sized for the run: its processes and their source addresses.
 * @param {Plan} sized
 */
export function startFleet (sized) {
  return Fleet.start(sized.connections, sized.perProcess, sized.addressesEach)
}

/**
 * Measures a server's descriptors with no connection open, for {@link plan}.
 */
export async function measureServerFiles () {
  const server = await Server.start()
  try {
    return openFiles(server.pid)
  } finally {
    await server.close()
  }
}

/**
 * @param {Plan} sized
 * @param {Fleet} fleet
 * @param {(line: string) => void} log
 * @returns {Promise<LimitResult>}
 */
export async function limitPhase (sized, fleet, log) {
  const total = sized.connections
  const half = total / 2
  log(`\nphase 1: ${total.toLocaleString('en-US')} connections at the limit (${half} SSE, ${half} WebSocket): hard limit ${sized.hardLimit}, the server holds ${sized.serverFiles} descriptors before any connection, ${FD_MARGIN} more kept free; ${sized.processes} load generator processes, ${sized.addressesEach} source addresses each`)
  const server = await Server.start()
  try {
    const sse = { kind: /** @type {const} */ ('sse'), port: server.port, path: '/sse?topic=limit', marker: '"n":', ready: ': subscribed' }
    const ws = { kind: /** @type {const} */ ('ws'), port: server.port, path: '/ws?topic=limit', marker: '"n":', ready: '"event":"ready"' }
    // Warm-up: code paths compiled, pools allocated, before the baseline.
    await fleet.open({ ...sse, path: '/sse?topic=warm', count: 100 })
    await fleet.open({ ...ws, path: '/ws?topic=warm', count: 100 })
    await fleet.closeAll()
    await server.drained()
    const base = await server.stats(true)
    const kernelBase = kernelMemory()
    const openSeconds = await fleet.open({ ...sse, count: half }) + await fleet.open({ ...ws, count: half })
    const open = await server.stats(false)
    if (open.sse !== half || open.ws !== half) throw new Error(`the server counts ${open.sse} SSE and ${open.ws} WebSocket connections, expected ${half} each`)
    const serverFilesOpen = openFiles(server.pid)
    const loaded = await server.stats(true)
    const kernelLoaded = kernelMemory()
    const heapPerConnection = (loaded.heapUsed - base.heapUsed) / total
    const rssPerConnection = (loaded.rss - base.rss) / total
    const kernelPerConnection = (kernelLoaded.slab - kernelBase.slab) / total
    log(`  all ${total} confirmed in ${openSeconds.toFixed(1)} s; the server holds ${serverFilesOpen} descriptors of ${sized.hardLimit}; heap ${(loaded.heapUsed / MB).toFixed(1)} MB, RSS ${(loaded.rss / MB).toFixed(1)} MB`)
    log(`  per connection: ${heapPerConnection.toFixed(0)} bytes of heap, ${rssPerConnection.toFixed(0)} bytes of RSS; kernel slab ${kernelPerConnection.toFixed(0)} bytes (both ends, machine-wide)`)
    /** @type {number[]} */
    const timesToAll = []
    /** @type {number[]} */
    const timesWritten = []
    // The kernel's TCP buffer pages at their peak while the events are on their way.
    let peakTcpBuffers = 0
    const sampler = setInterval(() => { peakTcpBuffers = Math.max(peakTcpBuffers, kernelMemory().tcpBuffers) }, 2)
    try {
      for (let n = 1; n <= EVENTS_AT_LIMIT; n++) {
        const { arrivedMs, writtenMs } = await fleet.timeToAll(n, async () => {
          const { at, ms } = await server.request('publish', { topic: 'limit', count: 1, batch: 1 })
          return { start: at, writtenMs: ms }
        })
        timesToAll.push(arrivedMs)
        timesWritten.push(writtenMs)
      }
    } finally {
      clearInterval(sampler)
    }
    await sleep(200) // anything more than expected would show now
    const counts = await fleet.counts(EVENTS_AT_LIMIT)
    const delivered = counts.total
    const lost = total * EVENTS_AT_LIMIT - Math.min(delivered, total * EVENTS_AT_LIMIT)
    log(`  ${EVENTS_AT_LIMIT} events, one at a time: written to every socket in ${timesWritten.map((ms) => ms.toFixed(0)).join(', ')} ms, at the last client after ${timesToAll.map((ms) => ms.toFixed(0)).join(', ')} ms; ${delivered} deliveries, ${lost} lost, ${counts.over} connections with one too many`)
    await fleet.closeAll()
    await server.drained()
    const after = await server.stats(true)
    const result = {
      plan: sized,
      connections: total,
      sse: half,
      ws: half,
      openSeconds,
      serverFilesOpen,
      heapPerConnection,
      rssPerConnection,
      kernelPerConnection,
      tcpBuffersPerConnection: (peakTcpBuffers - kernelBase.tcpBuffers) / total,
      heapMB: loaded.heapUsed / MB,
      rssMB: loaded.rss / MB,
      timesToAll,
      timesWritten,
      events: EVENTS_AT_LIMIT,
      delivered,
      lost,
      duplicated: counts.over,
      baseHeapMB: base.heapUsed / MB,
      afterHeapMB: after.heapUsed / MB,
      heapDeltaMB: (after.heapUsed - base.heapUsed) / MB,
      rssDeltaMB: (after.rss - base.rss) / MB
    }
    log(`  all gone: heap ${result.afterHeapMB.toFixed(1)} MB against ${result.baseHeapMB.toFixed(1)} MB before (${result.heapDeltaMB >= 0 ? '+' : ''}${result.heapDeltaMB.toFixed(1)} MB), RSS ${result.rssDeltaMB >= 0 ? '+' : ''}${result.rssDeltaMB.toFixed(1)} MB`)
    return result
  } finally {
    await server.close()
  }
}

export { MEMORY_LIMIT_MB }

/**
 * @typedef {object} CurveImplementation
 * @property {string} name
 * @property {string} transport 'SSE' | 'WebSocket'
 * @property {string} server the file of bench/servers/, without .mjs
 * @property {'sse' | 'ws'} kind
 * @property {string} path
 */

/** @type {CurveImplementation[]} */
export const CURVE_IMPLEMENTATIONS = [
  { name: 'fastify-realtime', transport: 'SSE', server: 'sse-realtime', kind: 'sse', path: '/events' },
  { name: 'node:http', transport: 'SSE', server: 'sse-raw', kind: 'sse', path: '/events' },
  { name: 'fastify-realtime', transport: 'WebSocket', server: 'ws-realtime', kind: 'ws', path: '/ws' },
  { name: '@fastify/websocket', transport: 'WebSocket', server: 'ws-fastify', kind: 'ws', path: '/ws' }
]

/**
 * @typedef {object} CurvePoint
 * @property {number} connections
 * @property {number} heapPerConnection bytes, after a full GC, minus the baseline, divided by connections
 * @property {number} rssPerConnection bytes
 * @property {number[]} timesToAll ms
 * @property {number} timeToAllP50 ms
 * @property {number} timeToAllMax ms
 * @property {number[]} timesWritten ms, from the publish until the server had written the event to every socket
 * @property {number} writtenP50 ms
 * @property {number} writtenMax ms
 * @property {number} windowEvents events of the throughput window
 * @property {number} publishesPerSecond events/s, each to every connection
 * @property {number} deliveriesPerSecond
 * @property {number} cpuSecondsPerMillion server CPU per million deliveries in the window
 */

/**
 * @typedef {object} CurveResult
 * @property {CurveImplementation} implementation
 * @property {CurvePoint[]} points
 * @property {number} baseHeapMB
 * @property {number} baseRssMB
 * @property {number} afterHeapMB after every client left
 * @property {number} afterRssMB
 */

/**
 * The sizes of the curve: 1,000, 5,000, 10,000 and the limit (a tenth with --quick).
 * @param {Plan} sized
 * @param {boolean} quick
 */
export function curveSizes (sized, quick) {
  const sizes = quick ? [100, 500, 1000] : [1000, 5000, 10000]
  return [...sizes.filter((size) => size < sized.connections), sized.connections]
}

/**
 * Waits until a harness server counts `subscribers` and holds `sockets` sockets.
 * @param {import('./util.mjs').ServerProcess} server
 * @param {number} count
 */
async function settle (server, count) {
  const deadline = Date.now() + 60000
  for (;;) {
    const { subscribers, sockets } = await server.request({ cmd: 'count' })
    if (subscribers === count && sockets === count) return
    if (Date.now() > deadline) throw new Error(`the server counts ${subscribers} subscribers and ${sockets} sockets, expected ${count}`)
    await sleep(50)
  }
}

/**
 * One implementation's curve.
 * @param {CurveImplementation} impl
 * @param {number[]} sizes
 * @param {Fleet} fleet
 * @param {(line: string) => void} log
 * @returns {Promise<CurveResult>}
 */
async function curveOf (impl, sizes, fleet, log) {
  const server = await spawnServer(impl.server, { cpu: pinned ? 1 : undefined, fileLimit: limits.hard, env: { BENCH_BATCH: '16' } })
  try {
    const options = { kind: impl.kind, port: server.port, path: impl.path, marker: '"seq":' }
    // Warm-up: code paths compiled, V8's young generation grown to what publishing keeps it at, and
    // fastify-realtime's history (memoryBroker's 10,000 events) full, so none of that counts as
    // the connections' memory.
    await fleet.open({ ...options, count: WARM_UP.connections })
    await settle(server, WARM_UP.connections)
    await fleet.timeToAll(WARM_UP.events, () => server.request({ cmd: 'publish', from: 0, count: WARM_UP.events }, 600000))
    await server.request({ cmd: 'stop' })
    await fleet.closeAll()
    await settle(server, 0)
    const base = await server.request({ cmd: 'memory' })
    let seq = WARM_UP.events
    /** @type {CurvePoint[]} */
    const points = []
    for (const size of sizes) {
      await fleet.open({ ...options, count: size - (points.at(-1)?.connections ?? 0) })
      await settle(server, size)
      const memory = await server.request({ cmd: 'memory' })
      // Counted from here by every client, those that just joined included.
      await fleet.reset()
      let received = 0
      /** @type {number[]} */
      const timesToAll = []
      /** @type {number[]} */
      const timesWritten = []
      for (let i = 0; i < TIMES_TO_ALL; i++) {
        // No full GC before these: its concurrent sweeping would share the server's one core with the fan-out.
        const { arrivedMs, writtenMs } = await fleet.timeToAll(received + 1, async () => {
          const { start, publishMs } = await server.request({ cmd: 'publish', from: seq, count: 1, gc: false })
          return { start, writtenMs: publishMs }
        })
        timesToAll.push(arrivedMs)
        timesWritten.push(writtenMs)
        seq += 1
        received += 1
        await server.request({ cmd: 'stop' })
      }
      const windowEvents = Math.max(16, Math.round(WINDOW_DELIVERIES / size))
      const { arrivedMs: wallMs } = await fleet.timeToAll(received + windowEvents, () => server.request({ cmd: 'publish', from: seq, count: windowEvents }, 600000))
      seq += windowEvents
      received += windowEvents
      const { cpuMs } = await server.request({ cmd: 'stop' })
      await sleep(100) // anything more than expected would show now
      const counts = await fleet.counts(received)
      if (counts.short + counts.over > 0) throw new Error(`${counts.short} connections missed events and ${counts.over} got too many (after ${received} events)`)
      const point = {
        connections: size,
        heapPerConnection: (memory.heapUsed - base.heapUsed) / size,
        rssPerConnection: (memory.rss - base.rss) / size,
        timesToAll,
        timeToAllP50: quantile(timesToAll, 0.5),
        timeToAllMax: Math.max(...timesToAll),
        timesWritten,
        writtenP50: quantile(timesWritten, 0.5),
        writtenMax: Math.max(...timesWritten),
        windowEvents,
        publishesPerSecond: windowEvents / (wallMs / 1000),
        deliveriesPerSecond: windowEvents * size / (wallMs / 1000),
        cpuSecondsPerMillion: cpuMs / 1000 / (windowEvents * size) * 1e6
      }
      points.push(point)
      log(`  ${impl.transport} ${impl.name}, ${size.toLocaleString('en-US')} connections: heap ${point.heapPerConnection.toFixed(0)} B, RSS ${point.rssPerConnection.toFixed(0)} B per connection; one event written to all p50 ${point.writtenP50.toFixed(1)} ms (max ${point.writtenMax.toFixed(1)}), at the last client p50 ${point.timeToAllP50.toFixed(1)} ms (max ${point.timeToAllMax.toFixed(1)}); ${point.publishesPerSecond.toFixed(0)} publishes/s (${Math.round(point.deliveriesPerSecond).toLocaleString('en-US')} deliveries/s, ${point.cpuSecondsPerMillion.toFixed(2)} CPU s / 1M)`)
    }
    await fleet.closeAll()
    await settle(server, 0)
    const after = await server.request({ cmd: 'memory' })
    const result = { implementation: impl, points, baseHeapMB: base.heapUsed / MB, baseRssMB: base.rss / MB, afterHeapMB: after.heapUsed / MB, afterRssMB: after.rss / MB }
    log(`  ${impl.transport} ${impl.name}, all gone: heap ${result.afterHeapMB.toFixed(1)} MB (baseline ${result.baseHeapMB.toFixed(1)}), RSS ${result.afterRssMB.toFixed(1)} MB (baseline ${result.baseRssMB.toFixed(1)})`)
    return result
  } finally {
    await within(server.stop(), 15000, `the exit of ${impl.server}`).catch(() => {})
  }
}

/**
 * @param {Plan} sized
 * @param {Fleet} fleet
 * @param {boolean} quick
 * @param {(line: string) => void} log
 * @returns {Promise<CurveResult[]>}
 */
export async function curvePhase (sized, fleet, quick, log) {
  const sizes = curveSizes(sized, quick)
  log(`\nphase 2: the growth curve at ${sizes.map((size) => size.toLocaleString('en-US')).join(', ')} connections, fastify-realtime next to node:http (SSE) and @fastify/websocket`)
  /** @type {CurveResult[]} */
  const results = []
  for (const impl of CURVE_IMPLEMENTATIONS) results.push(await curveOf(impl, sizes, fleet, log))
  return results
}
