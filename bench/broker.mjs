// @ts-check
// The broker suite: publish-to-deliver throughput and latency through the Broker interface alone
// (no hub, no transport), of memoryBroker() and, when REDIS_URL is set, redisBroker() against the
// practical ceiling of one Node process on that Redis, measured in the same run:
// - raw: ioredis by hand, no library. A writer connection sends the XADDs of each tick as one
//   pipeline (`XADD <key> MAXLEN ~ 100000 * t <topic> e <event> d <data>`, the broker's command),
//   with no promise per event and no bound on pipelines in flight; a reader connection tails the
//   stream (`XREAD COUNT 1000 BLOCK`) and parses every entry into { id, topic, event, data }.
// - throughput: N events of 200 bytes, at most WINDOW (256) published and not yet delivered at a
//   time; events delivered per second, this process's CPU per million events, and the Redis
//   server's CPU per million events (INFO CPU: used_cpu_user + used_cpu_sys, all of its threads).
// - latency: one event in flight, from publish to the listener, p50/p99. raw: one plain XADD (no
//   pipeline) seen by the raw tail.
// Every subject runs once to warm up, then REPS times, alternating; tables show medians, and the
// broker against raw as the median of the per-repetition ratios with their spread.
//
// Run:  npm run bench -- broker                (builds dist/ if needed; Redis skipped without REDIS_URL)
//       REDIS_URL=redis://127.0.0.1:6379 node bench/broker.mjs [--reps=5] [--quick]
// A private Redis: scripts/redis-test-server.sh. On a machine of two cores or more, `npm run bench`
// pins this process to CPU 0; start Redis with `taskset -c 1` so the two do not share a core.
// Results: tables on stdout, and bench/results/broker-<time>.json.

import { memoryBroker } from 'fastify-realtime'
import { redisBroker } from 'fastify-realtime/redis'
import { Redis } from 'ioredis'
import { fixed, machineInfo, median, quantile, quick, REPS, spread, table, writeResults } from './common.mjs'

/** @typedef {import('fastify-realtime').Broker} Broker */
/** @typedef {import('fastify-realtime').BrokerEvent} BrokerEvent */

const WINDOW = 256
const STALL_MS = 5000
const MAX_LEN = 100000
const TOPIC = 'bench'
const EVENT = 'tick'
// One JSON payload of 200 bytes, the same for every event: building it is not what is measured.
const DATA = (() => {
  const head = '{"user":"bench","text":"'
  const tail = '"}'
  return head + 'x'.repeat(200 - head.length - tail.length) + tail
})()

const redisUrl = process.env.REDIS_URL
const namespace = `bench-${process.pid}-${Date.now().toString(36)}`
let streams = 0

/**
 * What a subject offers the measurements: publish (no answer awaited beyond failure), listen, and
 * the connection to Redis to ask for its CPU (undefined for memory).
 * @typedef {object} Driver
 * @property {() => void} publish one event, as the throughput run sends it
 * @property {() => void} publishOne one event, as the latency run sends it
 * @property {(listener: (event: BrokerEvent) => void) => () => void} listen
 * @property {() => Promise<void>} close
 */

/**
 * @typedef {object} Subject
 * @property {string} name
 * @property {(fail: (err: unknown) => void) => Promise<Driver>} open
 * @property {number} throughputEvents
 * @property {number} latencyEvents
 */

/**
 * A Broker as a driver: every publish's promise is watched for a rejection.
 * @param {Broker} broker
 * @param {(err: unknown) => void} fail
 * @returns {Driver}
 */
function brokerDriver (broker, fail) {
  const publish = () => { broker.publish(TOPIC, EVENT, DATA).catch(fail) }
  return { publish, publishOne: publish, listen: (listener) => broker.listen(listener), close: () => broker.close() }
}

/**
 * XREAD's entries for the one stream read (ioredis' default RESP3 reply shape), or none.
 * @param {unknown} reply
 * @returns {Array<[string, string[]]>}
 */
function entriesOf (reply) {
  if (reply === null) return []
  return /** @type {[string, Array<[string, string[]]>][]} */ (reply)[0]?.[1] ?? []
}

/**
 * The raw ceiling: pipelined XADDs per tick on one connection, a tail on another.
 * @param {string} url
 * @param {(err: unknown) => void} fail
 * @returns {Promise<Driver>}
 */
