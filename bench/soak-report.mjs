// @ts-check
// The parts of docs/soak.md that come from the phases at the limit (bench/soak-limit.mjs): the
// limit table, the growth curve's table and checks, its chart (docs/soak-curve.svg, drawn by
// vega-lite and vega from a spec, as SVG, in Node), and the projection to 100,000 and 1,000,000
// connections with the system settings they need (read from this machine's /proc where it has them).

import { readFileSync, writeFileSync } from 'node:fs'
import { getHeapStatistics } from 'node:v8'
import * as vega from 'vega'
import { compile } from 'vega-lite'

const MB = 1024 * 1024
/** Per-connection cost may grow this much from the smallest size of the curve to the limit. */
const FLAT_TOLERANCE = 0.1
const PROJECTIONS = [100_000, 1_000_000]

/** @param {number | undefined} value @param {number} [digits] */
export const fmt = (value, digits = 0) => value === undefined || !Number.isFinite(value)
  ? '-'
  : value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

/** @param {number[]} values the median (the lower of the two middle values) */
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)] ?? NaN

/** @param {number} ratio */
const percent = (ratio) => `${ratio >= 0 ? '+' : ''}${fmt(ratio * 100, 1)}%`

/** @param {string} path */
function readProc (path) {
  try {
    return readFileSync(path, 'utf8').trim().replace(/\s+/g, ' ')
  } catch {
    return undefined
  }
}

/**
 * @param {import('./soak-limit.mjs').LimitResult | undefined} limit
 * @returns {string[]}
 */
export function limitSection (limit) {
  const lines = ['## 1. At the limit: one server process, as many connections as its file limit allows', '']
  if (limit === undefined) return [...lines, 'Failed or not run.', '']
  const { plan } = limit
  const p50 = median(limit.timesToAll)
  lines.push(
    '| | |',
    '|---|---|',
    `| hard limit of open files (\`ulimit -Hn\`) | ${fmt(plan.hardLimit)} |`,
    `| descriptors the server holds before any connection, and a margin | ${fmt(plan.serverFiles)} + ${fmt(plan.headroom - plan.serverFiles)} |`,
    `| **connections held at once** | **${fmt(limit.connections)}** (${fmt(limit.sse)} SSE, ${fmt(limit.ws)} WebSocket, each subscribed to one topic): **${fmt(limit.connections / plan.hardLimit * 100, 1)}% of the file limit** |`,
    `| descriptors the server held with all of them open | ${fmt(limit.serverFilesOpen)} |`,
    `| load generator | ${plan.processes} processes of at most ${fmt(plan.perProcess)} connections each, ${plan.addressesEach} source addresses each (127.0.0.2 and up; ${fmt(plan.ports)} ephemeral ports per address) |`,
    `| opened and confirmed in | ${fmt(limit.openSeconds, 1)} s |`,
    `| server heap / RSS with all of them open | ${fmt(limit.heapMB, 1)} MB / ${fmt(limit.rssMB, 1)} MB |`,
    `| **per connection** (after a full GC, minus the baseline) | **${fmt(limit.heapPerConnection)} bytes of heap, ${fmt(limit.rssPerConnection)} bytes of RSS** |`,
    `| kernel slab per connection (both ends of a loopback connection, machine-wide, so approximate) | ${fmt(limit.kernelPerConnection)} bytes |`,
    `| kernel TCP buffers per connection at their peak while one event was on its way (both ends) | ${fmt(limit.tcpBuffersPerConnection)} bytes |`,
    `| ${limit.events} events published one at a time: time until the server had written each to every socket | ${limit.timesWritten.map((ms) => `${fmt(ms, 1)} ms`).join(', ')} (p50 ${fmt(median(limit.timesWritten), 1)} ms) |`,
    `| the same: time until the last connection had each (the load generator's processes read ${fmt(limit.connections)} sockets on one core) | ${limit.timesToAll.map((ms) => `${fmt(ms)} ms`).join(', ')} (p50 ${fmt(p50)} ms) |`,
    `| deliveries, lost, duplicated | ${fmt(limit.delivered)} of ${fmt(limit.connections * limit.events)}, **${fmt(limit.lost)} lost**, ${fmt(limit.duplicated)} duplicated |`,
    `| server heap after every connection left | ${fmt(limit.afterHeapMB, 1)} MB against ${fmt(limit.baseHeapMB, 1)} MB before them (**${limit.heapDeltaMB >= 0 ? '+' : ''}${fmt(limit.heapDeltaMB, 1)} MB**; RSS ${limit.rssDeltaMB >= 0 ? '+' : ''}${fmt(limit.rssDeltaMB, 1)} MB) |`,
    ''
  )
  return lines
}

