// Fault catalogue F3 against a real redis-server that this file starts itself (one per test, on a
// free loopback port, no persistence), so it can pause, kill and restart it without disturbing
// other test files: publishes reject and then recover, connections survive, no event is delivered
// twice, resumable events are not lost. A small TCP proxy (test/helpers/redis-proxy.ts) stands in
// for a flaky link where a fault must hit one connection only (a reply lost on the wire, one
// instance's reader lagging behind). The same faults on a Redis Cluster: cluster-faults.test.ts.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { RedisBrokerOptions } from '../../../lib/brokers/redis/index.js'
import { injectSSE } from '../../../lib/testing/index.js'
import {
  idOf,
  instance as sharedInstance,
  openSse,
  openWs,
  readEventsUntil,
  readUntil,
  transports,
  RedisServer,
  type Instance
} from '../../helpers/redis.js'
import { sleep, within } from '../../helpers/ws.js'
import { recordEscapes } from '../../helpers/index.js'
import { startProxy } from '../../helpers/redis-proxy.js'

/** Short, so a paused Redis fails a publish quickly; the assertions never measure it. */
const COMMAND_TIMEOUT = 300

/** The shared instance, with a short command timeout. */
function instance (t: Test, url: string, ns: string, options: Partial<RedisBrokerOptions> = {}): Promise<Instance> {
  return sharedInstance(t, url, ns, { commandTimeout: COMMAND_TIMEOUT, ...options })
}

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

function namespace (): string {
  return `faults-${randomUUID()}`
}

function keyOf (ns: string): string {
  return `frt:{${ns}}:log`
}

/** Publishes until the broker takes the event (each attempt its own data); bounded. */
async function publishWhenBack (inst: Instance, from: string): Promise<string> {
  return within((async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await inst.lobby.publish('message', { n: 1000 + attempt, from })
      } catch (err) {
        if ((err as { code?: string }).code !== 'FRT_ERR_BROKER_UNAVAILABLE') throw err
        await sleep(50)
      }
    }
  })(), 10000, `a publish on ${from} once Redis is back`)
}

/** The topic's entries in the namespace's stream, read on a connection of its own. */
async function storedEntries (t: Test, url: string, ns: string, topic = 'lobby'): Promise<Array<{ id: string, data: string }>> {
  const redis = new Redis(url)
  redis.on('error', () => {})
  t.teardown(() => { redis.disconnect() })
  const entries = await within(redis.xrange(keyOf(ns), '-', '+'), 3000, 'XRANGE')
  redis.disconnect()
  return entries
    .map(([id, fields]) => ({ id, topic: fields[fields.indexOf('t') + 1], data: fields[fields.indexOf('d') + 1] as string }))
    .filter((entry) => entry.topic === topic)
    .map(({ id, data }) => ({ id, data }))
}

// ---- the tests ----

const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0

