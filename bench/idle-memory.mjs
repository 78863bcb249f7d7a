// @ts-check
// The idle-memory suite: what one idle connection costs the server, in heap and RSS, for each
// implementation of each transport (bench/servers/):
//   SSE  node:http (baseline) sse-raw.mjs, a hijacked plain Fastify route sse-hijack.mjs,
//        @fastify/sse sse-fastify-sse.mjs, fastify-sse-v2 sse-v2.mjs, better-sse sse-better.mjs,
//        fastify-realtime sse-realtime.mjs (a stream subscribed to a topic)
//   WS   ws (baseline) ws-raw.mjs, @fastify/websocket ws-fastify.mjs, socket.io ws-socketio.mjs,
//        fastify-realtime ws-realtime.mjs (a connection subscribed to a topic in onOpen)
// One run = one server process (pinned to CPU 1) for one implementation and one repetition:
// WARM_UP connections open and close first (lazy initialization, route compilation), then the
// server reports process.memoryUsage() after gc(), 100 ms, gc(); CONNECTIONS connections open (at
// most 200 handshakes at a time), each confirmed by its first bytes and then by the server's count
// of subscribers; the server reports its memory again the same way. Per connection: the difference
// divided by CONNECTIONS, for heapUsed, RSS and external memory. fastify-realtime is held to the bare
// Fastify route of its transport (a hijacked route; @fastify/websocket): its heap per connection at
// most 10% above theirs, as the median of the per-repetition ratios; the run ends with that
// verdict. Every implementation keeps its defaults (heartbeat timers included: none fires within a run). Nothing is sent on the
// connections besides what each implementation writes by itself when one opens. The servers keep
// per connection only what broadcasting with that library needs: a Set entry and a close listener
// where the library has no registry (node:http, the hijacked route, @fastify/sse, fastify-sse-v2),
// the library's own registry elsewhere (ws's clients, better-sse's Channel, socket.io's namespace,
// fastify-realtime's topic, whose subscribers the server counts through the hub).
//
// Run:  npm run bench -- idle-memory [--reps=5] [--quick] [--only=ws-realtime]     or  node --expose-gc bench/idle-memory.mjs
// Results: tables on stdout, and bench/results/idle-memory-<time>.json.

import {
  ONLY, REPS, fixed, machineInfo, median, openClient, openMany, quick, sleep, spread, startServer, table,
  waitSubscribers, withBaseline, writeResults
} from './common.mjs'

const CONNECTIONS = quick ? 1000 : 5000
const WARM_UP = 20

/**
 * @typedef {object} IdleImplementation
 * @property {string} name
 * @property {string} server the file of bench/servers/, without .mjs
 * @property {boolean} [baseline] run against the --baseline checkout (see withBaseline)
 * @property {'sse' | 'ws' | 'socket.io'} protocol
 * @property {string} path
 */

/** fastify-realtime's heap per connection must stay within this share above the bare Fastify route's. */
const BARE_TOLERANCE = 0.1

/** @type {Array<{ transport: string, bare: string, implementations: IdleImplementation[] }>} */
const groups = [
  {
    transport: 'SSE',
    bare: 'Fastify, hijacked route',
    implementations: withBaseline([
      { name: 'node:http', server: 'sse-raw', protocol: 'sse', path: '/events' },
      { name: 'Fastify, hijacked route', server: 'sse-hijack', protocol: 'sse', path: '/events' },
      { name: '@fastify/sse', server: 'sse-fastify-sse', protocol: 'sse', path: '/events' },
      { name: 'fastify-sse-v2', server: 'sse-v2', protocol: 'sse', path: '/events' },
      { name: 'better-sse', server: 'sse-better', protocol: 'sse', path: '/events' },
      { name: 'fastify-realtime', server: 'sse-realtime', protocol: 'sse', path: '/events' }
    ])
  },
  {
    transport: 'WS',
    bare: '@fastify/websocket',
    implementations: withBaseline([
      { name: 'ws', server: 'ws-raw', protocol: 'ws', path: '/ws' },
      { name: '@fastify/websocket', server: 'ws-fastify', protocol: 'ws', path: '/ws' },
      { name: 'socket.io', server: 'ws-socketio', protocol: 'socket.io', path: '/ws' },
      { name: 'fastify-realtime', server: 'ws-realtime', protocol: 'ws', path: '/ws' }
    ])
  }
]

/**
 * One run: a fresh server, the warm-up connections, the memory before, CONNECTIONS idle connections, the memory after.
 * @param {IdleImplementation} impl
 */
async function once (impl) {
  const server = await startServer(impl.server, impl)
  /** @type {import('node:net').Socket[]} */
  let sockets = []
  try {
    const noop = () => {}
    const warm = await openMany(WARM_UP, WARM_UP, () => openClient(impl.protocol, server.port, impl.path, noop))
    await waitSubscribers(server, WARM_UP)
    for (const socket of warm) socket.destroy()
    await waitSubscribers(server, 0)
    await sleep(50)
    const before = await server.request({ cmd: 'memory' })
    sockets = await openMany(CONNECTIONS, 200, () => openClient(impl.protocol, server.port, impl.path, noop))
    await waitSubscribers(server, CONNECTIONS)
    const after = await server.request({ cmd: 'memory' })
    const { sockets: open } = await server.request({ cmd: 'count' })
    if (open !== CONNECTIONS) throw new Error(`the server holds ${open} sockets, expected ${CONNECTIONS}`)
    return {
      connections: CONNECTIONS,
      before,
      after,
      heapPerConnection: (after.heapUsed - before.heapUsed) / CONNECTIONS,
      rssPerConnection: (after.rss - before.rss) / CONNECTIONS,
      externalPerConnection: (after.external - before.external) / CONNECTIONS
    }
  } finally {
    for (const socket of sockets) socket.destroy()
    await server.stop()
  }
}

