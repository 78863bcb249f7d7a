// maxPending against a redis-server of this file's own, paused (kill -STOP): a million publishes
// keep memory bounded, because past maxPending a publish rejects at once instead of queueing.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { redisBroker } from '../../../lib/brokers/redis/index.js'
import { recordEscapes } from '../../helpers/index.js'
import { RedisServer } from '../../helpers/redis.js'
import { within } from '../../helpers/ws.js'

const escaped = recordEscapes(t)
// A million publishes on a shared machine: a bound for a hang, not a speed measure.
t.setTimeout(240000)

/** Lets the event loop turn once (I/O included), with no timer. */
function turn (): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** How each of `promises` settled: its id, or the code of its error. */
async function outcomes (promises: Array<Promise<string>>): Promise<string[]> {
  return Promise.all(promises.map((promise) => promise.then((id) => id, (err: { code?: string }) => `rejected: ${err.code}`)))
}

function suite (): void {
  t.test('past maxPending, publishes reject at once; a million publishes to a paused Redis keep memory bounded', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    // A long command timeout: the waiting publishes stay waiting while the million are made.
    const broker = redisBroker({ url: server.url, namespace: `publisher-${randomUUID()}`, commandTimeout: 600000 })
    t.teardown(() => broker.close())
    await broker.publish('warm', 'up', '{}')
    server.pause()
    t.teardown(() => server.resume())
    globalThis.gc?.()
    const heapBefore = process.memoryUsage().heapUsed
    const waiting: Array<Promise<string>> = []
    let atOnce = 0
    const data = JSON.stringify({ text: 'x'.repeat(200) })
    for (let chunk = 0; chunk < 100; chunk++) {
      let settledNow = 0
      for (let i = 0; i < 10000; i++) {
        const publish = broker.publish('lobby', 'message', data)
        publish.catch((err: { code?: string }) => {
          if (err.code !== 'FRT_ERR_BROKER_UNAVAILABLE') throw err
          settledNow++
        })
        if (chunk === 0) waiting.push(publish)
      }
      // The rejections are already settled: only their handlers are left to run, no I/O, no timer.
      await turn()
      atOnce += settledNow
    }
    globalThis.gc?.()
    const grown = process.memoryUsage().heapUsed - heapBefore
    t.equal(atOnce, 990000, 'every publish past the first 10,000 (maxPending) rejected at once, with no I/O or timer in between')
    t.ok(grown < 64 * 1024 * 1024, `the heap grew by ${(grown / 1024 / 1024).toFixed(1)} MiB for a million publishes`)
    await within(broker.close(), 5000, 'close()')
    const rejected = await outcomes(waiting)
    t.ok(rejected.every((result) => result === 'rejected: FRT_ERR_BROKER_UNAVAILABLE'), 'close() rejects the 10,000 that waited')
    t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
  })
}

if (spawnSync('redis-server', ['--version']).status !== 0) {
  if (process.env.CI) {
    t.fail('redis-server is not installed: in CI the Redis tests must run, never be skipped (.ci/run installs it)')
  } else {
    t.plan(0, 'redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
} else {
  suite()
}
