import { ok } from 'node:assert/strict'
import t, { type Test } from 'tap'
import fc from 'fast-check'
import type { BrokerEvent } from '../../lib/brokers/broker.js'
import { compareEventIds, formatEventId, parseEventId } from '../../lib/protocol/event-id.js'
import { memoryBroker } from '../../lib/brokers/memory.js'
import { positiveInteger } from '../../lib/options.js'

const MAX = Number.MAX_SAFE_INTEGER

/** Replaces Date.now for the rest of the test; returns the setter of the current time. */
function fakeClock (t: Test, start: number): (now: number) => void {
  const realNow = Date.now
  let current = start
  Date.now = () => current
  t.teardown(() => { Date.now = realNow })
  return (now) => { current = now }
}

function codeOf (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  return 'did not throw'
}

const ids = (events: BrokerEvent[] | null): string[] | null => events === null ? null : events.map((event) => event.id)

t.test('event-id', async (t) => {
  t.test('parseEventId reads <ms>-<seq>', async (t) => {
    t.same(parseEventId('0-0'), { ms: 0, seq: 0 })
    t.same(parseEventId('1700000000000-42'), { ms: 1700000000000, seq: 42 })
  })

  t.test('parseEventId accepts MAX_SAFE_INTEGER on both sides and nothing above', async (t) => {
    t.same(parseEventId(`${MAX}-${MAX}`), { ms: MAX, seq: MAX })
    t.equal(parseEventId(`${MAX + 1}-0`), undefined)
    t.equal(parseEventId(`0-${MAX + 1}`), undefined)
    t.equal(parseEventId('9999999999999999-0'), undefined, '16 digits over the bound')
    t.equal(parseEventId('99999999999999999-0'), undefined, '17 digits')
  })

  t.test('parseEventId accepts canonical decimals only: no leading zeros', async (t) => {
    for (const id of ['007-1', '7-01', '00-0', '0-00', '01-01']) t.equal(parseEventId(id), undefined, id)
  })

  t.test('parseEventId returns undefined for anything malformed', async (t) => {
    for (const id of ['', 'abc', '1', '1-', '-1', '1-2-3', ' 1-2', '1-2 ', '1-2\n', '+1-2', '1.0-2', '1e3-0',
      '0x1-0', '\u0661-\u0662', '1_000-0', '1-'.repeat(100000), `${'9'.repeat(100000)}-0`]) {
      t.equal(parseEventId(id), undefined, JSON.stringify(id.slice(0, 20)))
    }
    for (const id of [undefined, null, 1, 1n, {}, ['1-2'], { toString: () => '1-2' }]) {
      t.equal(parseEventId(id), undefined, `${typeof id} ${String(id)}`)
    }
  })

  t.test('formatEventId and parseEventId round-trip every safe pair', async (t) => {
    t.equal(formatEventId(12, 3), '12-3')
    t.doesNotThrow(() => fc.assert(fc.property(fc.maxSafeNat(), fc.maxSafeNat(), (ms, seq) => {
      const parsed = parseEventId(formatEventId(ms, seq))
      ok(parsed !== undefined && parsed.ms === ms && parsed.seq === seq)
    }), { numRuns: 500 }))
  })

  t.test('compareEventIds orders by ms, then by seq', async (t) => {
    t.ok(compareEventIds({ ms: 1, seq: 9 }, { ms: 2, seq: 0 }) < 0)
    t.ok(compareEventIds({ ms: 2, seq: 0 }, { ms: 1, seq: 9 }) > 0)
    t.ok(compareEventIds({ ms: 2, seq: 1 }, { ms: 2, seq: 2 }) < 0)
    t.ok(compareEventIds({ ms: 2, seq: 2 }, { ms: 2, seq: 1 }) > 0)
    t.equal(compareEventIds({ ms: 2, seq: 2 }, { ms: 2, seq: 2 }), 0)
    t.ok(compareEventIds({ ms: MAX, seq: 0 }, { ms: 0, seq: MAX }) > 0, 'no precision loss at the bounds')
    t.ok(compareEventIds({ ms: MAX, seq: MAX - 1 }, { ms: MAX, seq: MAX }) < 0)
  })

  t.test('compareEventIds agrees with the lexicographic order of (ms, seq)', async (t) => {
    const part = fc.record({ ms: fc.maxSafeNat(), seq: fc.maxSafeNat() })
    t.doesNotThrow(() => fc.assert(fc.property(part, part, (a, b) => {
      const expected = a.ms !== b.ms ? Math.sign(a.ms - b.ms) : Math.sign(a.seq - b.seq)
      ok(Math.sign(compareEventIds(a, b)) === expected && Math.sign(compareEventIds(b, a)) === -expected)
    }), { numRuns: 500 }))
  })
})

