// @ts-check
// The fan-out measurement shared by sse-fanout.mjs and ws-fanout.mjs: C clients on one topic, the
// server publishes events as fast as backpressure allows (bench/servers/harness.mjs), every client
// must receive every event.
//
// One run = one server process (pinned to CPU 1) for one implementation and one repetition:
//   C raw clients connect (confirmed by their first bytes, then by the server's subscriber count);
//   warm-up windows (JIT, buffers) of WARM events, then twice as many each time until one lasts
//   WARM_MS; the measured window of M events, or more for an implementation fast enough to publish
//   them in under MEASURED_MS (as many as the last warm-up's pace fits in it, at most MAX_SCALE x
//   M), so that no window is too short to measure; then a
//   latency window: events at a fixed rate of PACED_DELIVERIES deliveries per second (200 events/s
//   at 100 clients, 20 at 1,000), below every implementation's capacity, for PACED_MS (half a second).
// The load generator (this process, CPU 0) counts events per client by scanning for `"seq":`; ten
// clients spread over the set also read seq and send time to sample latency (about 100 events each
// in the measured window, every event of the latency window).
// Measured: wall time from the server's first publish to the last event on the last client; the
// server's CPU (user + system) over the same window, the flush of what was still buffered
// included. Derived: events/s (published events, each delivered to C clients), deliveries/s
// (events x clients), server CPU s per 1M deliveries, deliveries per server-CPU-second and its ratio
// to the baseline's in the same repetition (the table shows the median of those per-repetition
// ratios and their min-max), and the same ratio to the hand-optimised ceiling (the same event framed
// once and corked per tick, written by hand), which fastify-realtime must keep at 0.9x or more:
// each size ends with a line saying whether it does, from paired windows: after the repetitions, both
// servers are up with their clients at once, and 2 x REPS pairs of measured windows run back to back
// (which one goes first alternates). On a shared machine the CPU a window takes moves by up to half
// from one window to the next, for every implementation; a pair sees the machine in one state, so
// the median of the per-pair ratios is what the verdict reads. Latency (ms, from the send timestamp to the arrival of the chunk):
// "saturated" in the measured window, which is mostly time spent queued in socket buffers (the
// kernel's included), so a faster publisher fills them more; "paced" in the latency window.
// Loss, duplicates, reordering or a closed connection fail the run.

import { checkFanout } from './check.mjs'
import {
  BATCH, ONLY, REPS, clock, fixed, machineInfo, markerCounter, median, openClient, openMany, quantile, quick,
  sampledCounter, spread, startServer, table, until, waitSubscribers, writeResults
} from './common.mjs'

/**
 * @typedef {object} FanoutImplementation
 * @property {string} name
 * @property {string} server the file of bench/servers/, without .mjs
 * @property {boolean} [baseline] run against the --baseline checkout (see withBaseline)
 */

/**
 * @typedef {object} FanoutSize
 * @property {number} clients
 * @property {number} events M, measured
 * @property {number} warm events of the warm-up window
 */

const MARKER = Buffer.from('"seq":')
const SAMPLED_CLIENTS = 10
const STALL_MS = 10000
const PACED_DELIVERIES = 20000
const PACED_MS = 500
/** fastify-realtime must deliver at least this share of the hand-optimised ceiling's deliveries per CPU-second. */
const CEILING_SHARE = 0.9
const OURS = 'fastify-realtime'
/** The last warm-up window lasts at least this long (or holds MAX_SCALE x WARM events). */
const WARM_MS = quick ? 100 : 300
/** The measured window lasts about this long at the last warm-up's pace (never fewer than M events). */
const MEASURED_MS = quick ? 300 : 1500
/** Warm-up and measured windows hold at most this many times WARM and M events. */
const MAX_SCALE = 20
/** Pairs of measured windows for the verdict against the ceiling. */
const PAIRS = quick ? 4 : 2 * REPS

/**
 * The events of the measured window: M, or more for an implementation whose warm-up pace shows
 * that M would take less than MEASURED_MS, in whole ticks.
 * @param {FanoutSize} size
 * @param {number} pace events per ms in the last warm-up window
 */
