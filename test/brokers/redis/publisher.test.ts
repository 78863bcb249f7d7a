// The Redis broker's writer against a redis-server of this file's own (it pauses it, fills its
// memory, keeps it busy), seen through a TCP proxy that counts how the XADDs reach Redis: the
// publishes of a tick go as one pipeline, bounded; each resolves to its own id in call order; a
// lone publish is not delayed; one refused XADD fails alone, a lost connection fails its batch;
// what Redis did not run is sent again; at most maxPending publishes wait; waitReplicas.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { Broker } from '../../../lib/brokers/broker.js'
import { redisBroker, type RedisBrokerOptions } from '../../../lib/brokers/redis/index.js'
import { record } from '../../helpers/broker-contract.js'
import { recordEscapes } from '../../helpers/index.js'
import { RedisServer } from '../../helpers/redis.js'
import { startProxy } from '../../helpers/redis-proxy.js'
import { sleep, until, within } from '../../helpers/ws.js'

const escaped = recordEscapes(t)

function keyOf (ns: string): string {
  return `frt:{${ns}}:log`
}

function compareIds (a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint]
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint]
  return am === bm ? Number(as - bs) : Number(am - bm)
}

/** Lets the event loop turn `turns` times (I/O included), with no timer. */
async function turns (count: number): Promise<void> {
  for (let i = 0; i < count; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** How each of `promises` settled: its id, or the code of its error. */
async function outcomes (promises: Array<Promise<string>>): Promise<string[]> {
  return Promise.all(promises.map((promise) => promise.then((id) => id, (err: { code?: string }) => `rejected: ${err.code}`)))
}

function suite (): void {
  /** t.test, plus the check that nothing escaped as an uncaughtException or unhandledRejection. */
  function test (name: string, fn: (t: Test) => Promise<void>): void {
    t.test(name, async (t) => {
      await fn(t)
      t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
    })
  }

  function open (t: Test, options: RedisBrokerOptions): Broker {
    const broker = redisBroker({ namespace: `publisher-${randomUUID()}`, ...options })
    t.teardown(() => broker.close())
    return broker
  }

  function admin (t: Test, url: string): Redis {
    const redis = new Redis(url)
    redis.on('error', () => {})
    t.teardown(() => { redis.disconnect() })
    return redis
  }

  /** A broker whose connections go through a proxy, with one event published and delivered (the connections are up). */
  async function proxied (t: Test, options: Partial<RedisBrokerOptions> = {}) {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const proxy = await startProxy(t, server.port)
    const namespace = `publisher-${randomUUID()}`
    const broker = open(t, { url: proxy.url, namespace, ...options })
    const warm = record(broker)
    await broker.publish('warm', 'up', '{}')
    await warm.waitFor(1)
    warm.stop()
    return { server, proxy, broker, key: keyOf(namespace) }
  }

  test('the publishes of a tick go to Redis as one pipeline; each resolves to its own id, in call order', async (t) => {
    const { proxy, broker } = await proxied(t)
    const seen = record(broker)
    const writesBefore = proxy.xaddWrites
    const resolved: number[] = []
    const published = Array.from({ length: 200 }, (_, i) => broker.publish('lobby', 'message', JSON.stringify({ i })).then((id) => {
      resolved.push(i)
      return id
    }))
    const ids = await Promise.all(published)
    t.ok(proxy.xaddWrites - writesBefore <= 3, `200 XADDs reached Redis in ${proxy.xaddWrites - writesBefore} writes (a pipeline may span a few TCP reads)`)
    t.same(resolved, Array.from({ length: 200 }, (_, i) => i), 'the publishes resolve in call order')
    t.same([...ids].sort(compareIds), ids, 'their ids increase in call order')
    t.equal(new Set(ids).size, 200, 'each its own id')
    t.same((await seen.waitFor(200)).map((event) => [event.id, event.data]), ids.map((id, i) => [id, JSON.stringify({ i })]), 'delivered in that order')
  })

  test('publishes made while a batch is in flight wait for it, then go as one pipeline', async (t) => {
    const { proxy, broker } = await proxied(t)
    proxy.hold('all')
    const before = proxy.xadds
    const first = broker.publish('lobby', 'message', '"first"')
    await until(() => proxy.xadds === before + 1, 3000, 'the first XADD')
    const later: Array<Promise<string>> = []
    for (let tick = 0; tick < 5; tick++) {
      for (let i = 0; i < 20; i++) later.push(broker.publish('lobby', 'message', JSON.stringify({ tick, i })))
      await turns(3)
    }
    t.equal(proxy.xadds, before + 1, 'nothing else is sent while the first batch is in flight')
    const writes = proxy.xaddWrites
    proxy.release()
    const ids = [await first, ...await Promise.all(later)]
    t.equal(proxy.xadds, before + 101, 'then the 100 others')
    t.ok(proxy.xaddWrites - writes <= 3, `as one pipeline (${proxy.xaddWrites - writes} writes)`)
    t.same([...ids].sort(compareIds), ids, 'ids in call order')
  })

  test('a lone publish is written to Redis in the tick it is made: no timer delays it', async (t) => {
    const { proxy, broker } = await proxied(t)
    for (let round = 0; round < 20; round++) {
      const before = proxy.xadds
      const publish = broker.publish('lobby', 'message', String(round))
      // Two turns of the event loop: the proxy's read of what was written in this tick, with no timer between.
      await turns(2)
      t.equal(proxy.xadds, before + 1, `round ${round}: the XADD reached the proxy`)
      await publish
    }
  })

  test('close() rejects the publishes not answered yet, and sends nothing more', async (t) => {
    const { proxy, broker } = await proxied(t)
    const before = proxy.xadds
    const published = Array.from({ length: 3 }, (_, i) => broker.publish('lobby', 'message', String(i)))
    await broker.close()
    t.same(await outcomes(published), ['rejected: FRT_ERR_BROKER_UNAVAILABLE', 'rejected: FRT_ERR_BROKER_UNAVAILABLE', 'rejected: FRT_ERR_BROKER_UNAVAILABLE'])
    await turns(3)
    t.equal(proxy.xadds, before, 'none of them reached Redis')
  })

  test('a batch is bounded: at most 512 XADDs, and about 1 MiB of events', async (t) => {
    const { proxy, broker } = await proxied(t)
    proxy.hold('all')
    let before = proxy.xadds
    const small = Array.from({ length: 1500 }, (_, i) => broker.publish('lobby', 'message', String(i)))
    await until(() => proxy.xadds === before + 512, 3000, 'the first batch')
    await turns(5)
    t.equal(proxy.xadds, before + 512, '512 in the first pipeline, the rest wait for it')
    proxy.release()
    t.equal((await Promise.all(small)).length, 1500, 'then all of them')

    proxy.hold('all')
    before = proxy.xadds
    const big = Array.from({ length: 5 }, (_, i) => broker.publish('lobby', 'message', JSON.stringify({ i, text: 'x'.repeat(600 * 1024) })))
    await until(() => proxy.xadds === before + 2, 3000, 'the first batch of big events')
    await turns(5)
    t.equal(proxy.xadds, before + 2, 'two events of 600 KiB pass 1 MiB: the batch stops there')
    proxy.release()
    t.equal((await Promise.all(big)).length, 5, 'then all of them')
  })

  test('one XADD that Redis refuses (out of memory) rejects only its own publish; the others of its pipeline resolve', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const redis = admin(t, server.url)
    const namespace = `publisher-${randomUUID()}`
    const broker = open(t, { url: server.url, namespace })
    const seen = record(broker)
    await broker.publish('warm', 'up', '{}')
    const used = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1])
    // Room for a few of the events below: the pipeline's first XADDs fit, the later ones meet the limit.
    await redis.config('SET', 'maxmemory', String(used + 300 * 1024))
    t.teardown(() => redis.config('SET', 'maxmemory', '0').catch(() => {}))
    const data = (i: number): string => JSON.stringify({ i, text: 'x'.repeat(64 * 1024) })
    const results = await outcomes(Array.from({ length: 12 }, (_, i) => broker.publish('lobby', 'message', data(i))))
    const resolved = results.filter((result) => !result.startsWith('rejected'))
    const rejected = results.filter((result) => result.startsWith('rejected'))
    t.ok(resolved.length > 0 && rejected.length > 0, `some resolved (${resolved.length}), some rejected (${rejected.length})`)
    t.same(rejected, rejected.map(() => 'rejected: FRT_ERR_BROKER_UNAVAILABLE'), 'with the coded error')
    await redis.config('SET', 'maxmemory', '0')
    const stored = await redis.xrange(keyOf(namespace), '-', '+')
    t.same(stored.slice(1).map(([id]) => id), resolved, 'the log holds exactly the resolved ones')
    const after = await broker.publish('lobby', 'message', '"after"')
    await seen.waitUntil((events) => events.some((event) => event.id === after), 'the next event')
    t.same(seen.events.map((event) => event.id).slice(1), [...resolved, after], 'and delivers exactly those')
  })

  test('a connection lost with a pipeline in flight rejects its whole batch with FRT_ERR_BROKER_UNAVAILABLE', async (t) => {
    const { server, proxy, broker, key } = await proxied(t)
    const redis = admin(t, server.url)
    proxy.hold('all')
    const published = Array.from({ length: 50 }, (_, i) => broker.publish('lobby', 'message', String(i)))
    published.forEach((promise) => { promise.catch(() => {}) })
    await until(() => proxy.xadds >= 51, 3000, 'the pipeline')
    await within((async () => { while (await redis.xlen(key) < 51) await sleep(10) })(), 3000, 'Redis running the pipeline')
    proxy.cut()
    const errors = await Promise.all(published.map((promise) => promise.then(() => undefined, (err: Error & { code?: string }) => err)))
    t.same(errors.map((err) => err?.code), errors.map(() => 'FRT_ERR_BROKER_UNAVAILABLE'), 'every publish of the batch rejects')
    t.match(errors[0]?.message, /may still be in the log/, 'saying the events may have been written (they were)')
    proxy.restore()
  })

  test('what Redis did not run (BUSY with a script) is sent again until it is written; an overdue one never is', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const redis = admin(t, server.url)
    const namespace = `publisher-${randomUUID()}`
    const broker = open(t, { url: server.url, namespace })
    const hurried = open(t, { url: server.url, namespace, commandTimeout: 100 })
    const seen = record(broker)
    await broker.publish('warm', 'up', '{}')
    await hurried.publish('warm', 'up', '{}')
    await redis.config('SET', 'busy-reply-threshold', '50')
    // A script that keeps Redis busy for 1.5 s: past the threshold every other client gets BUSY.
    const busy = redis.duplicate()
    busy.on('error', () => {})
    t.teardown(() => { busy.disconnect() })
    const script = busy.eval("local s = redis.call('TIME') while (redis.call('TIME')[1] - s[1]) * 1000000 + redis.call('TIME')[2] - s[2] < 1500000 do end return 1", 0)
    script.catch(() => {})
    await within((async () => {
      for (;;) {
        const reply = await redis.exists('probe').catch((err: Error) => err.message)
        if (String(reply).startsWith('BUSY')) return
        await sleep(10)
      }
    })(), 5000, 'Redis answering BUSY')
    const patient = broker.publish('lobby', 'message', '"patient"')
    const overdue = hurried.publish('lobby', 'message', '"overdue"')
    await t.rejects(overdue, { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'a publish whose command timeout passes while Redis is busy rejects')
    const id = await patient
    t.equal(await script, 1, 'the script ran to its end')
    t.match(id, /^\d+-\d+$/, 'a publish made while Redis was busy resolves once it is written')
    await sleep(100) // the hurried broker's retry timer would have fired by now
    const stored = (await redis.xrange(keyOf(namespace), '-', '+')).map(([, fields]) => fields[fields.indexOf('d') + 1])
    t.same(stored, ['{}', '{}', '"patient"'], 'the patient event once; the overdue one never')
    await seen.waitUntil((events) => events.some((event) => event.id === id), 'the patient event')
  })

  test('waitReplicas: a publish resolves once a replica holds it; with none it rejects, the event being on the master only', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const replica = await RedisServer.start((cleanup) => t.teardown(cleanup), ['--replicaof', '127.0.0.1', String(server.port)])
    const redis = admin(t, server.url)
    await within((async () => {
      while (!(await redis.info('replication')).includes('state=online')) await sleep(20)
    })(), 10000, 'the replica in sync')
    const namespace = `publisher-${randomUUID()}`
    const broker = open(t, { url: server.url, namespace, waitReplicas: 1, commandTimeout: 3000 })
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => broker.publish('lobby', 'message', String(i))))
    const onReplica = admin(t, replica.url)
    t.same((await onReplica.xrange(keyOf(namespace), '-', '+')).map(([id]) => id), ids, 'every resolved event is on the replica')

    await replica.stop('SIGKILL')
    const unreplicated = await broker.publish('lobby', 'message', '"alone"').then(() => undefined, (err: Error & { code?: string }) => err)
    t.equal(unreplicated?.code, 'FRT_ERR_BROKER_UNAVAILABLE', 'with no replica, the publish rejects')
    t.match(unreplicated?.message, /replicas acknowledged|did not answer/, 'saying why')
    t.equal((await redis.xrange(keyOf(namespace), '-', '+')).length, 21, 'the event is on the master')
  })

  test('waitReplicas: a connection lost while WAIT waits rejects the batch, whose events are in the log', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const proxy = await startProxy(t, server.port)
    const redis = admin(t, server.url)
    const namespace = `publisher-${randomUUID()}`
    const broker = open(t, { url: proxy.url, namespace, waitReplicas: 1, commandTimeout: 10000 })
    const published = Array.from({ length: 3 }, (_, i) => broker.publish('lobby', 'message', String(i)))
    published.forEach((promise) => { promise.catch(() => {}) })
    // No replica: WAIT blocks; the XADDs before it are written.
    await within((async () => { while (await redis.xlen(keyOf(namespace)) < 3) await sleep(10) })(), 5000, 'the XADDs')
    proxy.cut()
    const errors = await Promise.all(published.map((promise) => promise.then(() => undefined, (err: Error & { code?: string }) => err)))
    t.same(errors.map((err) => err?.code), ['FRT_ERR_BROKER_UNAVAILABLE', 'FRT_ERR_BROKER_UNAVAILABLE', 'FRT_ERR_BROKER_UNAVAILABLE'])
    t.match(errors[0]?.message, /WAIT failed/, 'saying WAIT did not answer')
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