/**
 * @param {import('./soak-limit.mjs').CurveResult} result
 */
const seriesName = (result) => `${result.implementation.transport} ${result.implementation.name}`

/**
 * Whether per-connection memory stays within FLAT_TOLERANCE from the smallest size to the largest,
 * and time to all grows no faster than the count of connections.
 * @param {import('./soak-limit.mjs').CurveResult} result
 */
export function curveChecks (result) {
  const first = result.points[0]
  const last = result.points.at(-1)
  if (first === undefined || last === undefined) return { heapGrowth: NaN, rssGrowth: NaN, writtenGrowth: NaN, arrivedGrowth: NaN, flat: false, linear: false }
  const heapGrowth = last.heapPerConnection / first.heapPerConnection - 1
  const rssGrowth = last.rssPerConnection / first.rssPerConnection - 1
  // Time per connection at the limit against at the smallest size: at most 1 is linear or better.
  const writtenGrowth = (last.writtenP50 / last.connections) / (first.writtenP50 / first.connections)
  const arrivedGrowth = (last.timeToAllP50 / last.connections) / (first.timeToAllP50 / first.connections)
  return { heapGrowth, rssGrowth, writtenGrowth, arrivedGrowth, flat: heapGrowth <= FLAT_TOLERANCE, linear: writtenGrowth <= 1 && arrivedGrowth <= 1 }
}

/**
 * @param {import('./soak-limit.mjs').CurveResult[] | undefined} curve
 * @returns {string[]}
 */