async function openRaw (url, fail) {
  const key = `frt:{${namespace}-raw-${++streams}}:log`
  const writer = new Redis(url, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 })
  const reader = new Redis(url)
  writer.on('error', fail)
  reader.on('error', () => {})
  await Promise.all([new Promise((resolve) => writer.once('ready', resolve)), new Promise((resolve) => reader.once('ready', resolve))])
  /** @type {Set<(event: BrokerEvent) => void>} */
  const listeners = new Set()
  const state = { closed: false }
  /** @type {ReturnType<Redis['pipeline']> | undefined} */
  let pipeline
  const flush = () => {
    const sending = /** @type {ReturnType<Redis['pipeline']>} */ (pipeline)
    pipeline = undefined
    sending.exec().then((results) => {
      for (const [err] of results ?? []) if (err !== null) fail(err)
    }, fail)
  }
  const read = async () => {
    let cursor = '0-0'
    while (!state.closed) {
      let entries
      try {
        entries = entriesOf(await reader.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', key, cursor))
      } catch (err) {
        if (!state.closed) fail(err)
        return
      }
      for (const [id, fields] of entries) {
        cursor = id
        /** @type {Record<string, string>} */
        const parsed = {}
        for (let i = 0; i + 1 < fields.length; i += 2) parsed[/** @type {string} */ (fields[i])] = /** @type {string} */ (fields[i + 1])
        const event = { id, topic: parsed.t ?? '', event: parsed.e ?? '', data: parsed.d ?? '' }
        for (const listener of listeners) listener(event)
      }
    }
  }
  read()
  return {
    publish () {
      if (pipeline === undefined) {
        pipeline = writer.pipeline()
        queueMicrotask(flush)
      }
      pipeline.xadd(key, 'MAXLEN', '~', MAX_LEN, '*', 't', TOPIC, 'e', EVENT, 'd', DATA)
    },
    publishOne () {
      writer.xadd(key, 'MAXLEN', '~', MAX_LEN, '*', 't', TOPIC, 'e', EVENT, 'd', DATA).catch(fail)
    },
    listen (listener) {
      listeners.add(listener)
      return () => { listeners.delete(listener) }
    },
    async close () {
      state.closed = true
      await writer.del(key).catch(() => {})
      writer.disconnect()
      reader.disconnect()
    }
  }
}

/** @type {Subject[]} */
const subjects = [
  { name: 'memory', open: async (fail) => brokerDriver(memoryBroker(), fail), throughputEvents: quick ? 20000 : 200000, latencyEvents: quick ? 2000 : 20000 }
]
if (redisUrl !== undefined && redisUrl !== '') {
  const url = redisUrl
  const throughputEvents = quick ? 20000 : 200000
  const latencyEvents = quick ? 1000 : 5000
  subjects.push(
    { name: 'raw', open: (fail) => openRaw(url, fail), throughputEvents, latencyEvents },
    { name: 'redis', open: async (fail) => brokerDriver(redisBroker({ url, namespace: `${namespace}-${++streams}`, maxLen: MAX_LEN }), fail), throughputEvents, latencyEvents }
  )
}

const now = () => performance.now()

/**
 * Runs `drive` with a watchdog: rejects when no event was delivered for STALL_MS, so no run waits
 * forever, or as soon as `fail` is called (a publish rejected).
 * @param {() => number} progress how many events were delivered so far
 * @param {(fail: (err: unknown) => void) => Promise<void>} drive
 * @param {{ fail?: (err: unknown) => void }} hook receives `fail` for the driver's own failures
 * @returns {Promise<void>}
 */
function watched (progress, drive, hook) {
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
    hook.fail = fail
    drive(fail).then(() => {
      clearInterval(watchdog)
      resolve()
    }, fail)
  })
}

/** The Redis server's CPU seconds so far (INFO CPU), or NaN for memory. */
async function redisCpuSeconds () {
  if (redisUrl === undefined || redisUrl === '') return NaN
  const redis = new Redis(redisUrl)
  try {
    const info = await redis.info('cpu')
    const field = (/** @type {string} */ name) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1])
    return field('used_cpu_user') + field('used_cpu_sys')
  } finally {
    redis.disconnect()
  }
}

/**
 * Publishes `count` events with at most WINDOW in flight; events/s from the first publish to the last delivery.
 * @param {Driver} driver
 * @param {number} count
 * @param {{ fail?: (err: unknown) => void }} hook
 * @param {boolean} onRedis
 */
async function throughput (driver, count, hook, onRedis) {
  const sent = new Float64Array(count)
  const got = new Float64Array(count)
  let published = 0
  let delivered = 0
  /** @type {(() => void) | undefined} */
  let wake
  const unlisten = driver.listen(() => {
    if (delivered < count) got[delivered++] = now()
    if (wake !== undefined && (published - delivered < WINDOW || delivered === count)) {
      const resume = wake
      wake = undefined
      resume()
    }
  })
  const redisBefore = onRedis ? await redisCpuSeconds() : NaN
  const cpu = process.cpuUsage()
  const start = now()
  try {
    await watched(() => delivered, async () => {
      // The listener advances `delivered`: the loop ends once it reaches count, or the watchdog fails the run.
      for (;;) {
        if (delivered >= count) return
        if (published < count && published - delivered < WINDOW) {
          sent[published] = now()
          published++
          driver.publish()
          continue
        }
        await new Promise((resolve) => { wake = () => resolve(undefined) })
      }
    }, hook)
  } finally {
    unlisten()
  }
  const seconds = (now() - start) / 1000
  const used = process.cpuUsage(cpu)
  const redisSeconds = onRedis ? (await redisCpuSeconds()) - redisBefore : NaN
  const loaded = latencies(sent, got)
  return {
    events: count,
    seconds,
    eventsPerSecond: count / seconds,
    cpuSecondsPerMillion: ((used.user + used.system) / 1e6) / count * 1e6,
    redisCpuSecondsPerMillion: redisSeconds / count * 1e6,
    loadedP50Us: quantile(loaded, 0.5),
    loadedP99Us: quantile(loaded, 0.99)
  }
}

