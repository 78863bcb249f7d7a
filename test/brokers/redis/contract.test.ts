// The broker contract (test/broker-contract.ts) against redisBroker on a real Redis, plus what only
// Redis has: namespaces, a shared log across brokers, the `client` and `url` ownership rules.
// Needs REDIS_URL (scripts/redis-test-server.sh starts a throwaway server; .ci/run always does).
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { Broker } from '../../../lib/brokers/broker.js'
import { redisBroker, type RedisBrokerOptions } from '../../../lib/brokers/redis/index.js'
import { brokerContract, record, type ContractBrokerOptions } from '../../helpers/broker-contract.js'

const redisUrl = process.env.REDIS_URL
const inCI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'

if (redisUrl === undefined || redisUrl === '') {
  if (inCI) t.fail('REDIS_URL is not set: .ci/run must start redis-server')
  else t.plan(0, 'REDIS_URL not set: start Redis with scripts/redis-test-server.sh to run the Redis tests')
} else {
  redisTests(redisUrl)
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Calls `read` until `done(value)` holds or `timeoutMs` passes; returns the last value read. */
async function eventually<T> (read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let value = await read()
  while (!done(value) && Date.now() < deadline) {
    await sleep(25)
    value = await read()
  }
  return value
}

/** The code of what `make()` throws or rejects with, or 'did not throw' (closing the broker it made). */
async function codeOfMaking (make: () => Broker): Promise<unknown> {
  let broker: Broker
  try {
    broker = make()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  await broker.close()
  return 'did not throw'
}

/** A loopback port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Resolves to 'timed out' when `promise` has not settled within `ms`: a broker must never hang. */
function within<T> (promise: Promise<T>, ms: number): Promise<T | 'timed out'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<'timed out'>((resolve) => { timer = setTimeout(() => resolve('timed out'), ms) })
  ])
}

