import t from 'tap'
import { Redis } from 'ioredis'
import type { Broker, BrokerEvent } from '../../../lib/index.js'
import { redisBroker } from '../../../lib/brokers/redis/index.js'
import { excessAfter, resourceCounts, watchProcess } from '../../helpers/faults.js'

// Edge paths of redisBroker on a real Redis: reply shapes, entries this library did not write,
// listeners that throw, an empty namespace, a stream that lost its newest entries.

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

  t.test('a history that needs XINFO, on a connection Redis refuses it to, rejects with FRT_ERR_BROKER_UNAVAILABLE', async (t) => {
    const user = `frt-no-xinfo-${process.pid}`
    await admin.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '&*', '+@all', '-xinfo')
    t.teardown(() => admin.call('ACL', 'DELUSER', user))
    const limited = new URL(url)
    limited.username = user
    limited.password = 'secret'
    const broker = redisBroker({ url: limited.href, namespace: namespace() })
    t.teardown(() => broker.close())
    const id = await broker.publish('lobby', 'message', '1')
    t.same((await broker.history(id, new Set(['lobby'])))?.map((event) => event.id), [], 'an id in the log needs no XINFO')
    await t.rejects(broker.history('0-0', new Set(['lobby'])), { code: 'FRT_ERR_BROKER_UNAVAILABLE', message: /NOPERM/ }, 'the start of the log does')
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

  /** The reader's connection (named `name`): blocked in XREAD or not. */
  async function readerBlocked (name: string): Promise<boolean | undefined> {
    const list = await admin.client('LIST') as string
    const line = list.split('\n').find((line) => line.includes(` name=${name} `) && line.includes(' cmd=xread'))
    return line === undefined ? undefined : / flags=\S*b/.test(line)
  }

  async function waitFor (what: string, check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; !(await check()); i++) {
      if (i > 500) throw new Error(`waited 5 s for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  t.test('a stream that lost its newest entries (a master that died before its replica had them) is not read again from its start', async (t) => {
    const ns = namespace()
    const name = `${ns}-conn`
    const named = new URL(url)
    named.searchParams.set('connectionName', name)
    const broker = redisBroker({ url: named.href, namespace: ns })
    t.teardown(() => broker.close())
    const seen = collect(broker)
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push(await broker.publish('lobby', 'message', String(i)))
    t.same((await seen.until(5)).map((event) => event.id), ids)
    // The newest two are gone, as after a failover to a replica that had not received them.
    await admin.xdel(`frt:{${ns}}:log`, ids[3] as string, ids[4] as string)
    // Wake the reader with an error: it checks the stream against its cursor before reading on.
    await waitFor('the reader blocked in XREAD', async () => await readerBlocked(name) === true)
    const list = await admin.client('LIST') as string
    const id = /^id=(\d+) .*cmd=xread/m.exec(list.split('\n').filter((line) => line.includes(` name=${name} `)).join('\n'))?.[1] as string
    await admin.client('UNBLOCK', id, 'ERROR')
    await waitFor('the reader to leave XREAD', async () => await readerBlocked(name) === false)
    await waitFor('the reader blocked in XREAD again, after its check', async () => await readerBlocked(name) === true)
    const next = await broker.publish('lobby', 'message', '"next"')
    t.same((await seen.until(6)).map((event) => event.id), [...ids, next], 'the next event, and nothing read again')
  })

  t.test('close() while the reader waits to read again (Redis answered with an error) ends the wait at once', async (t) => {
    watchProcess(t)
    const ns = namespace()
    const name = `${ns}-conn`
    const named = new URL(url)
    named.searchParams.set('connectionName', name)
    await admin.set(`frt:{${ns}}:log`, 'not a stream') // WRONGTYPE for the reader's first command
    const baseline = resourceCounts()
    const broker = redisBroker({ url: named.href, namespace: ns })
    await waitFor('the reader to meet the error', async () => {
      const list = await admin.client('LIST') as string
      return list.split('\n').some((line) => line.includes(` name=${name} `) && line.includes(' cmd=xrevrange'))
    })
    await broker.close()
    t.same(await excessAfter(baseline, 50), {}, 'no timer or socket of the broker is left')
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