/**
 * Delivery latencies in microseconds.
 * @param {Float64Array} sent
 * @param {Float64Array} got
 */
function latencies (sent, got) {
  const micros = new Float64Array(sent.length)
  for (let i = 0; i < sent.length; i++) micros[i] = ((got[i] ?? 0) - (sent[i] ?? 0)) * 1000
  return micros
}

/**
 * Publishes `count` events one at a time, each once the previous one was delivered.
 * @param {Driver} driver
 * @param {number} count
 * @param {{ fail?: (err: unknown) => void }} hook
 */
async function latency (driver, count, hook) {
  const sent = new Float64Array(count)
  const got = new Float64Array(count)
  let delivered = 0
  /** @type {(() => void) | undefined} */
  let wake
  const unlisten = driver.listen(() => {
    if (delivered < count) got[delivered++] = now()
    if (wake !== undefined) {
      const resume = wake
      wake = undefined
      resume()
    }
  })
  try {
    await watched(() => delivered, async () => {
      for (let i = 0; i < count; i++) {
        sent[i] = now()
        driver.publishOne()
        // The memory broker delivers inside publish(); Redis later, through the reader.
        if (delivered <= i) await new Promise((resolve) => { wake = () => resolve(undefined) })
      }
    }, hook)
  } finally {
    unlisten()
  }
  const micros = latencies(sent, got)
  return { events: count, p50Us: quantile(micros, 0.5), p99Us: quantile(micros, 0.99) }
}

/**
 * Publishes one event and waits for it: the connections are up before anything is timed.
 * @param {Driver} driver
 * @param {{ fail?: (err: unknown) => void }} hook
 */
async function prime (driver, hook) {
  let unlisten = () => {}
  try {
    await watched(() => 0, async () => {
      const delivered = new Promise((resolve) => { unlisten = driver.listen(resolve) })
      driver.publishOne()
      await delivered
    }, hook)
  } finally {
    unlisten()
  }
}

/**
 * One repetition of one subject: a fresh broker (or raw pair of connections) on a fresh stream,
 * the throughput run, then the latency run.
 * @param {Subject} subject
 * @param {number} scale a fraction of the configured counts (the warm-up runs a tenth)
 */