t.test('ids are <ms>-<seq>: seq restarts at 0 when the clock moves on', async (t) => {
  const setNow = fakeClock(t, 1000)
  const broker = memoryBroker()
  t.equal(await broker.publish('a', 'e', '1'), '1000-0')
  t.equal(await broker.publish('a', 'e', '2'), '1000-1')
  setNow(1005)
  t.equal(await broker.publish('a', 'e', '3'), '1005-0')
})

t.test('ids strictly increase when Date.now() stands still or goes backwards', async (t) => {
  const setNow = fakeClock(t, 2000)
  const broker = memoryBroker()
  t.equal(await broker.publish('a', 'e', '1'), '2000-0')
  setNow(1000)
  t.equal(await broker.publish('a', 'e', '2'), '2000-1')
  t.equal(await broker.publish('a', 'e', '3'), '2000-2')
  setNow(2001)
  t.equal(await broker.publish('a', 'e', '4'), '2001-0')
})

t.test('ids strictly increase whatever the clock does (property)', async (t) => {
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })
  await fc.assert(fc.asyncProperty(fc.array(fc.nat({ max: 5000 }), { minLength: 1, maxLength: 50 }), async (clock) => {
    const broker = memoryBroker()
    let previous: { ms: number, seq: number } | undefined
    let highest = 0
    for (const now of clock) {
      Date.now = () => now
      const id = parseEventId(await broker.publish('a', 'e', '{}'))
      ok(id !== undefined, 'a well-formed id')
      highest = Math.max(highest, now)
      ok(id.ms === highest, 'ms is the highest clock reading so far')
      ok(previous === undefined || compareEventIds(previous, id) < 0, 'strictly after the previous id')
      previous = id
    }
  }), { numRuns: 300 })
  t.pass('held for 300 runs')
})

t.test('publish resolves to the id and delivers synchronously, in order', async (t) => {
  const broker = memoryBroker()
  const seen: BrokerEvent[] = []
  broker.listen((event) => seen.push(event))
  const first = broker.publish('lobby', 'message', '{"n":1}')
  const second = broker.publish('lobby', 'message', '{"n":2}')
  t.equal(seen.length, 2, 'delivered before publish resolves')
  t.same(seen.map((event) => ({ topic: event.topic, event: event.event, data: event.data })), [
    { topic: 'lobby', event: 'message', data: '{"n":1}' },
    { topic: 'lobby', event: 'message', data: '{"n":2}' }
  ])
  t.same([await first, await second], ids(seen))
})

t.test('a listener that publishes during dispatch does not reorder delivery', async (t) => {
  const broker = memoryBroker()
  const a: string[] = []
  const b: string[] = []
  const nested: Promise<string>[] = []
  broker.listen((event) => {
    a.push(event.event)
    if (event.event === 'first') nested.push(broker.publish('t', 'nested', '{}'))
  })
  broker.listen((event) => { b.push(event.event) })
  const first = await broker.publish('t', 'first', '{}')
  t.ok(compareEventIds(parseEventId(first)!, parseEventId(await nested[0])!) < 0, 'the nested event has the later id')
  t.same(a, ['first', 'nested'])
  t.same(b, ['first', 'nested'], 'every listener gets the current event before the nested one')
})

t.test('a listener that throws does not stop the other listeners', async (t) => {
  const broker = memoryBroker()
  const seen: string[] = []
  let calls = 0
  broker.listen(() => {
    calls++
    throw new Error('boom')
  })
  broker.listen((event) => { seen.push(event.event) })
  await broker.publish('t', 'one', '{}')
  await broker.publish('t', 'two', '{}')
  t.same(seen, ['one', 'two'])
  t.equal(calls, 2, 'the throwing listener still gets later events')
})