if (!hasRedisServer) {
  if (process.env.CI) {
    t.fail('redis-server is not installed: in CI the Redis fault tests must run, never be skipped (.ci/run installs it)')
  } else {
    t.plan(0, 'redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
} else {
  suite()
}

function suite (): void {
  /** t.test, plus the check that nothing escaped as an uncaughtException or unhandledRejection. */
  function test (name: string, fn: (t: Test) => Promise<void>): void {
    t.test(name, async (t) => {
      await fn(t)
      t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
    })
  }

  /** Every instance closes (app, then its broker) without hanging. */
  async function closeAll (t: Test, instances: Instance[]): Promise<void> {
    for (const inst of instances) await t.resolves(inst.close(), 'app.close() and broker.close() resolve')
  }

  test('Redis paused (kill -STOP): publishes reject, connections stay, and after kill -CONT every event arrives once', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const ns = namespace()
    const a = await instance(t, server.url, ns)
    const b = await instance(t, server.url, ns)
    const clients = [await openSse(a), await openWs(a), await openSse(b), await openWs(b)]
    const leaving = await openSse(a)
    const before: string[] = []
    for (let n = 0; n < 6; n++) before.push(await (n % 2 === 0 ? a : b).lobby.publish('message', { n, from: 'before' }))
    const seenByLeaving = [idOf(await leaving.next()), idOf(await leaving.next())]
    seenByLeaving.push(...(await leaving.leave()).map(idOf))
    for (const client of clients) t.same(await readUntil(client, before.at(-1) as string, before.length), before)

    server.pause()
    for (const [n, inst] of [a, b, a].entries()) {
      await t.rejects(within(inst.lobby.publish('message', { n: 100 + n, from: 'paused' }), 5000, 'a publish while Redis is paused'),
        { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, `publish ${n} rejects while paused`)
    }
    // A resume cannot be answered now: the stream is closed, so the client comes back later.
    const early = await injectSSE(b.app, { url: '/sse', lastEventId: seenByLeaving.at(-1) })
    await t.resolves(within(early.ended, 5000, 'the stream whose history cannot be read'), 'a resume while paused closes the stream')
    t.same(clients.map((client) => client.ended), [false, false, false, false], 'open connections stay open')
    server.resume()

    const after: string[] = []
    for (let n = 0; n < 4; n++) {
      after.push(await within((n % 2 === 0 ? b : a).lobby.publish('message', { n, from: 'after' }), 5000, 'a publish after kill -CONT'))
    }
    const last = after.at(-1) as string
    const stored = (await storedEntries(t, server.url, ns)).map((entry) => entry.id)
    t.ok([...before, ...after].every((id) => stored.includes(id)), 'every accepted publish is in the log')
    t.comment(`${stored.length - before.length - after.length} of the 3 rejected publishes reached Redis after kill -CONT`)
    const rest = stored.slice(before.length)
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, last, stored.length), rest, `client ${i}: everything after the pause, once, in log order`)
    }
    for (const [name, open] of Object.entries(transports)) {
      const resumed = await open(b, seenByLeaving.at(-1))
      const replayed = await readUntil(resumed, last, stored.length)
      t.same([...seenByLeaving, ...replayed], stored, `${name}: a client that left before the pause resumes on B with no gap and no duplicate`)
      await resumed.leave()
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`Redis stopped (${signal}) and restarted empty: publishes reject at once, connections stay, readers resume`, async (t) => {
      const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
      const ns = namespace()
      const a = await instance(t, server.url, ns)
      const b = await instance(t, server.url, ns)
      const clients = [await openSse(a), await openWs(a), await openSse(b), await openWs(b)]
      const before: string[] = []
      for (let n = 0; n < 4; n++) before.push(await (n % 2 === 0 ? a : b).lobby.publish('message', { n, from: 'before' }))
      for (const client of clients) t.same(await readUntil(client, before.at(-1) as string, before.length), before)

      await server.stop(signal)
      await sleep(100) // the brokers see their connections close
      for (const [n, inst] of [a, b, a].entries()) {
        await t.rejects(within(inst.lobby.publish('message', { n: 100 + n, from: 'down' }), 2000, 'a publish while Redis is down'),
          { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, `publish ${n} rejects while Redis is down`)
        await sleep(50)
      }
      t.same(clients.map((client) => client.ended), [false, false, false, false], 'open connections stay open')

      await server.start()
      const after = [await publishWhenBack(a, 'A'), await publishWhenBack(b, 'B')]
      after.push(await a.lobby.publish('message', { n: 2000, from: 'A' }), await b.lobby.publish('message', { n: 2001, from: 'B' }))
      const stored = (await storedEntries(t, server.url, ns)).map((entry) => entry.id)
      t.ok(after.every((id) => stored.includes(id)), 'the publishes after the restart are in the new log')
      for (const [i, client] of clients.entries()) {
        t.same(await readUntil(client, after.at(-1) as string, stored.length), stored, `client ${i}: every event of the new log, once, in order`)
      }
      for (const [name, open] of Object.entries(transports)) {
        const resumed = await open(b, before.at(-1))
        t.same(await resumed.next(), { type: 'reset' }, `${name}: an id from before the restart is a reset`)
        const live = await a.lobby.publish('message', { n: 3000, from: 'A' })
        t.equal(idOf(await resumed.next()), live, `${name}: then live`)
        await resumed.leave()
      }
      for (const client of clients) await client.leave()
      await closeAll(t, [a, b])
    })
  }

  test('a recreated stream whose ids are below the readers\' cursor is read from its start', async (t) => {
    // A Redis whose clock is behind the old one (failover, restart elsewhere) issues ids below the cursor.
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const ns = namespace()
    const a = await instance(t, server.url, ns)
    const b = await instance(t, server.url, ns)
    const clients = [await openSse(a, undefined, 10000), await openWs(b, undefined, 10000)]
    const admin = new Redis(server.url)
    admin.on('error', () => {})
    await admin.xadd(keyOf(ns), `${Date.now() + 3_600_000}-0`, 't', 'other', 'e', 'message', 'd', '{"n":0,"from":"the future"}')
    admin.disconnect()
    const ahead = await a.lobby.publish('message', { n: 1, from: 'A' })
    for (const client of clients) t.equal(idOf(await client.next()), ahead, 'the readers\' cursor is an hour ahead')

    await server.stop('SIGKILL')
    await server.start()
    const after = [await publishWhenBack(a, 'A'), await publishWhenBack(b, 'B')]
    t.ok(after.every((id) => Number(id.split('-')[0]) < Number(ahead.split('-')[0])), 'the new ids are below the cursor')
    const stored = (await storedEntries(t, server.url, ns)).map((entry) => entry.id)
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, after.at(-1) as string, stored.length), stored, `client ${i}: the new log, once, in order`)
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })

  test('a stream opened while Redis is unreachable gets every event published once it is back', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const proxy = await startProxy(t, server.port)
    const ns = namespace()
    const b = await instance(t, server.url, ns)
    proxy.cut() // A cannot reach Redis; B can
    const a = await instance(t, proxy.url, ns)
    const clients = [await openSse(a), await openWs(a)]
    await sleep(2 * COMMAND_TIMEOUT) // A's broker found Redis away and retries
    await t.rejects(a.lobby.publish('message', { n: 0, from: 'A' }), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'A cannot publish')
    const first = await b.lobby.publish('message', { n: 1, from: 'B' }) // after A's streams opened, before A is back
    proxy.restore()
    const second = await publishWhenBack(a, 'A')
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, second, 2), [first, second], `client ${i}: both events, in order`)
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })

  for (const [name, open] of Object.entries(transports)) {
    test(`${name}: a subscription made while the broker is still connecting gets what another instance publishes once subscribe() resolved`, async (t) => {
      const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
      const proxy = await startProxy(t, server.port)
      const ns = namespace()
      const a = await instance(t, server.url, ns)
      proxy.hold('all') // B's connection handshake waits, as on a slow link or a busy Redis
      const b = await instance(t, proxy.url, ns)
      const client = await open(b) // subscribe() has resolved: the subscription is live
      const id = await a.lobby.publish('message', { n: 1, from: 'A' })
      proxy.release()
      const next = client.next()
      next.catch(() => {})
      const got = await Promise.race([next, sleep(2000).then(() => 'nothing within 2 s')])
      t.same(got, { type: 'event', id, event: 'message', data: '{"n":1,"from":"A"}' }, 'the event published after subscribe() resolved')
      await client.leave()
      await closeAll(t, [a, b])
    })
  }

  for (const [name, open] of Object.entries(transports)) {
    test(`${name}: on an instance that has just started, a new client gets nothing from before it subscribed and a resumed one nothing twice`, async (t) => {
      const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
      const proxy = await startProxy(t, server.port)
      const ns = namespace()
      const a = await instance(t, server.url, ns)
      const leaving = await open(a)
      const last = await a.lobby.publish('message', { n: 1, from: 'A' })
      t.equal(idOf(await leaving.next()), last)
      t.same(await leaving.leave(), [])
      // A new instance joins (a rolling deploy) and its first clients arrive while it connects.
      proxy.hold('all')
      const b = await instance(t, proxy.url, ns)
      const fresh = await open(b)
      const resuming = open(b, last)
      resuming.catch(() => {})
      await sleep(50)
      proxy.release()
      const resumed = await resuming
      const live = await a.lobby.publish('message', { n: 2, from: 'A' })
      t.equal(idOf(await resumed.next()), live, 'the resumed client: the next event, not the last one it saw again')
      t.equal(idOf(await fresh.next()), live, 'the new client: the first event published after it subscribed')
      await resumed.leave()
      await fresh.leave()
      await closeAll(t, [a, b])
    })
  }

  test('Redis answering with errors (the key overwritten with a string): publishes reject, readers retry, both recover', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const ns = namespace()
    const a = await instance(t, server.url, ns)
    const clients = [await openSse(a), await openWs(a)]
    const before = await a.lobby.publish('message', { n: 0, from: 'A' })
    for (const client of clients) t.equal(idOf(await client.next()), before)
    const admin = new Redis(server.url)
    admin.on('error', () => {})
    t.teardown(() => { admin.disconnect() })
    await admin.set(keyOf(ns), 'not a stream') // WRONGTYPE for every stream command
    const b = await instance(t, server.url, ns) // starts reading while the key is wrong
    const bClient = await openSse(b)

    await t.rejects(a.lobby.publish('message', { n: 1, from: 'A' }), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'a publish rejects with the coded error')
    const resume = await injectSSE(a.app, { url: '/sse', lastEventId: before })
    await t.resolves(within(resume.ended, 3000, 'the stream whose history cannot be read'), 'a resume closes the stream, so the client retries')
    // A reader blocked in XREAD before the change gets the error on its next read: wake it now.
    const list = await admin.client('LIST') as string
    for (const [, id] of list.matchAll(/^id=(\d+) .* cmd=xread\b/gm)) await admin.client('UNBLOCK', id as string, 'ERROR')
    await sleep(600) // the read loops meet the error and retry
    t.same([...clients, bClient].map((client) => client.ended), [false, false, false], 'open connections stay open')

    await admin.del(keyOf(ns))
    const after = await publishWhenBack(b, 'B')
    for (const client of [...clients, bClient]) t.equal(idOf(await client.next()), after, 'delivery resumes on both instances')
    for (const client of [...clients, bClient]) await client.leave()
    await closeAll(t, [a, b])
  })

  test('publishes while the connection to a paused Redis is being set up reject, and leak no listener', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const warnings: Error[] = []
    const onWarning = (warning: Error): void => { warnings.push(warning) }
    process.on('warning', onWarning)
    t.teardown(() => { process.off('warning', onWarning) })
    server.pause() // the kernel still accepts the TCP connection; Redis never answers the handshake
    const a = await instance(t, server.url, namespace(), { commandTimeout: 100 })
    for (let n = 0; n < 12; n++) {
      await t.rejects(within(a.lobby.publish('message', { n, from: 'A' }), 3000, 'a publish while connecting'),
        { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
    }
    await sleep(10) // warnings are emitted on a later tick
    t.same(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map((warning) => warning.message), [], 'no MaxListenersExceededWarning')
    await t.resolves(a.close(), 'app.close() and broker.close() resolve while Redis is paused')
    server.resume()
  })

  test('a publish whose XADD reached Redis but whose reply was lost is in the log and delivered once', async (t) => {
    const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
    const proxy = await startProxy(t, server.port)
    const ns = namespace()
    const a = await instance(t, proxy.url, ns)
    const b = await instance(t, server.url, ns)
    const clients = [await openSse(a), await openWs(b)]
    proxy.loseNextXaddReply()
    const outcome = await within(a.lobby.publish('message', { n: 1, from: 'lost reply' }).then((id) => id, (err: Error) => err), 5000, 'the publish')
    t.comment(`the publish ${outcome instanceof Error ? `rejected: ${outcome.message}` : `resolved: ${outcome}`}`)
    const marker = await publishWhenBack(b, 'marker')
    const stored = await storedEntries(t, server.url, ns)
    t.equal(stored.filter((entry) => entry.data.includes('lost reply')).length, 1, 'the event is in the log once')
    for (const [i, client] of clients.entries()) {
      const events = await readEventsUntil(client, marker, stored.length)
      t.same(events.map((event) => event.id), stored.map((entry) => entry.id), `client ${i}: the log, each entry once`)
      t.equal(events.filter((event) => event.data.includes('lost reply')).length, 1, `client ${i}: the event once`)
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })

  for (const [name, open] of Object.entries(transports)) {
    test(`${name}: resuming on an instance whose reader lags behind the client's last id delivers nothing twice`, async (t) => {
      const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
      const proxy = await startProxy(t, server.port)
      const ns = namespace()
      const a = await instance(t, server.url, ns)
      const b = await instance(t, proxy.url, ns) // B's connections go through the slow link
      const client = await open(a)
      const watcher = await openSse(b)
      const warm = await a.lobby.publish('message', { n: 0, from: 'A' })
      t.equal(idOf(await client.next()), warm)
      t.equal(idOf(await watcher.next()), warm, 'B\'s reader is tailing')

      proxy.hold('readers')
      const last = await a.lobby.publish('message', { n: 1, from: 'A' })
      t.equal(idOf(await client.next()), last)
      t.same(await client.leave(), [])
      const resumed = await open(b, last) // nothing to replay after `last`; B's reader has not seen it yet
      proxy.release()
      t.equal(idOf(await watcher.next()), last, 'B\'s reader caught up')
      const live = await a.lobby.publish('message', { n: 2, from: 'A' })
      t.equal(idOf(await resumed.next()), live, 'the first event after resuming is the next one, not the last one seen again')
      await resumed.leave()
      await watcher.leave()
      await closeAll(t, [a, b])
    })
  }
}