export function curveSection (curve) {
  const lines = ['## 2. The growth curve', '']
  if (curve === undefined || curve.length === 0) return [...lines, 'Failed or not run.', '']
  lines.push(
    'Each implementation in a server process of its own (the bench servers of `npm run bench`, their defaults: fastify-realtime\'s heartbeats on, answered by the load generator), warmed up (100 connections and 11,000 events, which fill fastify-realtime\'s history of 10,000 events, then gone), then growing through each size in turn: after a full GC, heap and RSS minus the same before any connection, per connection; 7 single events of 200 bytes, each timed from the publish until the server had written it to every socket (its own work) and until its arrival at the last connection (which also measures the load generator reading every socket on one core; p50 and max); then about 1,000,000 deliveries published as fast as backpressure allows (16 events per tick; the server waits whenever a connection has 256 KiB unsent), giving the publishes per second sustained with every connection subscribed, and the server\'s CPU per million deliveries. fastify-realtime\'s connections are each subscribed to a topic; the peers\' are entries of their own set (`node:http`) or of ws\'s `clients` (`@fastify/websocket`), which their broadcast loops walk.',
    '',
    '![heap and RSS per connection, time for one event to reach every connection, and publishes per second, against the number of connections](soak-curve.svg)',
    '',
    '| transport | implementation | connections | heap / connection | RSS / connection | one event written to all, p50 / max | at the last connection, p50 / max | publishes/s | deliveries/s | CPU s / 1M deliveries |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|'
  )
  for (const result of curve) {
    for (const point of result.points) {
      lines.push(`| ${result.implementation.transport} | ${result.implementation.name} | ${fmt(point.connections)} | ${fmt(point.heapPerConnection)} B | ${fmt(point.rssPerConnection)} B | ${fmt(point.writtenP50, 1)} / ${fmt(point.writtenMax, 1)} ms | ${fmt(point.timeToAllP50, 1)} / ${fmt(point.timeToAllMax, 1)} ms | ${fmt(point.publishesPerSecond)} | ${fmt(point.deliveriesPerSecond)} | ${fmt(point.cpuSecondsPerMillion, 3)} |`)
    }
  }
  lines.push('', '**fastify-realtime against the peer at each size** (ratios of the figures above; memory and time: lower is better, under 1.00x is less than the peer; publishes/s: higher is better):', '',
    '| transport | connections | heap | RSS | one event written to all (p50) | at the last connection (p50) | publishes/s |',
    '|---|---:|---:|---:|---:|---:|---:|')
  for (const transport of ['SSE', 'WebSocket']) {
    const ours = curve.find((result) => result.implementation.transport === transport && result.implementation.name === 'fastify-realtime')
    const peer = curve.find((result) => result.implementation.transport === transport && result.implementation.name !== 'fastify-realtime')
    if (ours === undefined || peer === undefined) continue
    for (const [i, point] of ours.points.entries()) {
      const other = peer.points[i]
      if (other === undefined) continue
      lines.push(`| ${transport} (vs ${peer.implementation.name}) | ${fmt(point.connections)} | ${fmt(point.heapPerConnection / other.heapPerConnection, 2)}x | ${fmt(point.rssPerConnection / other.rssPerConnection, 2)}x | ${fmt(point.writtenP50 / other.writtenP50, 2)}x | ${fmt(point.timeToAllP50 / other.timeToAllP50, 2)}x | ${fmt(point.publishesPerSecond / other.publishesPerSecond, 2)}x |`)
    }
  }
  lines.push('', `**Growth from ${fmt(curve[0]?.points[0]?.connections)} connections to the limit** (heap per connection must stay within ${FLAT_TOLERANCE * 100}%; RSS moves in steps of the pages V8 and malloc commit, several MB at a time, so at the smallest size its figure per connection is mostly that step, and it is shown for information; and the time for one event to reach all grow no faster than the number of connections: time per connection at the limit over the same at the smallest size, at most 1.00x), and memory after every connection left:`, '',
    '| transport | implementation | heap / connection | RSS / connection | written, time per connection | arrived, time per connection | heap before / after | RSS before / after |',
    '|---|---|---:|---:|---:|---:|---:|---:|')
  for (const result of curve) {
    const check = curveChecks(result)
    const mark = (/** @type {boolean} */ ok) => ok ? '' : ' **over**'
    lines.push(`| ${result.implementation.transport} | ${result.implementation.name} | ${percent(check.heapGrowth)}${mark(check.heapGrowth <= FLAT_TOLERANCE)} | ${percent(check.rssGrowth)} | ${fmt(check.writtenGrowth, 2)}x${mark(check.writtenGrowth <= 1)} | ${fmt(check.arrivedGrowth, 2)}x${mark(check.arrivedGrowth <= 1)} | ${fmt(result.baseHeapMB, 1)} / ${fmt(result.afterHeapMB, 1)} MB | ${fmt(result.baseRssMB, 1)} / ${fmt(result.afterRssMB, 1)} MB |`)
  }
  lines.push('')
  return lines
}

/**
 * Draws the curve (docs/soak-curve.svg): four panels against the number of connections.
 * @param {import('./soak-limit.mjs').CurveResult[]} curve
 * @param {string} file
 */
export async function renderCurveChart (curve, file) {
  const values = curve.flatMap((result) => result.points.map((point) => ({
    implementation: seriesName(result),
    connections: point.connections,
    heap: point.heapPerConnection / 1024,
    rss: point.rssPerConnection / 1024,
    written: point.writtenP50,
    arrived: point.timeToAllP50,
    publishes: point.publishesPerSecond,
    cpu: point.cpuSecondsPerMillion
  })))
  const LEGEND = { orient: 'bottom', columns: 2, labelLimit: 320 }
  /** @param {string} field @param {string} title */
  const panel = (field, title) => ({
    width: 300,
    height: 190,
    title,
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'connections', type: 'quantitative', title: 'connections', axis: { format: ',d' } },
      y: { field, type: 'quantitative', title: null, scale: field === 'publishes' ? { type: 'log' } : {} },
      color: { field: 'implementation', type: 'nominal', title: null, legend: LEGEND },
      strokeDash: { field: 'implementation', type: 'nominal', title: null, legend: LEGEND }
    }
  })
  /** @type {import('vega-lite').TopLevelSpec} */
  const spec = /** @type {any} */ ({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    data: { values },
    config: { font: 'sans-serif', background: 'white' },
    columns: 2,
    concat: [
      panel('heap', 'heap per connection (KiB, after a full GC)'),
      panel('rss', 'RSS per connection (KiB)'),
      panel('written', 'one event written to every socket (ms, p50)'),
      panel('arrived', 'one event at the last connection (ms, p50)'),
      panel('publishes', 'publishes per second sustained (log scale)'),
      panel('cpu', 'server CPU seconds per million deliveries')
    ]
  })
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  writeFileSync(file, await view.toSVG())
  view.finalize()
}

