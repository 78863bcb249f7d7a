// Several Fastify instances in one process on one Redis (REDIS_URL), as behind a load balancer: a
// topic published on any instance reaches SSE and WebSocket clients on every instance, and a client
// resumes on another instance than the one it left with no gap and no duplicate. Each test uses
// its own namespace, so test files running in parallel on the same Redis never share a stream.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { fastifySse, fastifyWs } from '../../../lib/index.js'
import { redisBroker } from '../../../lib/brokers/redis/index.js'
import { injectSSE } from '../../../lib/testing/index.js'
import { chat, idOf, withRedisUrl, instance, openSse, openWs, readUntil, sseClient, transports, until, type Client, type Instance } from '../../helpers/redis.js'
import { deferred, sleep, within } from '../../helpers/ws.js'
import { recordEscapes } from '../../helpers/index.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

function namespace (): string {
  return `test-${randomUUID()}`
}

function compareIds (a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am === bm ? as - bs : am - bm
}

function isIncreasing (ids: string[]): boolean {
  return ids.every((id, i) => i === 0 || compareIds(ids[i - 1] as string, id) < 0)
}

/** How many connections to Redis carry this client name. */
async function namedConnections (admin: Redis, name: string): Promise<number> {
  const list = await admin.client('LIST') as string
  return list.split('\n').filter((line) => line.includes(` name=${name} `)).length
}

/** The count of connections with this name once it reaches `expected`, or the last count after 3 s. */
async function settledCount (admin: Redis, name: string, expected: number): Promise<number> {
  let count = await namedConnections(admin, name)
  for (let i = 0; i < 150 && count !== expected; i++) {
    await sleep(20)
    count = await namedConnections(admin, name)
  }
  return count
}

function withName (url: string, name: string): string {
  const parsed = new URL(url)
  parsed.searchParams.set('connectionName', name)
  return parsed.toString()
}

withRedisUrl(t, suite)

