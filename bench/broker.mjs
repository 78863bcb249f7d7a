// @ts-check
// The broker suite: publish-to-deliver latency and throughput of memoryBroker() and, when REDIS_URL
// is set, redisBroker(), measured through the Broker interface alone (no hub, no transport):
// - throughput: N events of ~200 bytes, at most WINDOW published and not yet delivered at a time;
//   events/s from the first publish to the last delivery, and this process's CPU seconds per
//   million events (the Redis server's own CPU is not counted).
// - latency: a separate run with one event in flight; the time from publish() to the listener, p50/p99.
// Every broker runs once to warm up, then REPS times, alternating; the table shows medians and the
// spread (min-max) of throughput. Publisher and listener share this process: for the Redis broker
// that is a writer connection (XADD) and a reader connection (XREAD BLOCK), as on one instance.
//
// Run:  npm run bench                          (builds dist/ if needed; Redis skipped without REDIS_URL)
//       REDIS_URL=redis://127.0.0.1:6379 node bench/broker.mjs [--reps=5] [--quick]
// A private Redis: scripts/redis-test-server.sh. On a machine of two cores or more, `npm run bench`
// pins this process to CPU 0; start Redis with `taskset -c 1` so the two do not share a core.
// Results: a table on stdout, and bench/results/broker-<time>.json.

import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { memoryBroker } from 'fastify-realtime'
import { redisBroker } from 'fastify-realtime/redis'
import { Redis } from 'ioredis'

/** @typedef {import('fastify-realtime').Broker} Broker */

const args = new Map(process.argv.slice(2).map((arg) => {
  const [key, value = 'true'] = arg.replace(/^--/, '').split('=')
  return [key, value]
}))
const quick = args.has('quick')
const REPS = Number(args.get('reps') ?? (quick ? 2 : 5))
const WINDOW = 64
const STALL_MS = 5000
const TOPIC = 'bench'
const EVENT = 'tick'
// One JSON payload of 200 bytes, the same for every event: building it is not what is measured.
const DATA = (() => {
  const head = '{"user":"bench","text":"'
  const tail = '"}'
  return head + 'x'.repeat(200 - head.length - tail.length) + tail
})()

/**
 * @typedef {object} Subject
 * @property {string} name
 * @property {() => Broker} create
 * @property {number} throughputEvents
 * @property {number} latencyEvents
 */

const redisUrl = process.env.REDIS_URL
const namespace = `bench-${process.pid}-${Date.now().toString(36)}`

/** @type {Subject[]} */
const subjects = [
  { name: 'memory', create: () => memoryBroker(), throughputEvents: quick ? 20000 : 200000, latencyEvents: quick ? 2000 : 20000 }
]
if (redisUrl !== undefined && redisUrl !== '') {
  subjects.push({ name: 'redis', create: () => redisBroker({ url: redisUrl, namespace }), throughputEvents: quick ? 2000 : 20000, latencyEvents: quick ? 500 : 5000 })
}

const now = () => performance.now()

/**
 * Runs `drive` with a watchdog: rejects when no event was delivered for STALL_MS, so no run waits forever.
 * @param {() => number} progress how many events were delivered so far
 * @param {(fail: (err: unknown) => void) => Promise<void>} drive
 */
function watched (progress, drive) {
  return new Promise((resolve, reject) => {
    let seen = -1
    const watchdog = setInterval(() => {
      const current = progress()
      if (current === seen) fail(new Error(`no event delivered for ${STALL_MS} ms (at ${current})`))
      seen = current
    }, STALL_MS)
    /** @param {unknown} err */
    function fail (err) {
      clearInterval(watchdog)
      reject(err)
    }
    drive(fail).then((value) => {
      clearInterval(watchdog)
      resolve(value)
    }, fail)
  })
}

/**
 * The q-quantile (nearest rank) of sorted samples.
 * @param {Float64Array} sorted
 * @param {number} q
 */
function quantile (sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN
}

/** @param {number[]} values */
function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2
}

/**
 * Delivery latencies in microseconds, sorted.
 * @param {Float64Array} sent
 * @param {Float64Array} got
 */
function latencies (sent, got) {
  const micros = new Float64Array(sent.length)
  for (let i = 0; i < sent.length; i++) micros[i] = ((got[i] ?? 0) - (sent[i] ?? 0)) * 1000
  return micros.sort()
}

/**
 * Publishes `count` events with at most WINDOW in flight; events/s from the first publish to the last delivery.
 * @param {Broker} broker
 * @param {number} count
 */