t.test('listen() returns the function that removes the listener', async (t) => {
  const broker = memoryBroker()
  const seen: string[] = []
  const stop = broker.listen((event) => { seen.push(event.event) })
  await broker.publish('t', 'before', '{}')
  stop()
  stop()
  await broker.publish('t', 'after', '{}')
  t.same(seen, ['before'])
})

t.test('history(after, topics) returns the later events of those topics only, in order', async (t) => {
  const broker = memoryBroker()
  const start = await broker.publish('a', 'e', '0')
  const a1 = await broker.publish('a', 'e', '1')
  await broker.publish('b', 'e', '2')
  const c3 = await broker.publish('c', 'e', '3')
  const a4 = await broker.publish('a', 'e', '4')
  const history = await broker.history(start, new Set(['a', 'c']))
  t.same(ids(history), [a1, c3, a4])
  t.same(history?.map((event) => [event.topic, event.event, event.data]), [['a', 'e', '1'], ['c', 'e', '3'], ['a', 'e', '4']])
  t.same(await broker.history(a4, new Set(['a'])), [], 'nothing after the newest id')
  t.same(await broker.history(start, new Set(['z'])), [], 'a topic with no events')
})

t.test('history of a malformed id is null', async (t) => {
  const broker = memoryBroker()
  await broker.publish('a', 'e', '0')
  for (const id of ['abc', '1-', '-1', '1-2-3', '99999999999999999-0', '', 'x'.repeat(1e6), `${'1'.repeat(1e6)}-0`]) {
    t.equal(await broker.history(id, new Set(['a'])), null, JSON.stringify(id.slice(0, 20)))
  }
})

t.test('history of an id never issued is null: in range but absent, or beyond the last', async (t) => {
  const setNow = fakeClock(t, 1000)
  const broker = memoryBroker()
  await broker.publish('a', 'e', '0') // 1000-0
  await broker.publish('a', 'e', '1') // 1000-1
  setNow(1002)
  await broker.publish('a', 'e', '2') // 1002-0
  for (const id of ['1001-0', '1000-2', '999-0', '0-1', '1002-1', '9999-0']) {
    t.equal(await broker.history(id, new Set(['a'])), null, id)
  }
  t.same(ids(await broker.history('1000-1', new Set(['a']))), ['1002-0'], 'an issued id in between resumes')
  t.equal(await broker.history('01000-1', new Set(['a'])), null, 'only as issued: another spelling of it is not')
})

t.test('history of an id trimmed by maxLen with later ones is null; the newest trimmed id and the retained ones resume', async (t) => {
  const broker = memoryBroker({ maxLen: 3 })
  const all: string[] = []
  for (let i = 0; i < 5; i++) all.push(await broker.publish('a', 'e', String(i)))
  t.equal(await broker.history('0-0', new Set(['a'])), null, 'the start of the log')
  t.equal(await broker.history(all[0], new Set(['a'])), null)
  t.same(ids(await broker.history(all[1], new Set(['a']))), all.slice(2), 'the newest trimmed id: every event after it is kept')
  t.same(ids(await broker.history(all[2], new Set(['a']))), all.slice(3), 'the oldest retained id')
})

t.test('position() is 0-0 before the first event, then the newest id, also once it aged out', async (t) => {
  const setNow = fakeClock(t, 10000)
  const broker = memoryBroker({ maxAgeMs: 1000 })
  t.equal(await broker.position(), '0-0')
  t.same(await broker.history('0-0', new Set(['a'])), [], 'the start of an empty log resumes')
  const first = await broker.publish('a', 'e', '0')
  t.same(ids(await broker.history('0-0', new Set(['a']))), [first], 'and then has the first event after it')
  t.equal(await broker.position(), first)
  setNow(12000)
  t.equal(await broker.position(), first, 'aged out: still the newest id')
  t.same(await broker.history(first, new Set(['a'])), [], 'and still resumes')
  t.equal(await broker.history('0-0', new Set(['a'])), null, 'the start of the log no longer does')
})