const kib = (/** @type {number} */ bytes) => bytes / 1024

async function main () {
  const machine = machineInfo(['fastify', '@fastify/sse', 'fastify-sse-v2', 'better-sse', 'ws', '@fastify/websocket', 'socket.io', 'engine.io', 'fastify-realtime'])
  console.log(`idle-memory: ${CONNECTIONS} idle connections per run; ${REPS} repetitions; Node ${machine.node}; ${machine.cores} cores (${machine.cpu}); pinned: ${machine.pinned}`)

  /** @type {Record<string, Record<string, Array<Awaited<ReturnType<typeof once>>>>>} */
  const runs = {}
  /** @type {Record<string, object[]>} */
  const summary = {}
  /** @type {string[]} */
  const verdicts = []
  for (const { transport, bare, implementations: all } of groups) {
    // --only: the named implementations, with the baseline and the bare route their ratios need.
    const named = all.filter((impl) => ONLY === undefined || ONLY.includes(impl.server))
    if (named.length === 0) continue
    const implementations = all.filter((impl, i) => i === 0 || impl.name === bare || named.includes(impl))
    /** @type {Record<string, Array<Awaited<ReturnType<typeof once>>>>} */
    const byImpl = Object.fromEntries(implementations.map((impl) => [impl.name, []]))
    runs[transport] = byImpl
    for (let rep = 0; rep < REPS; rep++) {
      const order = rep % 2 === 0 ? implementations : [...implementations].reverse()
      for (const impl of order) {
        const result = await once(impl).catch((err) => {
          throw new Error(`${transport} ${impl.name}, repetition ${rep + 1}: ${err.message}`)
        })
        byImpl[impl.name]?.push(result)
        globalThis.gc?.()
        console.log(`  ${transport} rep ${rep + 1}/${REPS} ${impl.name}: heap ${fixed(kib(result.heapPerConnection), 2)} KiB, RSS ${fixed(kib(result.rssPerConnection), 2)} KiB per connection`)
      }
    }
    const baseline = implementations[0]?.name ?? ''
    const baseHeap = median((byImpl[baseline] ?? []).map((result) => result.heapPerConnection))
    const bareResults = byImpl[bare] ?? []
    const bareHeap = median(bareResults.map((result) => result.heapPerConnection))
    const rows = [['implementation', 'heap KiB / connection', 'spread', `vs ${baseline}`, `vs ${bare}`, 'ratio spread', 'RSS KiB / connection', 'spread', 'external KiB / connection']]
    summary[transport] = implementations.map((impl) => {
      const results = byImpl[impl.name] ?? []
      const heap = results.map((result) => kib(result.heapPerConnection))
      const rss = results.map((result) => kib(result.rssPerConnection))
      // Per repetition: the two ran back to back in the same repetition.
      const toBare = results.map((result, rep) => result.heapPerConnection / (bareResults[rep]?.heapPerConnection ?? NaN))
      const row = {
        implementation: impl.name,
        bareRatio: median(toBare),
        heapKiB: median(heap),
        heapKiBMin: Math.min(...heap),
        heapKiBMax: Math.max(...heap),
        rssKiB: median(rss),
        rssKiBMin: Math.min(...rss),
        rssKiBMax: Math.max(...rss),
        externalKiB: median(results.map((result) => kib(result.externalPerConnection)))
      }
      rows.push([
        impl.name,
        fixed(row.heapKiB, 2),
        spread(heap, 2),
        `${fixed(row.heapKiB / kib(baseHeap), 2)}x`,
        `${fixed(row.bareRatio, 2)}x`,
        spread(toBare, 2),
        fixed(row.rssKiB, 2),
        spread(rss, 2),
        fixed(row.externalKiB, 2)
      ])
      if (impl.name === 'fastify-realtime') {
        verdicts.push(`idle-memory, ${transport}: fastify-realtime ${fixed(row.heapKiB, 2)} KiB against ${fixed(kib(bareHeap), 2)} KiB for ${bare}: ${fixed(row.bareRatio, 2)}x (${spread(toBare, 2)}), ${row.bareRatio <= 1 + BARE_TOLERANCE ? 'within' : 'OVER'} ${BARE_TOLERANCE * 100}%`)
      }
      return row
    })
    console.log(`\nidle-memory, ${transport}, ${CONNECTIONS} idle connections (medians of ${REPS}):\n`)
    console.log(table(rows))
    console.log()
  }
  for (const verdict of verdicts) console.log(verdict)
  const file = writeResults('idle-memory', { machine, reps: REPS, quick, connections: CONNECTIONS, warmUp: WARM_UP, groups, verdicts, summary, runs })
  console.log(`written: ${file}`)
}

await main()