async function throughput (broker, count) {
  const sent = new Float64Array(count)
  const got = new Float64Array(count)
  let published = 0
  let delivered = 0
  /** @type {(() => void) | undefined} */
  let wake
  const unlisten = broker.listen(() => {
    if (delivered < count) got[delivered++] = now()
    if (wake !== undefined && (published - delivered < WINDOW || delivered === count)) {
      const resume = wake
      wake = undefined
      resume()
    }
  })
  const cpu = process.cpuUsage()
  const start = now()
  try {
    await watched(() => delivered, async (fail) => {
      // The listener advances `delivered`: the loop ends once it reaches count, or the watchdog fails the run.
      for (;;) {
        if (delivered >= count) return
        if (published < count && published - delivered < WINDOW) {
          sent[published] = now()
          published++
          broker.publish(TOPIC, EVENT, DATA).catch(fail)
          continue
        }
        await new Promise((resolve) => { wake = () => resolve(undefined) })
      }
    })
  } finally {
    unlisten()
  }
  const seconds = (now() - start) / 1000
  const used = process.cpuUsage(cpu)
  const loaded = latencies(sent, got)
  return {
    events: count,
    seconds,
    eventsPerSecond: count / seconds,
    cpuSecondsPerMillion: ((used.user + used.system) / 1e6) / count * 1e6,
    loadedP50Us: quantile(loaded, 0.5),
    loadedP99Us: quantile(loaded, 0.99)
  }
}

/**
 * Publishes `count` events one at a time, each once the previous one was delivered.
 * @param {Broker} broker
 * @param {number} count
 */
async function latency (broker, count) {
  const sent = new Float64Array(count)
  const got = new Float64Array(count)
  let delivered = 0
  /** @type {(() => void) | undefined} */
  let wake
  const unlisten = broker.listen(() => {
    if (delivered < count) got[delivered++] = now()
    if (wake !== undefined) {
      const resume = wake
      wake = undefined
      resume()
    }
  })
  try {
    await watched(() => delivered, async (fail) => {
      for (let i = 0; i < count; i++) {
        sent[i] = now()
        broker.publish(TOPIC, EVENT, DATA).catch(fail)
        // The memory broker delivers inside publish(); Redis later, through the reader.
        if (delivered <= i) await new Promise((resolve) => { wake = () => resolve(undefined) })
      }
    })
  } finally {
    unlisten()
  }
  const sorted = latencies(sent, got)
  return { events: count, p50Us: quantile(sorted, 0.5), p99Us: quantile(sorted, 0.99), maxUs: sorted[sorted.length - 1] ?? NaN }
}

/**
 * Publishes one event and waits for it: the connections are up before anything is timed.
 * @param {Broker} broker
 */
async function prime (broker) {
  let unlisten = () => {}
  try {
    await watched(() => 0, async () => {
      const delivered = new Promise((resolve) => { unlisten = broker.listen(resolve) })
      await broker.publish(TOPIC, EVENT, DATA)
      await delivered
    })
  } finally {
    unlisten()
  }
}

/**
 * One repetition of one broker: a fresh broker, the throughput run, then the latency run.
 * @param {Subject} subject
 * @param {number} scale a fraction of the configured counts (the warm-up runs a tenth)
 */
async function once (subject, scale) {
  const broker = subject.create()
  try {
    await prime(broker)
    const tp = await throughput(broker, Math.max(WINDOW, Math.round(subject.throughputEvents * scale)))
    globalThis.gc?.()
    const lat = await latency(broker, Math.max(10, Math.round(subject.latencyEvents * scale)))
    return { throughput: tp, latency: lat }
  } finally {
    await broker.close()
    globalThis.gc?.()
  }
}

async function redisVersion () {
  if (redisUrl === undefined || redisUrl === '') return undefined
  const redis = new Redis(redisUrl)
  try {
    return /redis_version:(\S+)/.exec(await redis.info('server'))?.[1]
  } finally {
    redis.disconnect()
  }
}

