// @ts-check
// The ws-echo suite: C = 100 WebSocket clients, each keeping 16 requests in flight; every request
// is JSON, validated against one TypeBox schema and answered. Implementations (bench/servers/):
//   raw ws + TypeCompiler (baseline)  ws-raw.mjs       JSON.parse, the compiled check, JSON.stringify
//   @fastify/websocket                ws-fastify.mjs   the same handler on a Fastify route
//   socket.io                         ws-socketio.mjs  an `add` handler with an acknowledgement
//   fastify-realtime                  ws-realtime.mjs  app.ws() with a contract, `rateLimit: false`
// Request `{"type":"add","id":n,"data":{"a":1,"b":2,"text":"…"}}` (socket.io: `42<n>["add",{…}]`);
// answer `{ sum, text }`: in fastify-realtime's envelope `{"type":"reply","id":n,"data":{…}}` from
// the three, as an ack `43<n>[{…}]` from socket.io. fastify-realtime also checks each reply
// against its reply schema, as its contract says.
//
// One run = one server process (pinned to CPU 1) for one implementation and one repetition: the
// clients connect, a warm-up round of WARM requests per client, then the measured round of
// REQUESTS per client. The load generator (CPU 0) writes pre-built request frames (ids cycling over
// 1,024 per client) and counts answers by scanning for `"sum":`; each answer sends the next request.
// Measured: wall time from the start of the window to the last answer, the server's CPU (user +
// system) over the window. Derived: requests/s, server CPU s per 1M requests, requests per
// server-CPU-second and its ratio to the baseline's in the same repetition (median of the
// per-repetition ratios, and their min-max). Every request must be answered with a sum; a missing
// answer stalls the run, which then fails. Each implementation first passes a check with a real
// client: a valid request gets the right sum, an invalid one gets an error and no sum.
//
// Run:  npm run bench -- ws-echo [--reps=5] [--quick]     or  node --expose-gc bench/ws-echo.mjs
// Results: a table on stdout, and bench/results/ws-echo-<time>.json.

import { checkEcho } from './check.mjs'
import {
  REPS, clientFrame, clock, fixed, machineInfo, markerCounter, median, openClient, openMany, quick,
  spread, startServer, table, until, waitSubscribers, withBaseline, writeResults
} from './common.mjs'

const CLIENTS = 100
const IN_FLIGHT = 16
const REQUESTS = quick ? 400 : 2000
const WARM = Math.round(REQUESTS / 5)
const STALL_MS = 10000
const IDS = 1024
const TEXT = 'the quick brown fox jumps over the lazy dog'
const MARKER = Buffer.from('"sum":')

/**
 * @typedef {object} EchoImplementation
 * @property {string} name
 * @property {string} server the file of bench/servers/, without .mjs
 * @property {boolean} [baseline] run against the --baseline checkout (see withBaseline)
 * @property {'ws' | 'socket.io'} protocol
 */

/** @type {EchoImplementation[]} */
const implementations = withBaseline([
  { name: 'ws + TypeCompiler', server: 'ws-raw', protocol: 'ws' },
  { name: '@fastify/websocket', server: 'ws-fastify', protocol: 'ws' },
  { name: 'socket.io', server: 'ws-socketio', protocol: 'socket.io' },
  { name: 'fastify-realtime', server: 'ws-realtime', protocol: 'ws' }
])

/** Pre-built request frames by protocol, one per id. */
const frames = {
  ws: Array.from({ length: IDS }, (_, id) => clientFrame(JSON.stringify({ type: 'add', id, data: { a: id, b: 2, text: TEXT } }))),
  'socket.io': Array.from({ length: IDS }, (_, id) => clientFrame(`42${id}${JSON.stringify(['add', { a: id, b: 2, text: TEXT }])}`))
}

/**
 * One run: a fresh server, the clients, the warm-up round, the measured round.
 * @param {EchoImplementation} impl
 */
async function once (impl) {
  const server = await startServer(impl.server, impl)
  /** @type {import('node:net').Socket[]} */
  let sockets = []
  try {
    const pool = frames[impl.protocol]
    const clients = Array.from({ length: CLIENTS }, () => ({ counter: markerCounter(MARKER), sent: 0, target: 0 }))
    let answered = 0
    let lastAnswer = 0
    let closed = 0
    sockets = await openMany(CLIENTS, 50, async (index) => {
      const client = /** @type {typeof clients[number]} */ (clients[index])
      const socket = await openClient(impl.protocol, server.port, '/echo', (chunk, socket) => {
        const found = client.counter.add(chunk)
        if (found === 0) return
        answered += found
        lastAnswer = clock()
        const more = Math.min(found, client.target - client.sent)
        if (more > 0) socket.write(more === 1 ? /** @type {Buffer} */ (pool[client.sent++ % IDS]) : Buffer.concat(Array.from({ length: more }, () => /** @type {Buffer} */ (pool[client.sent++ % IDS]))))
      })
      socket.on('close', () => { closed++ })
      return socket
    })
    if (impl.protocol === 'socket.io') await waitSubscribers(server, CLIENTS)

    /** @param {number} requests per client */
    async function round (requests) {
      const target = clients.length === 0 ? 0 : (clients[0]?.sent ?? 0) + requests
      const expected = CLIENTS * target
      const { start } = await server.request({ cmd: 'mark' })
      for (const [index, client] of clients.entries()) {
        client.target = target
        const first = Math.min(IN_FLIGHT, target - client.sent)
        sockets[index]?.write(Buffer.concat(Array.from({ length: first }, () => /** @type {Buffer} */ (pool[client.sent++ % IDS]))))
      }
      await until(() => answered >= expected, () => answered, STALL_MS, () =>
        `${answered} of ${expected} requests answered; ${clients.filter((client) => client.counter.count < target).length} clients waiting; ${closed} connections closed`)
      const stopped = await server.request({ cmd: 'stop' })
      const wrong = clients.filter((client) => client.counter.count !== target)
      if (wrong.length > 0) throw new Error(`${wrong.length} clients got a wrong number of answers (e.g. ${wrong[0]?.counter.count} instead of ${target})`)
      if (closed > 0) throw new Error(`${closed} connections closed during the window`)
      return { stopped, wallMs: lastAnswer - start }
    }

    await round(WARM)
    const { stopped, wallMs } = await round(REQUESTS)
    const requests = CLIENTS * REQUESTS
    return {
      requests,
      wallMs,
      cpuMs: stopped.cpuMs,
      userMs: stopped.userMs,
      systemMs: stopped.systemMs,
      requestsPerSecond: requests / (wallMs / 1000),
      cpuSecondsPerMillion: stopped.cpuMs / 1000 / requests * 1e6,
      requestsPerCpuSecond: requests / (stopped.cpuMs / 1000)
    }
  } finally {
    for (const socket of sockets) socket.destroy()
    await server.stop()
  }
}