function suite (url: string): void {
  /** A raw connection for checks, closed when the test ends. */
  function admin (t: Test): Redis {
    const redis = new Redis(url)
    redis.on('error', () => {})
    t.teardown(() => { redis.disconnect() })
    return redis
  }

  /** t.test, plus the check that nothing escaped as an uncaughtException or unhandledRejection. */
  function test (name: string, fn: (t: Test) => Promise<void>): void {
    t.test(name, async (t) => {
      await fn(t)
      t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
    })
  }

  test('a topic published on one instance reaches SSE and WebSocket clients on every instance, with the same id', async (t) => {
    const ns = namespace()
    const a = await instance(t, url, ns)
    const b = await instance(t, url, ns)
    const clients = [await openSse(a), await openWs(a), await openSse(b), await openWs(b)]
    const fromB = await b.lobby.publish('message', { n: 1, from: 'B' })
    const fromA = await a.lobby.publish('message', { n: 2, from: 'A' })
    t.match(fromB, /^\d+-\d+$/)
    t.ok(compareIds(fromB, fromA) < 0, 'ids are ordered across instances')
    for (const [i, client] of clients.entries()) {
      t.same(await client.next(), { type: 'event', id: fromB, event: 'message', data: '{"n":1,"from":"B"}' }, `client ${i}: from B`)
      t.same(await client.next(), { type: 'event', id: fromA, event: 'message', data: '{"n":2,"from":"A"}' }, `client ${i}: from A`)
    }
    const stored = await admin(t).xrange(`frt:{${ns}}:log`, '-', '+')
    const lobbyEntries = stored.filter(([, fields]) => fields.includes('lobby'))
    t.same(lobbyEntries.map(([id]) => id), [fromB, fromA], 'one Redis entry per event, whose id is the event id')
    for (const client of clients) await client.leave()
    await t.resolves(a.close())
    await t.resolves(b.close())
  })

  test('an event of another topic is not delivered', async (t) => {
    const ns = namespace()
    const a = await instance(t, url, ns)
    const b = await instance(t, url, ns)
    const clients = [await openSse(a), await openWs(a)]
    await b.other.publish('message', { n: 0, from: 'B' })
    const id = await b.lobby.publish('message', { n: 1, from: 'B' })
    for (const client of clients) t.equal(idOf(await client.next()), id)
    for (const client of clients) await client.leave()
  })

  for (const [name, open] of Object.entries(transports)) {
    test(`${name}: a client that leaves A and resumes on B gets exactly the events it missed, from both instances`, async (t) => {
      const ns = namespace()
      const a = await instance(t, url, ns)
      const b = await instance(t, url, ns)
      const client = await open(a)
      const seen = [
        await a.lobby.publish('message', { n: 1, from: 'A' }),
        await b.lobby.publish('message', { n: 2, from: 'B' })
      ]
      t.same([idOf(await client.next()), idOf(await client.next())], seen)
      t.same(await client.leave(), [], 'nothing else arrived')
      const missed: string[] = []
      for (let n = 3; n < 9; n++) {
        const source = n % 2 === 0 ? b : a
        missed.push(await source.lobby.publish('message', { n, from: n % 2 === 0 ? 'B' : 'A' }))
        await source.other.publish('message', { n, from: 'noise' })
      }
      const resumed = await open(b, seen[1])
      const replayed = []
      for (let i = 0; i < missed.length; i++) replayed.push(await resumed.next())
      t.same(replayed.map(idOf), missed, 'the missed events, in order, none twice')
      t.same(replayed.map((event) => event.type === 'event' && JSON.parse(event.data).n), [3, 4, 5, 6, 7, 8])
      const live = await a.lobby.publish('message', { n: 9, from: 'A' })
      t.equal(idOf(await resumed.next()), live, 'then live, with nothing in between')
      await resumed.leave()
    })

    test(`${name}: resuming on B while A and B both publish concurrently: no gap, no duplicate`, async (t) => {
      const ns = namespace()
      const a = await instance(t, url, ns)
      const b = await instance(t, url, ns)
      // A third listener that never leaves sees the whole topic in order.
      const watcher = await openSse(b)
      const client = await open(a)
      // While the client is away both instances publish more than one history page (512 entries).
      const PER_INSTANCE = 400
      const AWAY_AT = 60 // each loop waits here until the client has left,
      const RESUME_AT = 360 // and here until its resume starts, so the rest races the replay
      const left = deferred()
      const resuming = deferred()
      let published = 0
      async function publishLoop (inst: Instance, from: string): Promise<string[]> {
        const ids: string[] = []
        for (let n = 0; n < PER_INSTANCE; n++) {
          if (n === AWAY_AT) await left.promise
          if (n === RESUME_AT) await resuming.promise
          ids.push(await inst.lobby.publish('message', { n, from }))
          published++
          if (n % 10 === 0) await inst.other.publish('message', { n, from })
        }
        return ids
      }
      const loops = Promise.all([publishLoop(a, 'A'), publishLoop(b, 'B')])
      loops.catch(() => {})

      const before: string[] = []
      while (before.length < 80) before.push(idOf(await client.next()))
      before.push(...(await client.leave()).map(idOf))
      const lastSeen = before.at(-1) as string
      left.resolve()
      await until(() => published === 2 * RESUME_AT, 5000, 'the events published while the client is away')
      resuming.resolve()
      const resumed = await open(b, lastSeen)
      const [idsA, idsB] = await within(loops, 10000, 'the publish loops')
      const all = [...idsA, ...idsB].sort(compareIds)
      t.equal(new Set(all).size, 2 * PER_INSTANCE, 'every publish got its own id')
      const last = all.at(-1) as string

      const after = await readUntil(resumed, last, all.length)
      const union = [...before, ...after]
      t.equal(new Set(union).size, union.length, 'no event twice')
      t.ok(isIncreasing(union), 'ordered by id')
      t.same(union, all, 'before + after = every event of the topic: no gap')
      t.ok(after.length > 2 * (PER_INSTANCE - RESUME_AT), `the resumed client replayed what it missed (${after.length} events)`)
      t.same(await readUntil(watcher, last, all.length), all, 'the watcher saw the same ordered log')

      const stored = await admin(t).xrange(`frt:{${ns}}:log`, '-', '+')
      const lobbyIds = stored.filter(([, fields]) => fields[fields.indexOf('t') + 1] === 'lobby').map(([id]) => id)
      t.same(lobbyIds, all, 'which is the topic\'s entries in the Redis stream')
      await resumed.leave()
      await watcher.leave()
    })
  }

  test('an id that cannot be resumed on the other instance is a reset, then live', async (t) => {
    const ns = namespace()
    const a = await instance(t, url, ns, { maxLen: 10 })
    const b = await instance(t, url, ns, { maxLen: 10 })
    const redis = admin(t)
    const first = await a.lobby.publish('message', { n: 0, from: 'A' })
    // MAXLEN ~ trims whole stream nodes (100 entries by default): publish until `first` is gone.
    let n = 1
    while ((await redis.xrange(`frt:{${ns}}:log`, first, first)).length > 0) {
      if (n > 1000) throw new Error('the first entry was never trimmed')
      await a.lobby.publish('message', { n: n++, from: 'A' })
    }
    const newest = await a.lobby.publish('message', { n, from: 'A' })
    const [ms, seq] = newest.split('-').map(Number) as [number, number]
    const cases: Array<[string, string]> = [
      ['trimmed', first],
      ['never issued', `${ms}-${seq + 1000}`],
      ['malformed', 'not-an-id']
    ]
    for (const [name, open] of Object.entries(transports)) {
      for (const [what, id] of cases) {
        const client = await open(b, id)
        t.same(await client.next(), { type: 'reset' }, `${name}: ${what}`)
        const live = await a.lobby.publish('message', { n: -1, from: 'A' })
        t.equal(idOf(await client.next()), live, `${name}: ${what}: then live`)
        await client.leave()
      }
    }
  })

  test('app.close() leaves a broker passed in open; broker.close() closes the connections it opened', async (t) => {
    const ns = namespace()
    const name = `frt-${randomUUID()}`
    const redis = admin(t)
    const broker = redisBroker({ url: withName(url, name), namespace: ns })
    let brokerClosed = false
    t.teardown(async () => { if (!brokerClosed) await broker.close() })
    // One broker object serving two apps.
    const apps = [Fastify({ logger: false }), Fastify({ logger: false })]
    const clients: Client[] = []
    for (const app of apps) {
      t.teardown(() => app.close())
      await app.register(fastifySse, { heartbeat: 0, broker })
      const lobby = app.realtime.topic('lobby', { contract: chat })
      app.get('/sse', (request, reply) => { reply.sse().subscribe(lobby) })
      clients.push(sseClient(await injectSSE(app, { url: '/sse' })))
    }
    const lobby = (apps[1] as FastifyInstance).realtime.topic('lobby', { contract: chat })
    const first = await lobby.publish('message', { n: 1, from: 'one' })
    for (const client of clients) t.equal(idOf(await client.next()), first)
    const baseline = await namedConnections(redis, name)
    t.equal(baseline, 2, 'a writer and a reader')

    await t.resolves(within((apps[0] as FastifyInstance).close(), 3000, 'app.close()'))
    await t.resolves(until(() => (clients[0] as Client).ended, 3000, 'the stream of the closed app to end'), 'the closed app ended its stream')
    const second = await within(broker.publish('lobby', 'message', '{"n":2,"from":"broker"}'), 3000, 'a publish after app.close()')
    t.equal(idOf(await (clients[1] as Client).next()), second, 'the broker still publishes, and the other app still receives')
    t.equal(await namedConnections(redis, name), 2, 'no connection was closed by app.close()')

    await t.resolves(within((apps[1] as FastifyInstance).close(), 3000, 'app.close()'))
    await t.resolves(within(broker.close(), 3000, 'broker.close()'))
    brokerClosed = true
    await t.resolves(broker.close(), 'close() is idempotent')
    // The server sees a closed socket a moment after close() resolves: poll, bounded.
    t.equal(await settledCount(redis, name, 0), 0, 'broker.close() closed the writer and the reader')
    await t.rejects(broker.publish('lobby', 'message', '{}'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'a closed broker rejects publishes')
  })

  test('an ioredis instance passed as client works, and neither app.close() nor broker.close() closes it', async (t) => {
    const ns = namespace()
    const name = `frt-client-${randomUUID()}`
    const redis = admin(t)
    const client = new Redis(url, { connectionName: name })
    t.teardown(() => { client.disconnect() })
    await within(new Promise((resolve) => client.once('ready', resolve)), 3000, 'the client')
    const broker = redisBroker({ client, namespace: ns })
    const app = Fastify({ logger: false })
    await app.register(fastifySse, { heartbeat: 0, broker })
    await app.register(fastifyWs, { heartbeat: 0, broker })
    const lobby = app.realtime.topic('lobby', { contract: chat })
    app.get('/sse', (request, reply) => { reply.sse().subscribe(lobby) })
    t.teardown(() => app.close())
    // Another instance on a URL broker shares the log.
    const other = await instance(t, url, ns)
    const sse = sseClient(await injectSSE(app, { url: '/sse' }))
    const ws = await openWs(other)
    const id = await lobby.publish('message', { n: 1, from: 'client' })
    t.equal(idOf(await sse.next()), id, 'the app on the client broker receives it')
    t.equal(idOf(await ws.next()), id, 'an instance on a URL broker receives it')
    const fromOther = await other.lobby.publish('message', { n: 2, from: 'url' })
    t.equal(idOf(await sse.next()), fromOther, 'and the client broker receives the other instance\'s')

    await t.resolves(within(app.close(), 3000, 'app.close()'))
    await t.resolves(within(broker.close(), 3000, 'broker.close()'))
    t.equal(client.status, 'ready', 'the client is still connected')
    t.equal(await client.ping(), 'PONG', 'and still usable')
    t.equal(await settledCount(redis, name, 1), 1, 'the broker closed the reader it duplicated, and only it')
    await ws.leave()
    await t.resolves(other.close())
  })
}