/** Deletes the Redis keys of this run's namespace (the log, bounded by maxLen, would stay otherwise). */
async function cleanRedis () {
  if (redisUrl === undefined || redisUrl === '') return
  const redis = new Redis(redisUrl)
  try {
    const keys = await redis.keys(`*{${namespace}}*`)
    if (keys.length > 0) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
}

/**
 * A Markdown table: the first column left-aligned, the numbers right-aligned.
 * @param {string[][]} rows the header first
 */
function table (rows) {
  const widths = (rows[0] ?? []).map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)))
  const line = (/** @type {string[]} */ row) =>
    `| ${row.map((cell, column) => column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0)).join(' | ')} |`
  const rule = `|${widths.map((width, column) => column === 0 ? '-'.repeat(width + 2) : `${'-'.repeat(width + 1)}:`).join('|')}|`
  return [line(rows[0] ?? []), rule, ...rows.slice(1).map(line)].join('\n')
}

/** @param {number} value @param {number} digits */
const fixed = (value, digits = 0) => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

async function main () {
  const machine = {
    node: process.version,
    redis: await redisVersion(),
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    platform: `${os.platform()} ${os.release()}`,
    pinned: process.env.BENCH_PINNED
  }
  console.log(`broker suite: ${subjects.map((subject) => subject.name).join(', ')}; ${REPS} repetitions; window ${WINDOW}; Node ${machine.node}${machine.redis === undefined ? '' : `, Redis ${machine.redis}`}; ${machine.cores} cores (${machine.cpu})`)
  if (subjects.length === 1) console.log('redis: skipped (REDIS_URL is not set; scripts/redis-test-server.sh starts a throwaway Redis)')

  /** @type {Record<string, Array<Awaited<ReturnType<typeof once>>>>} */
  const runs = Object.fromEntries(subjects.map((subject) => [subject.name, []]))
  try {
    for (const subject of subjects) await once(subject, 0.1) // warm-up: JIT, connections
    for (let rep = 0; rep < REPS; rep++) {
      // Alternating, and in the other order every other repetition, so drift hits both alike.
      const order = rep % 2 === 0 ? subjects : [...subjects].reverse()
      for (const subject of order) {
        const result = await once(subject, 1)
        runs[subject.name]?.push(result)
        process.stdout.write(`  rep ${rep + 1}/${REPS} ${subject.name}: ${fixed(result.throughput.eventsPerSecond)} events/s, p50 ${fixed(result.latency.p50Us, 1)} µs\n`)
      }
    }
  } finally {
    await cleanRedis()
  }

  const summary = subjects.map((subject) => {
    const results = runs[subject.name] ?? []
    const rates = results.map((result) => result.throughput.eventsPerSecond)
    return {
      broker: subject.name,
      throughputEvents: subject.throughputEvents,
      latencyEvents: subject.latencyEvents,
      eventsPerSecond: median(rates) ?? NaN,
      eventsPerSecondMin: Math.min(...rates),
      eventsPerSecondMax: Math.max(...rates),
      cpuSecondsPerMillion: median(results.map((result) => result.throughput.cpuSecondsPerMillion)) ?? NaN,
      loadedP50Us: median(results.map((result) => result.throughput.loadedP50Us)) ?? NaN,
      loadedP99Us: median(results.map((result) => result.throughput.loadedP99Us)) ?? NaN,
      p50Us: median(results.map((result) => result.latency.p50Us)) ?? NaN,
      p99Us: median(results.map((result) => result.latency.p99Us)) ?? NaN
    }
  })
  const baseline = summary[0]
  const rows = [['broker', 'events/s', 'spread', 'vs memory', 'CPU s / 1M', `p50 µs (${WINDOW} in flight)`, `p99 µs (${WINDOW} in flight)`, 'p50 µs (1 in flight)', 'p99 µs (1 in flight)']]
  for (const row of summary) {
    rows.push([
      row.broker,
      fixed(row.eventsPerSecond),
      `${fixed(row.eventsPerSecondMin)}-${fixed(row.eventsPerSecondMax)}`,
      `${fixed(row.eventsPerSecond / (baseline?.eventsPerSecond ?? NaN), 3)}x`,
      fixed(row.cpuSecondsPerMillion, 2),
      fixed(row.loadedP50Us, 1),
      fixed(row.loadedP99Us, 1),
      fixed(row.p50Us, 1),
      fixed(row.p99Us, 1)
    ])
  }
  console.log()
  console.log(table(rows))

  mkdirSync(new URL('results/', import.meta.url), { recursive: true })
  const file = new URL(`results/broker-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url)
  writeFileSync(file, JSON.stringify({ suite: 'broker', date: new Date().toISOString(), machine, window: WINDOW, reps: REPS, payloadBytes: DATA.length, summary, runs }, null, 2) + '\n')
  console.log(`\nwritten: ${file.pathname}`)
}

await main()