function measuredEvents (size, pace) {
  const events = Math.min(size.events * MAX_SCALE, Math.max(size.events, Math.round(pace * MEASURED_MS)))
  return Math.ceil(events / BATCH) * BATCH
}

/**
 * One run: a fresh server, C clients, the warm-up window, the measured window.
 * @param {FanoutImplementation} impl
 * @param {'sse' | 'ws' | 'socket.io'} protocol
 * @param {string} path
 * @param {FanoutSize} size
 */
async function connectRun (impl, protocol, path, size) {
  const server = await startServer(impl.server, impl)
  /** @type {import('node:net').Socket[]} */
  let sockets = []
  const close = async () => {
    for (const socket of sockets) socket.destroy()
    await server.stop()
  }
  try {
    const C = size.clients
    const stride = Math.max(1, Math.floor(C / SAMPLED_CLIENTS))
    /** @type {Array<{ count: number, add (chunk: Buffer): number }>} */
    const counters = []
    /** @type {ReturnType<typeof sampledCounter>[]} */
    const sampled = []
    for (let i = 0; i < C; i++) {
      if (i % stride === 0 && sampled.length < SAMPLED_CLIENTS) {
        // About 100 samples per sampled client in the measured window.
        const counter = sampledCounter(Math.max(1, Math.floor(size.events / 100)))
        sampled.push(counter)
        counters.push(counter)
      } else {
        counters.push(markerCounter(MARKER))
      }
    }
    let delivered = 0
    let lastArrival = 0
    let closed = 0
    sockets = await openMany(C, 100, async (index) => {
      const counter = /** @type {{ add (chunk: Buffer): number }} */ (counters[index])
      const socket = await openClient(protocol, server.port, path, (chunk) => {
        const found = counter.add(chunk)
        if (found > 0) {
          delivered += found
          lastArrival = clock()
        }
      })
      socket.on('close', () => { closed++ })
      return socket
    })
    await waitSubscribers(server, C)

    /** @param {number} from @param {number} count @param {number} [rate] events/s, or as fast as possible */
    async function window (from, count, rate) {
      const target = from + count
      for (const counter of sampled) {
        counter.from = from
        counter.latencies.length = 0
      }
      const driverCpu = process.cpuUsage()
      const published = server.request({ cmd: 'publish', from, count, rate }, 300000)
      published.catch(() => {}) // awaited below
      await until(() => delivered >= C * target, () => delivered, STALL_MS, () => {
        const short = counters.filter((counter) => counter.count < target)
        return `${short.length} of ${C} clients are missing events (delivered ${delivered} of ${C * target}; ${closed} connections closed)`
      }).catch(async (err) => {
        await published.catch((failure) => { err.message += `; the server: ${failure.message}` })
        throw err
      })
      const { start } = await published
      const stopped = await server.request({ cmd: 'stop' })
      const wrong = counters.filter((counter) => counter.count !== target)
      if (wrong.length > 0) throw new Error(`${wrong.length} clients got a wrong number of events (e.g. ${wrong[0]?.count} instead of ${target})`)
      const disordered = sampled.reduce((sum, counter) => sum + counter.outOfOrder, 0)
      if (disordered > 0) throw new Error(`${disordered} events arrived out of order`)
      if (closed > 0) throw new Error(`${closed} connections closed during the window`)
      const used = process.cpuUsage(driverCpu)
      return { start, stopped, wallMs: lastArrival - start, driverCpuMs: (used.user + used.system) / 1000 }
    }

    let from = 0
    /** Warm-up windows of WARM events, then twice as many each time, until one lasts WARM_MS: the JIT settles, and the last one's pace sizes the measured windows. */
    async function warmUp () {
      let count = size.warm
      let warmMs = 0
      for (;;) {
        warmMs = (await window(from, count)).wallMs
        from += count
        if (warmMs >= WARM_MS || count >= size.warm * MAX_SCALE) break
        count *= 2
      }
      // At least M events, and as many more as the warm-up's pace fits in MEASURED_MS: a fast
      // implementation's window is then long enough for its CPU time to be more than noise.
      const events = measuredEvents(size, count / Math.max(1, warmMs))
      for (const counter of sampled) counter.every = Math.max(1, Math.floor(events / 100))
      return events
    }
    /** One measured window of `events` events, as fast as backpressure allows. @param {number} events */
    async function measure (events) {
      const result = await window(from, events)
      from += events
      return { ...result, deliveriesPerCpuSecond: events * C / (result.stopped.cpuMs / 1000) }
    }
    /** The latency window, at a fixed rate. */
    async function pace () {
      const rate = PACED_DELIVERIES / C
      for (const counter of sampled) counter.every = 1
      const pacedEvents = Math.max(2, Math.round(rate * PACED_MS / 1000))
      const pacedWindow = await window(from, pacedEvents, rate)
      from += pacedEvents
      return { rate, pacedEvents, pacedWindow, paced: sampled.flatMap((counter) => counter.latencies) }
    }
    return { warmUp, measure, pace, latencies: () => sampled.flatMap((counter) => counter.latencies), close }
  } catch (err) {
    await close()
    throw err
  }
}