async function main () {
  const machine = machineInfo(['fastify', 'ws', '@fastify/websocket', 'socket.io', 'engine.io', '@sinclair/typebox', 'fastify-realtime'])
  const notes = [
    'fastify-realtime runs with rateLimit: false on the echo route (each client sends far over the default 100 messages/s); its other limits are the defaults',
    'fastify-realtime validates each reply against the contract\'s reply schema too; the others validate requests only'
  ]
  console.log(`ws-echo: ${implementations.map((impl) => impl.name).join(', ')}; ${REPS} repetitions; ${CLIENTS} clients x ${IN_FLIGHT} in flight x ${REQUESTS} requests; Node ${machine.node}; ${machine.cores} cores (${machine.cpu}); pinned: ${machine.pinned}`)
  for (const note of notes) console.log(`  ${note}`)

  for (const impl of implementations) {
    const server = await startServer(impl.server, impl)
    try {
      await checkEcho(server, impl.protocol)
    } catch (err) {
      throw new Error(`${impl.name} fails the echo check with a real client: ${/** @type {Error} */ (err).message}`)
    } finally {
      await server.stop()
    }
  }
  console.log(`  echo check with a real client: ${implementations.length} implementations pass`)

  /** @type {Record<string, Array<Awaited<ReturnType<typeof once>>>>} */
  const runs = Object.fromEntries(implementations.map((impl) => [impl.name, []]))
  for (let rep = 0; rep < REPS; rep++) {
    const order = rep % 2 === 0 ? implementations : [...implementations].reverse()
    for (const impl of order) {
      const result = await once(impl).catch((err) => {
        throw new Error(`${impl.name}, repetition ${rep + 1}: ${err.message}`)
      })
      runs[impl.name]?.push(result)
      globalThis.gc?.()
      console.log(`  rep ${rep + 1}/${REPS} ${impl.name}: ${fixed(result.requestsPerSecond)} requests/s, ${fixed(result.cpuSecondsPerMillion, 2)} CPU s / 1M (wall ${fixed(result.wallMs)} ms, server CPU ${fixed(result.cpuMs)} ms)`)
    }
  }

  const baseline = implementations[0]?.name ?? ''
  const base = runs[baseline] ?? []
  const rows = [['implementation', 'requests/s', 'spread (requests/s)', 'CPU s / 1M requests', `requests per CPU-s vs ${baseline}`, 'ratio spread']]
  const summary = implementations.map((impl) => {
    const results = runs[impl.name] ?? []
    const ratios = results.map((result, rep) => result.requestsPerCpuSecond / (base[rep]?.requestsPerCpuSecond ?? NaN))
    const row = {
      implementation: impl.name,
      requestsPerSecond: median(results.map((result) => result.requestsPerSecond)),
      requestsPerSecondMin: Math.min(...results.map((result) => result.requestsPerSecond)),
      requestsPerSecondMax: Math.max(...results.map((result) => result.requestsPerSecond)),
      cpuSecondsPerMillion: median(results.map((result) => result.cpuSecondsPerMillion)),
      requestsPerCpuSecond: median(results.map((result) => result.requestsPerCpuSecond)),
      ratio: median(ratios),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios)
    }
    rows.push([
      impl.name,
      fixed(row.requestsPerSecond),
      spread(results.map((result) => result.requestsPerSecond)),
      fixed(row.cpuSecondsPerMillion, 2),
      `${fixed(row.ratio, 2)}x`,
      spread(ratios, 2)
    ])
    return row
  })
  console.log(`\nws-echo, ${CLIENTS} clients x ${IN_FLIGHT} requests in flight, ${REQUESTS} requests each (medians of ${REPS}):\n`)
  console.log(table(rows))
  const file = writeResults('ws-echo', { machine, reps: REPS, quick, clients: CLIENTS, inFlight: IN_FLIGHT, requests: REQUESTS, warm: WARM, notes, implementations, summary, runs })
  console.log(`\nwritten: ${file}`)
}

await main()