async function once (subject, scale) {
  /** @type {{ fail?: (err: unknown) => void }} */
  const hook = {}
  const driver = await subject.open((err) => {
    if (hook.fail === undefined) throw err
    hook.fail(err)
  })
  try {
    await prime(driver, hook)
    const tp = await throughput(driver, Math.max(WINDOW, Math.round(subject.throughputEvents * scale)), hook, subject.name !== 'memory')
    globalThis.gc?.()
    const lat = await latency(driver, Math.max(10, Math.round(subject.latencyEvents * scale)), hook)
    return { throughput: tp, latency: lat }
  } finally {
    await driver.close()
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

/** Deletes the Redis keys of this run (each log is bounded by maxLen, but would stay otherwise). */
async function cleanRedis () {
  if (redisUrl === undefined || redisUrl === '') return
  const redis = new Redis(redisUrl)
  try {
    const keys = await redis.keys(`*{${namespace}*}*`)
    if (keys.length > 0) await redis.del(...keys)
  } finally {
    redis.disconnect()
  }
}

async function main () {
  const machine = { ...machineInfo(['ioredis']), redis: await redisVersion() }
  console.log(`broker suite: ${subjects.map((subject) => subject.name).join(', ')}; ${REPS} repetitions; window ${WINDOW}; Node ${machine.node}${machine.redis === undefined ? '' : `, Redis ${machine.redis}`}, ioredis ${machine.packages.ioredis}; ${machine.cores} cores (${machine.cpu})`)
  if (subjects.length === 1) console.log('redis: skipped (REDIS_URL is not set; scripts/redis-test-server.sh starts a throwaway Redis)')

  /** @type {Record<string, Array<Awaited<ReturnType<typeof once>>>>} */
  const runs = Object.fromEntries(subjects.map((subject) => [subject.name, []]))
  try {
    for (const subject of subjects) await once(subject, 0.1) // warm-up: JIT, connections
    for (let rep = 0; rep < REPS; rep++) {
      // Alternating, and in the other order every other repetition, so drift hits all alike.
      const order = rep % 2 === 0 ? subjects : [...subjects].reverse()
      for (const subject of order) {
        const result = await once(subject, 1)
        runs[subject.name]?.push(result)
        process.stdout.write(`  rep ${rep + 1}/${REPS} ${subject.name}: ${fixed(result.throughput.eventsPerSecond)} events/s, Redis CPU ${fixed(result.throughput.redisCpuSecondsPerMillion, 2)} s/1M, p50 ${fixed(result.latency.p50Us, 1)} µs\n`)
      }
    }
  } finally {
    await cleanRedis()
  }

  const summary = subjects.map((subject) => {
    const results = runs[subject.name] ?? []
    const rates = results.map((result) => result.throughput.eventsPerSecond)
    return {
      subject: subject.name,
      throughputEvents: subject.throughputEvents,
      latencyEvents: subject.latencyEvents,
      eventsPerSecond: median(rates),
      eventsPerSecondMin: Math.min(...rates),
      eventsPerSecondMax: Math.max(...rates),
      cpuSecondsPerMillion: median(results.map((result) => result.throughput.cpuSecondsPerMillion)),
      redisCpuSecondsPerMillion: median(results.map((result) => result.throughput.redisCpuSecondsPerMillion)),
      loadedP50Us: median(results.map((result) => result.throughput.loadedP50Us)),
      loadedP99Us: median(results.map((result) => result.throughput.loadedP99Us)),
      p50Us: median(results.map((result) => result.latency.p50Us)),
      p99Us: median(results.map((result) => result.latency.p99Us))
    }
  })
  const rows = [['subject', 'events/s', 'spread', 'CPU s / 1M', 'Redis CPU s / 1M', `p50 µs (${WINDOW} in flight)`, `p99 µs (${WINDOW} in flight)`, 'p50 µs (1 in flight)', 'p99 µs (1 in flight)']]
  for (const row of summary) {
    rows.push([
      row.subject,
      fixed(row.eventsPerSecond),
      `${fixed(row.eventsPerSecondMin)}-${fixed(row.eventsPerSecondMax)}`,
      fixed(row.cpuSecondsPerMillion, 2),
      fixed(row.redisCpuSecondsPerMillion, 2),
      fixed(row.loadedP50Us, 1),
      fixed(row.loadedP99Us, 1),
      fixed(row.p50Us, 1),
      fixed(row.p99Us, 1)
    ])
  }
  console.log()
  console.log(table(rows))

  /** @type {Record<string, { median: number, min: number, max: number, target: string }> | undefined} */
  let ratios
  const raw = runs.raw
  const broker = runs.redis
  if (raw !== undefined && broker !== undefined) {
    // Per repetition: the broker and raw ran back to back, under the same load.
    const per = (/** @type {(run: Awaited<ReturnType<typeof once>>) => number} */ metric) =>
      broker.map((run, rep) => metric(run) / metric(/** @type {Awaited<ReturnType<typeof once>>} */ (raw[rep])))
    const ratio = (/** @type {number[]} */ values, /** @type {string} */ target) => ({ median: median(values), min: Math.min(...values), max: Math.max(...values), target })
    ratios = {
      eventsPerSecond: ratio(per((run) => run.throughput.eventsPerSecond), '>= 0.85'),
      redisCpuPerEvent: ratio(per((run) => run.throughput.redisCpuSecondsPerMillion), '<= 1.5'),
      p50OneInFlight: ratio(per((run) => run.latency.p50Us), '<= 1.2')
    }
    console.log()
    console.log(table([
      ['redisBroker / raw', 'ratio', 'spread', 'target'],
      [`events/s, ${WINDOW} in flight`, `${fixed(ratios.eventsPerSecond.median, 2)}x`, spread([ratios.eventsPerSecond.min, ratios.eventsPerSecond.max], 2), ratios.eventsPerSecond.target],
      ['Redis CPU per event', `${fixed(ratios.redisCpuPerEvent.median, 2)}x`, spread([ratios.redisCpuPerEvent.min, ratios.redisCpuPerEvent.max], 2), ratios.redisCpuPerEvent.target],
      ['p50 latency, 1 in flight', `${fixed(ratios.p50OneInFlight.median, 2)}x`, spread([ratios.p50OneInFlight.min, ratios.p50OneInFlight.max], 2), ratios.p50OneInFlight.target]
    ]))
  }

  const file = writeResults('broker', { machine, window: WINDOW, reps: REPS, payloadBytes: DATA.length, summary, ratios, runs })
  console.log(`\nwritten: ${file}`)
}

await main()