t.test('history of an id is null once an event after it is older than maxAgeMs', async (t) => {
  const setNow = fakeClock(t, 10000)
  const broker = memoryBroker({ maxAgeMs: 1000 })
  const old = await broker.publish('a', 'e', 'old')
  setNow(10500)
  const newer = await broker.publish('a', 'e', 'newer')
  setNow(11000)
  t.same(ids(await broker.history(old, new Set(['a']))), [newer], 'exactly maxAgeMs old: still resumable')
  setNow(11001)
  t.same(ids(await broker.history(old, new Set(['a']))), [newer], 'older than maxAgeMs, the event after it is not: resumes')
  t.same(await broker.history(newer, new Set(['a'])), [])
  setNow(11501)
  t.equal(await broker.history(old, new Set(['a'])), null, 'the event after it is older than maxAgeMs')
  setNow(20000)
  t.same(await broker.history(newer, new Set(['a'])), [], 'everything has aged out: the newest id still resumes, with nothing')
})

t.test('history more than maxScan entries back is null, whatever the topics', async (t) => {
  const broker = memoryBroker({ maxScan: 2 })
  const all: string[] = []
  for (const topic of ['a', 'b', 'b', 'a']) all.push(await broker.publish(topic, 'e', '{}'))
  t.equal(await broker.history(all[0], new Set(['a'])), null, '3 entries back')
  t.same(ids(await broker.history(all[1], new Set(['a']))), [all[3]], '2 entries back')
})

t.test('history stays correct across compactions (3000+ events, maxLen 10)', async (t) => {
  const broker = memoryBroker({ maxLen: 10 })
  const all: string[] = []
  const wrong: string[] = []
  for (let i = 0; i < 3200; i++) {
    all.push(await broker.publish(i % 2 === 0 ? 'even' : 'odd', 'e', String(i)))
    if (i < 10) continue
    const oldest = await broker.history(all[i - 9], new Set(['even', 'odd']))
    if (JSON.stringify(ids(oldest)) !== JSON.stringify(all.slice(i - 8))) wrong.push(`oldest retained at ${i}`)
    const newestTrimmed = await broker.history(all[i - 10], new Set(['even', 'odd']))
    if (JSON.stringify(ids(newestTrimmed)) !== JSON.stringify(all.slice(i - 9))) wrong.push(`newest trimmed at ${i}`)
    if (i > 10 && await broker.history(all[i - 11], new Set(['even', 'odd'])) !== null) wrong.push(`trimmed id resumed at ${i}`)
  }
  t.same(wrong, [])
  const even = await broker.history(all[3190], new Set(['even']))
  t.same(even?.map((event) => event.data), ['3192', '3194', '3196', '3198'])
})

t.test('options must be positive integers: anything else throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const name of ['maxLen', 'maxAgeMs', 'maxScan']) {
    for (const value of [0, -1, 1.5, 'x', Number.NaN, Number.POSITIVE_INFINITY, null]) {
      t.equal(codeOf(() => memoryBroker({ [name]: value })), 'FRT_ERR_INVALID_OPTION', `${name}: ${String(value)}`)
    }
    t.doesNotThrow(() => memoryBroker({ [name]: 1 }), `${name}: 1`)
  }
  t.equal(positiveInteger('n', undefined, 7), 7)
  t.equal(positiveInteger('n', undefined, undefined), undefined)
  t.equal(positiveInteger('n', 3, 7), 3)
})

t.test('after close(), publish rejects with FRT_ERR_BROKER_UNAVAILABLE and listeners get nothing', async (t) => {
  const broker = memoryBroker()
  const seen: string[] = []
  broker.listen((event) => { seen.push(event.event) })
  await broker.publish('t', 'before', '{}')
  await broker.close()
  await t.rejects(broker.publish('t', 'after', '{}'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
  t.same(seen, ['before'])
})

t.test('close() during a dispatch: no listener gets anything more', async (t) => {
  const broker = memoryBroker()
  const seen: string[] = []
  const work: Promise<unknown>[] = []
  broker.listen((event) => {
    seen.push(`closer:${event.event}`)
    work.push(broker.publish('t', 'nested', '{}'), broker.close())
  })
  broker.listen((event) => { seen.push(`other:${event.event}`) })
  await broker.publish('t', 'first', '{}')
  await Promise.all(work)
  t.same(seen, ['closer:first'])
})