/**
 * One repetition of one implementation: a fresh server and its clients, the warm-up, the measured
 * window, the latency window.
 * @param {FanoutImplementation} impl
 * @param {'sse' | 'ws' | 'socket.io'} protocol
 * @param {string} path
 * @param {FanoutSize} size
 */
async function once (impl, protocol, path, size) {
  const run = await connectRun(impl, protocol, path, size)
  try {
    const C = size.clients
    const events = await run.warmUp()
    const { stopped, wallMs, driverCpuMs } = await run.measure(events)
    const latencies = run.latencies()
    const { rate, pacedEvents, pacedWindow, paced } = await run.pace()
    const deliveries = events * C
    return {
      clients: C,
      events,
      wallMs,
      cpuMs: stopped.cpuMs,
      driverCpuMs,
      userMs: stopped.userMs,
      systemMs: stopped.systemMs,
      eventsPerSecond: events / (wallMs / 1000),
      deliveriesPerSecond: deliveries / (wallMs / 1000),
      cpuSecondsPerMillion: stopped.cpuMs / 1000 / deliveries * 1e6,
      deliveriesPerCpuSecond: deliveries / (stopped.cpuMs / 1000),
      waits: stopped.waits,
      waitMs: stopped.waitMs,
      latencySamples: latencies.length,
      p50Ms: quantile(latencies, 0.5),
      p99Ms: quantile(latencies, 0.99),
      pacedRate: rate,
      pacedSamples: paced.length,
      pacedCpuSecondsPerMillion: pacedWindow.stopped.cpuMs / 1000 / (pacedEvents * C) * 1e6,
      pacedP50Ms: quantile(paced, 0.5),
      pacedP99Ms: quantile(paced, 0.99)
    }
  } finally {
    await run.close()
  }
}

/**
 * fastify-realtime against the ceiling in paired windows: both servers up with their clients, both
 * warmed up, then PAIRS pairs of measured windows, one of each, back to back (in turns, which goes
 * first), so that each pair sees the machine in the same state. Returns the per-pair ratios of
 * deliveries per CPU-second.
 * @param {FanoutImplementation} ours @param {FanoutImplementation} top
 * @param {'sse' | 'ws'} protocol @param {string} path @param {FanoutSize} size
 */
async function paired (ours, top, protocol, path, size) {
  const a = await connectRun(ours, protocol, path, size)
  try {
    const b = await connectRun(top, protocol, path, size)
    try {
      const eventsA = await a.warmUp()
      const eventsB = await b.warmUp()
      /** @type {number[]} */
      const ratios = []
      for (let pair = 0; pair < PAIRS; pair++) {
        let mine, theirs
        if (pair % 2 === 0) {
          mine = await a.measure(eventsA)
          theirs = await b.measure(eventsB)
        } else {
          theirs = await b.measure(eventsB)
          mine = await a.measure(eventsA)
        }
        ratios.push(mine.deliveriesPerCpuSecond / theirs.deliveriesPerCpuSecond)
      }
      return ratios
    } finally {
      await b.close()
    }
  } finally {
    await a.close()
  }
}