function redisTests (url: string): void {
  // Every namespace of this run starts with this prefix, so tests never share a stream and the
  // keys are removed at the end, whatever their layout.
  const prefix = `frt-test-${randomBytes(4).toString('hex')}`
  let count = 0
  const newNamespace = (): string => `${prefix}-${++count}`
  const namespaces = new WeakMap<Broker, string>()

  const admin = new Redis(url, { lazyConnect: true })
  t.teardown(async () => {
    let cursor = '0'
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', `*${prefix}-*`, 'COUNT', 1000)
      if (keys.length > 0) await admin.del(...keys)
      cursor = next
    } while (cursor !== '0')
    await admin.quit()
  })

  /** How many connections Redis has with this client name (CLIENT SETNAME, set by ioredis' connectionName). */
  async function connectionsNamed (name: string): Promise<number> {
    const list = await admin.call('CLIENT', 'LIST') as string
    return list.split('\n').filter((line) => line.includes(` name=${name} `)).length
  }

  /** The last command the oldest connection with this name ran (CLIENT LIST's `cmd`). */
  async function lastCommandOfClient (name: string): Promise<string> {
    const list = await admin.call('CLIENT', 'LIST') as string
    const line = list.split('\n').filter((line) => line.includes(` name=${name} `)).sort((a, b) => idOf(a) - idOf(b))[0] ?? ''
    return /cmd=(\S+)/.exec(line)?.[1] ?? ''
  }

  function idOf (line: string): number {
    return Number(/^id=(\d+)/.exec(line)?.[1])
  }

  function open (t: Test, options: RedisBrokerOptions): Broker {
    const broker = redisBroker(options)
    t.teardown(() => broker.close())
    return broker
  }

  brokerContract(t, 'redisBroker', (options?: ContractBrokerOptions) => {
    const namespace = newNamespace()
    const broker = redisBroker({ url, namespace, ...options } as RedisBrokerOptions)
    namespaces.set(broker, namespace)
    return broker
  }, {
    approximateTrim: true, // XADD MAXLEN ~
    startMarginMs: 1, // a new broker tails the log from the moment it was made
    makePeer: (broker, options) => redisBroker({ url, namespace: namespaces.get(broker), ...options } as RedisBrokerOptions)
  })

  t.test('redisBroker', async (t) => {
    t.test('brokers with different namespaces do not see each other\'s events', async (t) => {
      const one = open(t, { url, namespace: newNamespace() })
      const two = open(t, { url, namespace: newNamespace() })
      const seenByOne = record(one)
      const seenByTwo = record(two)
      const fromTwo = await two.publish('lobby', 'message', '"two"')
      // Each stream numbers its own entries: a later millisecond keeps the two ids apart.
      while (Date.now() <= Number(fromTwo.split('-')[0]) + 1) await sleep(2)
      const fromOne = await one.publish('lobby', 'message', '"one"')
      // Each broker's own event is the barrier: the other's would have arrived before it (or not at all).
      t.same((await seenByOne.waitFor(1)).map((event) => event.data), ['"one"'])
      t.same((await seenByTwo.waitFor(1)).map((event) => event.data), ['"two"'])
      await sleep(100)
      t.equal(seenByOne.events.length, 1, 'nothing else reached one')
      t.equal(seenByTwo.events.length, 1, 'nothing else reached two')
      t.equal(await two.history(fromOne, new Set(['lobby'])), null, 'an id of the other log is unknown here')
      t.equal(await one.history(fromTwo, new Set(['lobby'])), null)
    })

    t.test('brokers with the same namespace share one log: delivery and history', async (t) => {
      const namespace = newNamespace()
      const one = open(t, { url, namespace })
      const two = open(t, { url, namespace })
      const seenByTwo = record(two)
      const start = await two.publish('lobby', 'message', '"start"')
      const fromOne = await one.publish('lobby', 'message', '"from one"')
      t.same((await seenByTwo.waitFor(2)).map((event) => [event.id, event.data]), [[start, '"start"'], [fromOne, '"from one"']],
        'an event published on one reaches the other\'s listener')
      t.same((await two.history(start, new Set(['lobby'])))?.map((event) => event.id), [fromOne], 'history on two')
      t.same((await one.history(start, new Set(['lobby'])))?.map((event) => event.id), [fromOne], 'history on one')
    })

    t.test('a client passed in is only duplicated: the broker writes and reads on connections of its own, which close() closes', async (t) => {
      const name = `${prefix}-client`
      const client = new Redis(url, { connectionName: name })
      t.teardown(() => client.disconnect())
      await client.ping()
      const first = redisBroker({ client, namespace: newNamespace() })
      const second = open(t, { client, namespace: newNamespace() })
      const seen = record(first)
      const id = await first.publish('lobby', 'message', '{}')
      t.same((await seen.waitFor(1)).map((event) => event.id), [id], 'published and delivered')
      t.same(await first.history(id, new Set(['lobby'])), [])
      // Each broker writes and reads on duplicates of the client (which keep its name), never on the client itself.
      t.equal(await eventually(() => connectionsNamed(name), (n) => n === 5), 5, 'the client, and a writer and a reader per broker')
      t.equal(await lastCommandOfClient(name), 'ping', 'the client itself ran nothing since its own PING')
      await first.close()
      t.equal(await eventually(() => connectionsNamed(name), (n) => n === 3), 3, 'the first broker\'s connections are closed, not the client')
      t.equal(client.status, 'ready', 'the client is still open')
      t.equal(await client.ping(), 'PONG')
      t.match(await second.publish('lobby', 'message', '{}'), /^\d+-\d+$/, 'another broker on the same client still publishes')
      await second.close()
      t.equal(await eventually(() => connectionsNamed(name), (n) => n === 1), 1, 'only the client\'s own connection is left')
      t.equal(client.status, 'ready', 'still open after every broker closed')
    })

    t.test('a client passed in with lazyConnect is never connected by the broker, whose own connections work', async (t) => {
      const client = new Redis(url, { lazyConnect: true })
      t.teardown(() => client.disconnect())
      const broker = open(t, { client, namespace: newNamespace() })
      const seen = record(broker)
      const id = await broker.publish('lobby', 'message', '{}')
      t.match(id, /^\d+-\d+$/, 'publish resolves to an id')
      t.same((await seen.waitFor(1)).map((event) => event.id), [id], 'and the event is delivered')
      t.equal(client.status, 'wait', 'the client was not connected')
    })

    t.test('a client with a keyPrefix (as @fastify/redis users set) works for publish, delivery and history', async (t) => {
      const client = new Redis(url, { keyPrefix: `${prefix}-key:` })
      t.teardown(() => client.disconnect())
      const broker = open(t, { client, namespace: newNamespace() })
      const seen = record(broker)
      const first = await broker.publish('lobby', 'message', '1')
      const second = await broker.publish('lobby', 'message', '2')
      t.same((await seen.waitFor(2)).map((event) => event.id), [first, second])
      t.same((await broker.history(first, new Set(['lobby'])))?.map((event) => event.id), [second])
    })

    t.test('connections opened from url are closed by close()', async (t) => {
      const name = `${prefix}-url`
      const named = new URL(url)
      named.searchParams.set('connectionName', name)
      const broker = open(t, { url: named.href, namespace: newNamespace() })
      const seen = record(broker)
      const id = await broker.publish('lobby', 'message', '{}')
      t.same((await seen.waitFor(1)).map((event) => event.id), [id])
      const opened = await connectionsNamed(name)
      t.ok(opened >= 1, `the broker opened connections from the url (${opened})`)
      await broker.close()
      t.equal(await eventually(() => connectionsNamed(name), (n) => n === 0), 0, 'all of them are closed')
    })

    t.test('an unreachable Redis: publish and history reject with FRT_ERR_BROKER_UNAVAILABLE, never hang', async (t) => {
      const broker = open(t, { url: `redis://127.0.0.1:${await closedPort()}`, commandTimeout: 500, namespace: newNamespace() })
      const seen = record(broker)
      // Both are watched from the start: either may reject first.
      await Promise.all([
        t.rejects(within(broker.publish('lobby', 'message', '{}'), 10000), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'publish'),
        t.rejects(within(broker.history('1-0', new Set(['lobby'])), 10000), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'history')
      ])
      t.equal(await within(broker.close(), 10000), undefined, 'close() resolves')
      t.same(seen.events, [], 'nothing delivered')
    })

    t.test('options: a bad url, client, cluster, namespace, commandTimeout, maxPending or waitReplicas, or not exactly one of url, client and cluster, throws FRT_ERR_INVALID_OPTION', async (t) => {
      const cluster = [{ host: '127.0.0.1', port: await closedPort() }]
      const cases: Array<[string, unknown]> = [
        ['url ""', { url: '' }],
        ['url 6379', { url: 6379 }],
        ['cluster []', { cluster: [] }],
        ['cluster {}', { cluster: {} }],
        ['cluster ["127.0.0.1:6379"]', { cluster: ['127.0.0.1:6379'] }],
        ['cluster [null]', { cluster: [null] }],
        ['cluster [{ host: "", port: 6379 }]', { cluster: [{ host: '', port: 6379 }] }],
        ['cluster [{ host, port: 0 }]', { cluster: [{ host: '127.0.0.1', port: 0 }] }],
        ['cluster [{ host, port: 65536 }]', { cluster: [{ host: '127.0.0.1', port: 65536 }] }],
        ['cluster [{ host, port: "6379" }]', { cluster: [{ host: '127.0.0.1', port: '6379' }] }],
        ['url and client', { url, client: new Redis(url, { lazyConnect: true }) }],
        ['url and cluster', { url, cluster }],
        ['maxPending 0', { url, maxPending: 0 }],
        ['maxPending 1.5', { url, maxPending: 1.5 }],
        ['waitReplicas -1', { url, waitReplicas: -1 }],
        ['waitReplicas 0.5', { url, waitReplicas: 0.5 }],
        ['waitReplicas "1"', { url, waitReplicas: '1' }],
        ['namespace ""', { url, namespace: '' }],
        ['namespace 42', { url, namespace: 42 }],
        ['namespace {}', { url, namespace: {} }],
        ['commandTimeout 0', { url, commandTimeout: 0 }],
        ['commandTimeout -1', { url, commandTimeout: -1 }],
        ['commandTimeout 1.5', { url, commandTimeout: 1.5 }],
        ['commandTimeout "100"', { url, commandTimeout: '100' }],
        ['client {}', { client: {} }],
        ['client null', { client: null }],
        ['neither url nor client', {}],
        ['no options', undefined],
        ['options null', null]
      ]
      for (const [label, options] of cases) {
        t.equal(await codeOfMaking(() => redisBroker(options as RedisBrokerOptions)), 'FRT_ERR_INVALID_OPTION', label)
      }
      t.equal(await codeOfMaking(() => redisBroker({ url, namespace: newNamespace(), commandTimeout: 1 })), 'did not throw', 'commandTimeout 1')
      t.equal(await codeOfMaking(() => redisBroker({ url, namespace: newNamespace(), maxPending: 1, waitReplicas: 0 })), 'did not throw', 'maxPending 1, waitReplicas 0')
      t.equal(await codeOfMaking(() => redisBroker({ cluster, namespace: newNamespace() })), 'did not throw', 'cluster [{ host, port }]')
    })
  })
}
