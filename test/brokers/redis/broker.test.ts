import t from 'tap'
import { Redis } from 'ioredis'
import type { Broker, BrokerEvent } from '../../../lib/index.js'
import { redisBroker } from '../../../lib/brokers/redis/index.js'

// Edge paths of redisBroker on a real Redis: reply shapes, entries this library did not write,
// listeners that throw, an empty namespace.

const url = process.env.REDIS_URL
if (url === undefined) {
  if (process.env.CI !== undefined) t.fail('REDIS_URL is not set: .ci/run must start redis-server')
  else t.plan(0, 'REDIS_URL not set: start Redis with scripts/redis-test-server.sh to run the Redis tests')
} else {
  const prefix = `edge-${process.pid}-${Date.now()}`
  let count = 0
  const namespace = (): string => `${prefix}-${++count}`
  const admin = new Redis(url)
  t.teardown(async () => {
    const keys = await admin.keys(`frt:{${prefix}-*}:log`)
    if (keys.length > 0) await admin.del(...keys)
    admin.disconnect()
  })

  function collect (broker: Broker): { events: BrokerEvent[], until: (count: number) => Promise<BrokerEvent[]> } {
    const events: BrokerEvent[] = []
    broker.listen((event) => { events.push(event) })
    return {
      events,
      async until (wanted) {
        for (let i = 0; i < 500 && events.length < wanted; i++) await new Promise((resolve) => setTimeout(resolve, 10))
        return events
      }
    }
  }

  t.test('a client made with replyMapping: "resp3" (XREAD as a map) delivers too', async (t) => {
    const client = new Redis(url, { protocol: 3, replyMapping: 'resp3' })
    t.teardown(() => client.disconnect())
    const broker = redisBroker({ client, namespace: namespace() })
    t.teardown(() => broker.close())
    const seen = collect(broker)
    const id = await broker.publish('lobby', 'message', '{"map":true}')
    t.same((await seen.until(1)).map((event) => event.id), [id])
  })

  t.test('a client made with replyMapping: "resp3" (XINFO as a map) reports and resumes positions', async (t) => {
    const client = new Redis(url, { protocol: 3, replyMapping: 'resp3' })
    t.teardown(() => client.disconnect())
    const broker = redisBroker({ client, namespace: namespace() })
    t.teardown(() => broker.close())
    const start = await broker.position?.() as string
    const first = await broker.publish('lobby', 'message', '1')
    t.same((await broker.history(start, new Set(['lobby'])))?.map((event) => event.id), [first], 'the start of the log resumes')
    t.equal(await broker.position?.(), first)
    t.same(await broker.history('1-0', new Set(['lobby'])), null, 'an id never issued does not')
  })

  t.test('position() and history() of a key that is not a stream reject with FRT_ERR_BROKER_UNAVAILABLE', async (t) => {
    const ns = namespace()
    await admin.set(`frt:{${ns}}:log`, 'not a stream')
    const broker = redisBroker({ url, namespace: ns })
    t.teardown(() => broker.close())
    await t.rejects(broker.position?.() as Promise<string>, { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
    await t.rejects(broker.history('1-0', new Set(['lobby'])), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
  })

  t.test('entries this library did not write are skipped by the reader and by history', async (t) => {
    const ns = namespace()
    const broker = redisBroker({ url, namespace: ns })
    t.teardown(() => broker.close())
    const seen = collect(broker)
    const first = await broker.publish('lobby', 'message', '1')
    const key = `frt:{${ns}}:log`
    await admin.xadd(key, '*', 'e', 'message', 'd', '{}') // no topic
    await admin.xadd(key, '*', 't', 'lobby', 'd', '{}') // no event
    await admin.xadd(key, '*', 't', 'lobby', 'e', 'message') // no data
    await admin.xadd(key, '*', 'other', 'field')
    const last = await broker.publish('lobby', 'message', '2')
    t.same((await seen.until(2)).map((event) => event.id), [first, last])
    t.same((await broker.history(first, new Set(['lobby'])))?.map((event) => event.id), [last])
  })

  t.test('a listener that throws does not stop the others', async (t) => {
    const broker = redisBroker({ url, namespace: namespace() })
    t.teardown(() => broker.close())
    broker.listen(() => { throw new Error('a bad listener') })
    const seen = collect(broker)
    const ids = [await broker.publish('a', 'e', '1'), await broker.publish('a', 'e', '2')]
    t.same((await seen.until(2)).map((event) => event.id), ids)
  })

  t.test('a reader idle on an empty namespace keeps reading, and gets the first event', async (t) => {
    const broker = redisBroker({ url, namespace: namespace() })
    t.teardown(() => broker.close())
    const seen = collect(broker)
    await new Promise((resolve) => setTimeout(resolve, 1300)) // past one XREAD BLOCK with no stream at all
    const id = await broker.publish('a', 'e', '"late"')
    t.same((await seen.until(1)).map((event) => event.id), [id])
  })
}