/**
 * The projection to 100,000 and 1,000,000 connections from phase 1's per-connection figures, and
 * the system settings those counts need, against this machine's.
 * @param {import('./soak-limit.mjs').LimitResult | undefined} limit
 * @param {import('./soak-limit.mjs').CurveResult[] | undefined} curve
 * @returns {string[]}
 */
export function projectionSection (limit, curve) {
  const lines = ['## 3. What 100,000 and 1,000,000 connections take', '']
  if (limit === undefined) return [...lines, 'Phase 1 failed or did not run: nothing to project from.', '']
  const rssPerConnection = limit.rssPerConnection
  const heapPerConnection = limit.heapPerConnection
  // The server's end of a connection: half the slab of both ends.
  const kernelPerConnection = limit.kernelPerConnection / 2
  // The server's own part: the time to write one event to every socket (its clients are elsewhere).
  const msPerConnection = median(limit.timesWritten) / limit.connections
  const linear = (curve ?? []).filter((result) => result.implementation.name === 'fastify-realtime').every((result) => curveChecks(result).linear)
  const heapLimitMB = getHeapStatistics().heap_size_limit / MB
  const portRange = readProc('/proc/sys/net/ipv4/ip_local_port_range') ?? '-'
  const [low = 32768, high = 60999] = portRange.split(' ').map(Number)
  const ports = high - low + 1
  const headroom = limit.plan.headroom
  // Pages the TCP buffers of one event in flight to `count` connections take, twice over for a burst.
  const tcpPages = (/** @type {number} */ count) => Math.ceil(2 * count * Math.max(limit.tcpBuffersPerConnection, 4096) / 4096)
  lines.push(
    `From phase 1 (half SSE, half WebSocket, all subscribed): ${fmt(heapPerConnection)} bytes of heap and ${fmt(rssPerConnection)} bytes of RSS per connection, about ${fmt(kernelPerConnection)} bytes of kernel memory at the server's end, and ${fmt(msPerConnection * 1000, 2)} µs of the time the server takes to write one event to every connection. The curve ${linear ? 'grows no faster than linearly up to the limit, so these scale by the count' : 'grows faster than linearly in time to all (see above), so the times below are a lower bound'}. Idle connections hold no socket buffer; a fan-out does, for as long as the bytes wait.`,
    '',
    '| connections | server heap | server RSS | kernel, server end | one event written to all (one process) | open files |',
    '|---:|---:|---:|---:|---:|---:|'
  )
  for (const count of PROJECTIONS) {
    lines.push(`| ${fmt(count)} | ${fmt(heapPerConnection * count / MB / 1024, 1)} GiB | ${fmt(rssPerConnection * count / MB / 1024, 1)} GiB | ${fmt(kernelPerConnection * count / MB / 1024, 1)} GiB | ${fmt(msPerConnection * count / 1000, 2)} s | ${fmt(count + headroom)} |`)
  }
  const at = (/** @type {number} */ count) => fmt(count)
  lines.push(
    '',
    `One Node.js process writes every event to every socket on one thread: at 1,000,000 connections an event takes about ${fmt(msPerConnection * 1e6 / 1000, 1)} s to reach the last one, and the heap needs \`--max-old-space-size\` above its default here (${fmt(heapLimitMB)} MB). Past about 100,000 connections per event, run several processes (one per core, \`node:cluster\` or a process manager) with \`redisBroker\`, each holding its share of the connections: the time to all divides by the number of processes.`,
    '',
    'The system settings to raise (this machine\'s values read from `/proc` during the run):',
    '',
    '| setting | here | 100,000 connections | 1,000,000 connections | why |',
    '|---|---|---|---|---|',
    `| open files per process: \`ulimit -n\` (soft and hard), systemd \`LimitNOFILE\` | ${fmt(limit.plan.hardLimit)} | ${at(100_000 + headroom)} or more | ${at(1_000_000 + headroom)} or more | one descriptor per connection, plus the process's own (${fmt(limit.plan.serverFiles)} here) |`,
    `| \`fs.nr_open\` (ceiling of the hard limit) | ${readProc('/proc/sys/fs/nr_open') ?? '-'} | enough | 2,000,000 | the hard limit cannot be raised above it |`,
    `| \`fs.file-max\` (open files, whole system) | ${readProc('/proc/sys/fs/file-max') ?? '-'} | enough | above the sum of all processes' | every socket of every process counts |`,
    `| \`net.core.somaxconn\`, \`net.ipv4.tcp_max_syn_backlog\`, and Fastify's \`listen({ backlog })\` (Node's default 511) | ${readProc('/proc/sys/net/core/somaxconn') ?? '-'}, ${readProc('/proc/sys/net/ipv4/tcp_max_syn_backlog') ?? '-'} | 8192 or more | 65535 | after a deploy every client reconnects within seconds (the client waits a random 0-2 s on 1001); the accept queue must hold the burst the process has not accepted yet |`,
    `| \`net.ipv4.ip_local_port_range\` | ${portRange} (${fmt(ports)} ports) | \`1024 65535\`, and ${Math.ceil(100_000 / 64512)} or more source addresses | \`1024 65535\`, and ${Math.ceil(1_000_000 / 64512)} or more source addresses | only for the side that connects: a load generator, or a proxy in front of the server (one source address to one server address and port has at most that many ports; this soak binds its clients to several 127.0.0.x addresses for that reason) |`,
    `| \`net.ipv4.tcp_mem\` (pages of 4 KiB, whole system: low, pressure, high) | ${readProc('/proc/sys/net/ipv4/tcp_mem') ?? '-'} | pressure above ${fmt(tcpPages(100_000))} pages | pressure above ${fmt(tcpPages(1_000_000))} pages | one event fanned out to N connections queues N socket buffers at once: ${fmt(limit.tcpBuffersPerConnection)} bytes per connection at the peak in phase 1 (both ends of loopback; a burst of events holds more). Past the pressure mark the kernel shrinks buffers, past the high mark it refuses them |`,
    `| \`net.ipv4.tcp_rmem\`, \`net.ipv4.tcp_wmem\` (min, default, max bytes per socket) | ${readProc('/proc/sys/net/ipv4/tcp_rmem') ?? '-'}; ${readProc('/proc/sys/net/ipv4/tcp_wmem') ?? '-'} | keep | a smaller max (e.g. \`4096 16384 262144\`) | \`maxBufferedBytes\` bounds what waits in the process; these bound what waits in the kernel per socket |`,
    `| \`net.netfilter.nf_conntrack_max\` (when connection tracking is loaded) | ${readProc('/proc/sys/net/netfilter/nf_conntrack_max') ?? 'not loaded'} | 200,000 or more | 2,000,000 or more | a tracked connection that finds the table full is dropped |`,
    `| memory | ${fmt(Number(/^MemTotal:\s+(\d+)/m.exec(readProc('/proc/meminfo') ?? '')?.[1]) / 1024 / 1024, 1)} GiB | ${fmt((rssPerConnection + kernelPerConnection) * 100_000 / MB / 1024 + 0.5, 1)} GiB or more | ${fmt((rssPerConnection + kernelPerConnection) * 1_000_000 / MB / 1024 + 1, 1)} GiB or more | RSS and kernel memory per connection from phase 1, plus the process itself and the buffers of a fan-out |`,
    ''
  )
  return lines
}