/**
 * Runs a fan-out suite: the protocol check of every implementation, then REPS repetitions of every
 * size, the implementations alternating (reversed every other repetition); prints one table per
 * size and writes the JSON.
 * @param {object} suite
 * @param {string} suite.name
 * @param {'sse' | 'ws'} suite.transport
 * @param {string} suite.path
 * @param {Array<FanoutImplementation & { protocol?: 'socket.io' }>} suite.implementations the baseline first
 * @param {string} suite.ceiling the hand-optimised implementation fastify-realtime is held to (at least CEILING_SHARE of it)
 * @param {FanoutSize[]} suite.sizes
 * @param {string[]} suite.packages whose versions go into the results
 * @param {string[]} suite.notes printed under the header and kept in the JSON
 */
export async function runFanout ({ name, transport, path, implementations: all, ceiling, sizes, packages, notes }) {
  const implementations = all.filter((impl, i) => ONLY === undefined || i === 0 || impl.name === ceiling || ONLY.includes(impl.server))
  const machine = machineInfo(packages)
  console.log(`${name}: ${implementations.map((impl) => impl.name).join(', ')}; ${REPS} repetitions; ${sizes.map((size) => `${size.clients} clients x ${size.events}+ events`).join(', ')} (more where the warm-up shows they take under ${MEASURED_MS} ms); ${BATCH} events per tick; Node ${machine.node}; ${machine.cores} cores (${machine.cpu}); pinned: ${machine.pinned}`)
  for (const note of notes) console.log(`  ${note}`)

  for (const impl of implementations) {
    const server = await startServer(impl.server, impl)
    try {
      await checkFanout(server, impl.protocol ?? transport, path)
    } catch (err) {
      throw new Error(`${impl.name} fails the protocol check with real clients: ${/** @type {Error} */ (err).message}`)
    } finally {
      await server.stop()
    }
  }
  console.log(`  protocol check with real clients: ${implementations.length} implementations pass`)

  /** @type {Record<string, Record<string, Array<Awaited<ReturnType<typeof once>>>>>} */
  const runs = {}
  /** @type {Record<string, number[]>} fastify-realtime / ceiling in paired windows, per size */
  const pairs = {}
  for (const size of sizes) {
    const key = String(size.clients)
    runs[key] = Object.fromEntries(implementations.map((impl) => [impl.name, []]))
    for (let rep = 0; rep < REPS; rep++) {
      const order = rep % 2 === 0 ? implementations : [...implementations].reverse()
      for (const impl of order) {
        const result = await once(impl, impl.protocol ?? transport, path, size).catch((err) => {
          throw new Error(`${impl.name}, ${size.clients} clients, repetition ${rep + 1}: ${err.message}`)
        })
        runs[key]?.[impl.name]?.push(result)
        globalThis.gc?.()
        console.log(`  ${size.clients} clients, rep ${rep + 1}/${REPS} ${impl.name}: ${fixed(result.eventsPerSecond)} events/s, ${fixed(result.cpuSecondsPerMillion, 2)} CPU s / 1M (wall ${fixed(result.wallMs)} ms, server CPU ${fixed(result.cpuMs)} ms, load generator CPU ${fixed(result.driverCpuMs)} ms), paced p50 ${fixed(result.pacedP50Ms, 2)} ms`)
      }
    }
    const ours = implementations.find((impl) => impl.name === OURS)
    const top = implementations.find((impl) => impl.name === ceiling)
    if (ours !== undefined && top !== undefined) {
      const ratios = await paired(ours, top, transport, path, size)
      pairs[key] = ratios
      console.log(`  ${size.clients} clients, ${PAIRS} paired windows ${OURS} / ${ceiling}: ${ratios.map((ratio) => fixed(ratio, 2)).join(', ')}`)
    }
  }

  const baseline = implementations[0]?.name ?? ''
  /** @type {Record<string, object[]>} */
  const summary = {}
  /** @type {string[]} */
  const verdicts = []
  for (const size of sizes) {
    const bySize = runs[String(size.clients)] ?? {}
    const base = bySize[baseline] ?? []
    const top = bySize[ceiling] ?? []
    /** @param {Array<{ deliveriesPerCpuSecond: number }>} results @param {Array<{ deliveriesPerCpuSecond: number }>} against */
    const ratiosOf = (results, against) => results.map((result, rep) => result.deliveriesPerCpuSecond / (against[rep]?.deliveriesPerCpuSecond ?? NaN))
    const rate = PACED_DELIVERIES / size.clients
    const rows = [['implementation', 'events/s', 'deliveries/s', 'spread (deliveries/s)', 'CPU s / 1M deliveries', `deliveries per CPU-s vs ${baseline}`, 'ratio spread', `vs ${ceiling}`, 'ratio spread', 'p50 / p99 ms saturated', `p50 / p99 ms at ${rate} events/s`]]
    summary[size.clients] = implementations.map((impl) => {
      const results = bySize[impl.name] ?? []
      const ratios = ratiosOf(results, base)
      const toCeiling = ratiosOf(results, top)
      const row = {
        implementation: impl.name,
        clients: size.clients,
        events: median(results.map((result) => result.events)),
        eventsPerSecond: median(results.map((result) => result.eventsPerSecond)),
        deliveriesPerSecond: median(results.map((result) => result.deliveriesPerSecond)),
        deliveriesPerSecondMin: Math.min(...results.map((result) => result.deliveriesPerSecond)),
        deliveriesPerSecondMax: Math.max(...results.map((result) => result.deliveriesPerSecond)),
        cpuSecondsPerMillion: median(results.map((result) => result.cpuSecondsPerMillion)),
        deliveriesPerCpuSecond: median(results.map((result) => result.deliveriesPerCpuSecond)),
        ratio: median(ratios),
        ratioMin: Math.min(...ratios),
        ratioMax: Math.max(...ratios),
        ceilingRatio: median(toCeiling),
        ceilingRatioMin: Math.min(...toCeiling),
        ceilingRatioMax: Math.max(...toCeiling),
        eventsPerSecondCeilingRatio: median(results.map((result, rep) => result.eventsPerSecond / (top[rep]?.eventsPerSecond ?? NaN))),
        p50Ms: median(results.map((result) => result.p50Ms)),
        p99Ms: median(results.map((result) => result.p99Ms)),
        pacedRate: rate,
        pacedP50Ms: median(results.map((result) => result.pacedP50Ms)),
        pacedP99Ms: median(results.map((result) => result.pacedP99Ms))
      }
      rows.push([
        impl.name,
        fixed(row.eventsPerSecond),
        fixed(row.deliveriesPerSecond),
        spread(results.map((result) => result.deliveriesPerSecond)),
        fixed(row.cpuSecondsPerMillion, 3),
        `${fixed(row.ratio, 2)}x`,
        spread(ratios, 2),
        `${fixed(row.ceilingRatio, 2)}x`,
        spread(toCeiling, 2),
        `${fixed(row.p50Ms, 1)} / ${fixed(row.p99Ms, 1)}`,
        `${fixed(row.pacedP50Ms, 2)} / ${fixed(row.pacedP99Ms, 2)}`
      ])
      const paired = pairs[String(size.clients)]
      if (impl.name === OURS && paired !== undefined) {
        const pairedRatio = median(paired)
        Object.assign(row, { pairedCeilingRatio: pairedRatio, pairedCeilingRatios: paired })
        const verdict = pairedRatio >= CEILING_SHARE ? 'at or above' : 'BELOW'
        verdicts.push(`${name}, ${size.clients} clients, ${BATCH} per tick: ${OURS} at ${fixed(pairedRatio, 2)}x ${ceiling} in deliveries per CPU-second, the median of ${paired.length} paired windows (${spread(paired, 2)}); ${fixed(row.ceilingRatio, 2)}x in the repetitions (${spread(toCeiling, 2)}): ${verdict} ${CEILING_SHARE}x`)
      }
      return row
    })
    console.log(`\n${name}, ${size.clients} clients, ${size.events} events of 200 bytes or more, ${BATCH} per tick (medians of ${REPS}):\n`)
    console.log(table(rows))
  }
  console.log('')
  for (const verdict of verdicts) console.log(verdict)

  const file = writeResults(name, { machine, reps: REPS, quick, batch: BATCH, sizes, notes, implementations, ceiling, verdicts, summary, runs, pairs })
  console.log(`\nwritten: ${file}`)
}
