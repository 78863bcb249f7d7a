// The broker contract: what every Broker (memoryBroker, redisBroker, any later one) must do, as one
// suite that each broker's test file runs against its own factory. Delivery may be asynchronous
// (a Redis reader tails the log), so the suite waits for events, bounded, and never assumes that
// publish() has delivered by the time it resolves; it only assumes that a listener registered
// before a publish gets that event.
import type { Test } from 'tap'
import type { Broker, BrokerEvent } from '../../lib/brokers/broker.js'
import { compareEventIds, parseEventId, type EventIdParts } from '../../lib/protocol/event-id.js'

/** Options every broker takes; a factory may add its own (url, namespace ...). */
export interface ContractBrokerOptions {
  maxLen?: number
  maxAgeMs?: number
  maxScan?: number
  [option: string]: unknown
}

/** Makes a broker with a log of its own (for Redis: a fresh namespace); throws or rejects on bad options. */
export type MakeBroker = (options?: ContractBrokerOptions) => Broker | Promise<Broker>

export interface BrokerContractOptions {
  /**
   * `maxLen` trims approximately, keeping at least `maxLen` events and maybe more (Redis `MAXLEN ~`):
   * only ids far back are then expected to be gone.
   */
  approximateTrim?: boolean
  /**
   * Makes another broker on the same log as `broker` (another instance on the same Redis and
   * namespace). Brokers of one process only leave it out, and the shared-log tests are skipped.
   */
  makePeer?: (broker: Broker, options?: ContractBrokerOptions) => Broker | Promise<Broker>
  /** How long to wait for an event to be delivered before failing. @default 5000 */
  deliveryTimeoutMs?: number
  /**
   * A broker that tails a shared log reads it from the moment it was made, so that events other
   * instances publish while it connects are not missed: a listener added at once may then also get
   * events published since the broker was made but before listen() (never twice). Non-zero: allowed.
   */
  startMarginMs?: number
}

const CANONICAL_ID = /^(0|[1-9]\d*)-(0|[1-9]\d*)$/

/** An event's public fields as a plain object (brokers may keep more on their events). */
function fields (event: BrokerEvent): BrokerEvent {
  return { id: event.id, topic: event.topic, event: event.event, data: event.data }
}

const ids = (events: BrokerEvent[] | null): string[] | null => events === null ? null : events.map((event) => event.id)

function isBefore (a: string, b: string): boolean {
  const left = parseEventId(a)
  const right = parseEventId(b)
  return left !== undefined && right !== undefined && compareEventIds(left, right) < 0
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Sleeps until the clock has passed `ms` (epoch). */
async function sleepPast (ms: number): Promise<void> {
  while (Date.now() <= ms) await sleep(ms + 1 - Date.now())
}

const msOf = (id: string): number => (parseEventId(id) as EventIdParts).ms

/** The broker's position(); every broker under the contract has one. */
function position (broker: Broker): Promise<string> {
  if (broker.position === undefined) throw new Error('the broker has no position()')
  return broker.position()
}

/** The code of what `make()` throws or rejects with, or 'did not throw' (closing a broker it made). */
async function codeOfMaking (make: () => Broker | Promise<Broker>): Promise<unknown> {
  let broker: Broker
  try {
    broker = await make()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  await broker.close()
  return 'did not throw'
}

/** A listener that records what it gets and can be awaited, with a deadline. */
export interface Recorder {
  readonly events: BrokerEvent[]
  /** Resolves with the first `count` events once that many arrived; rejects after the timeout. */
  waitFor (count: number): Promise<BrokerEvent[]>
  /** Resolves once `done(events)` holds; rejects with `what` after `timeoutMs` (default: the recorder's). */
  waitUntil (done: (events: BrokerEvent[]) => boolean, what: string, timeoutMs?: number): Promise<void>
  /** Removes the listener (the function listen() returned). */
  stop (): void
}

export function record (broker: Broker, defaultTimeoutMs = 5000): Recorder {
  const events: BrokerEvent[] = []
  const waiters = new Set<() => void>()
  const stop = broker.listen((event) => {
    events.push(event)
    for (const waiter of [...waiters]) waiter()
  })
  const waitUntil = (done: (events: BrokerEvent[]) => boolean, what: string, timeoutMs = defaultTimeoutMs): Promise<void> => {
    if (done(events)) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`waited ${timeoutMs} ms for ${what}, got ${events.length} events: ${JSON.stringify(ids(events))}`))
      }, timeoutMs)
      const check = (): void => {
        if (!done(events)) return
        clearTimeout(timer)
        waiters.delete(check)
        resolve()
      }
      waiters.add(check)
    })
  }
  return {
    events,
    stop,
    waitUntil,
    async waitFor (count) {
      await waitUntil((events) => events.length >= count, `${count} events`)
      return events.slice(0, count)
    }
  }
}

/**
 * Runs the broker contract as one `t.test(name)` with one subtest per behaviour. Every subtest makes
 * its own brokers and closes them in its teardown.
 */
export function brokerContract (t: Test, name: string, makeBroker: MakeBroker, contractOptions: BrokerContractOptions = {}): void {
  const { approximateTrim = false, makePeer, deliveryTimeoutMs = 5000, startMarginMs = 0 } = contractOptions

  /** Waits for `id`, then returns every id received, checking that the only others are `allowed` ones from the start margin. */
  async function receivedUpTo (t: Test, recorder: Recorder, id: string, earlier: string[]): Promise<void> {
    for (let count = 1; !(ids(recorder.events) as string[]).includes(id); count++) await recorder.waitFor(count)
    const got = ids(recorder.events) as string[]
    const extra = got.filter((other) => other !== id)
    t.same(got.at(-1), id, 'the later event is the last one')
    t.same(extra, startMarginMs > 0 ? extra.filter((other) => earlier.includes(other)) : [], startMarginMs > 0 ? 'besides it, at most events of the start margin' : 'nothing else')
    t.equal(new Set(got).size, got.length, 'none twice')
  }

  async function open (t: Test, options?: ContractBrokerOptions): Promise<Broker> {
    const broker = await makeBroker(options)
    t.teardown(() => broker.close())
    return broker
  }

  async function openPeer (t: Test, broker: Broker, options?: ContractBrokerOptions): Promise<Broker> {
    const peer = await (makePeer as NonNullable<typeof makePeer>)(broker, options)
    t.teardown(() => peer.close())
    return peer
  }

  const listen = (broker: Broker): Recorder => record(broker, deliveryTimeoutMs)

  t.test(`broker contract: ${name}`, async (t) => {
    t.test('publish resolves to a canonical <ms>-<seq> id whose ms is the time of publishing', async (t) => {
      const broker = await open(t)
      const before = Date.now()
      const id = await broker.publish('lobby', 'message', '{}')
      const after = Date.now()
      t.match(id, CANONICAL_ID)
      const parsed = parseEventId(id)
      t.ok(parsed !== undefined, 'within safe integers')
      // A wide margin: the id's clock may be another machine's (the Redis server's).
      t.ok(parsed !== undefined && parsed.ms >= before - 60000 && parsed.ms <= after + 60000, `ms ${parsed?.ms} near ${before}`)
    })

    t.test('ids strictly increase, for sequential and concurrent publishes alike', async (t) => {
      const broker = await open(t)
      const sequential: string[] = []
      for (let i = 0; i < 200; i++) sequential.push(await broker.publish(i % 2 === 0 ? 'a' : 'b', 'e', String(i)))
      const decreasing = sequential.filter((id, i) => i > 0 && !isBefore(sequential[i - 1], id))
      t.same(decreasing, [], 'each id after the one before')
      const concurrent = await Promise.all(Array.from({ length: 100 }, (_, i) => broker.publish('a', 'e', String(i))))
      t.equal(new Set(concurrent).size, 100, 'concurrent publishes get distinct ids')
      t.ok(concurrent.every((id) => isBefore(sequential[199], id)), 'all after the earlier ones')
    })

    t.test('every listener receives every event once, in log order, with topic, event and data intact', async (t) => {
      const broker = await open(t)
      const listeners = [listen(broker), listen(broker), listen(broker)]
      const payloads = ['{}', '{"text":"héllo ✓ 😀"}', '"line\\nbreak"', 'raw\nline\r\nbreaks\r', 'null', '""',
        JSON.stringify({ big: 'x'.repeat(200000) })]
      const published: BrokerEvent[] = []
      for (let i = 0; i < 30; i++) {
        const topic = ['lobby', 'room:1', 'a.b_c-d'][i % 3]
        const event = i % 2 === 0 ? 'message' : 'ns.event:name-1_x'
        const data = payloads[i % payloads.length]
        published.push({ id: await broker.publish(topic, event, data), topic, event, data })
      }
      // Concurrent publishes: the log orders them; every listener must see that one order.
      const concurrent = await Promise.all(Array.from({ length: 30 }, async (_, i) => {
        const data = JSON.stringify({ i })
        return { id: await broker.publish('burst', 'tick', data), topic: 'burst', event: 'tick', data }
      }))
      const expected = [...published, ...concurrent.sort((a, b) => isBefore(a.id, b.id) ? -1 : 1)]
      for (const [index, listener] of listeners.entries()) {
        const received = await listener.waitFor(expected.length)
        t.same(received.map(fields), expected, `listener ${index}: every event, in id order`)
      }
      // One more event as a barrier: nothing was delivered twice before it.
      const last = await broker.publish('lobby', 'message', '{}')
      for (const listener of listeners) {
        await listener.waitFor(expected.length + 1)
        t.same(ids(listener.events), [...expected.map((event) => event.id), last], 'no duplicates')
      }
    })

    t.test('an event published right after the first listen() is delivered, on a new broker or a used one', async (t) => {
      const fresh = await open(t)
      const listener = listen(fresh)
      const id = await fresh.publish('lobby', 'message', '{"first":true}')
      t.same((await listener.waitFor(1)).map(fields), [{ id, topic: 'lobby', event: 'message', data: '{"first":true}' }], 'new broker')
      // A broker that published before anyone listened: its connection is up when listen() is called.
      const used = await open(t)
      const unheard = await used.publish('lobby', 'message', '"unheard"')
      const late = listen(used)
      const heard = await used.publish('lobby', 'message', '"heard"')
      await receivedUpTo(t, late, heard, [unheard])
    })

    t.test('a listener registered later receives only the events published after it', async (t) => {
      const broker = await open(t)
      const early = listen(broker)
      const first = await broker.publish('lobby', 'message', '1')
      await early.waitFor(1)
      const late = listen(broker)
      const second = await broker.publish('lobby', 'message', '2')
      await early.waitFor(2)
      t.same(ids(await late.waitFor(1)), [second], 'the later event only')
      t.same(ids(early.events), [first, second])
    })

    t.test('listen() returns the function that removes the listener; calling it twice is harmless', async (t) => {
      const broker = await open(t)
      const kept = listen(broker)
      const removed = listen(broker)
      const first = await broker.publish('lobby', 'message', '1')
      await removed.waitFor(1)
      removed.stop()
      removed.stop()
      const second = await broker.publish('lobby', 'message', '2')
      await kept.waitFor(2)
      t.same(ids(removed.events), [first], 'nothing after removal')
      t.same(ids(kept.events), [first, second], 'the other listener is unaffected')
    })

    t.test('history(after, topics) returns exactly the later events of those topics, in log order', async (t) => {
      const broker = await open(t)
      const start = await broker.publish('a', 'e', '0')
      const published: BrokerEvent[] = []
      for (let i = 1; i <= 30; i++) {
        const topic = ['a', 'b', 'c', 'a', 'c'][i % 5]
        published.push({ id: await broker.publish(topic, `e${i % 3}`, JSON.stringify({ i })), topic, event: `e${i % 3}`, data: JSON.stringify({ i }) })
      }
      const only = (...topics: string[]): BrokerEvent[] => published.filter((event) => topics.includes(event.topic))
      t.same((await broker.history(start, new Set(['a', 'c'])))?.map(fields), only('a', 'c'), 'two topics, interleaved')
      t.same((await broker.history(start, new Set(['b'])))?.map(fields), only('b'), 'one topic')
      t.same((await broker.history(start, new Set(['a', 'b', 'c'])))?.map(fields), published, 'every topic')
      t.same((await broker.history(published[14].id, new Set(['a', 'b', 'c'])))?.map(fields), published.slice(15), 'from the middle')
      t.same(await broker.history(start, new Set(['z'])), [], 'a topic with no events')
      t.same(await broker.history(start, new Set()), [], 'no topics')
    })

    t.test('history of the newest id is empty', async (t) => {
      const broker = await open(t)
      await broker.publish('a', 'e', '0')
      const newest = await broker.publish('a', 'e', '1')
      t.same(await broker.history(newest, new Set(['a'])), [])
    })

    t.test('history of a malformed id is null', async (t) => {
      const broker = await open(t)
      const id = await broker.publish('a', 'e', '0')
      await broker.publish('a', 'e', '1')
      const { ms, seq } = parseEventId(id) as { ms: number, seq: number }
      // The issued id spelled otherwise (leading zeros, padding, extra parts) is malformed too.
      for (const bad of ['abc', '', '1-', '-1', '01-1', `0${id}`, `${ms}-0${seq}`, `${id}-0`, ` ${id}`, `${id}\n`, `${ms}`,
        '1-2-3', `${'9'.repeat(30)}-0`, '99999999999999999-0', '+1-0', '-', '0x1-0', `${'1'.repeat(100000)}-0`]) {
        t.equal(await broker.history(bad, new Set(['a'])), null, JSON.stringify(bad.slice(0, 30)))
      }
    })

    t.test('history of an id never issued is null: before the first, in range but absent, beyond the last', async (t) => {
      const broker = await open(t)
      // The position of the log before its first event is a resume point (see the position tests).
      const start = await position(broker)
      const first = await broker.publish('a', 'e', '0')
      const firstMs = (parseEventId(first) as { ms: number }).ms
      // Let the clock move on, so that <firstMs + 1>-0 lies between the two events and is never issued.
      while (Date.now() < firstMs + 3) await sleep(2)
      const last = await broker.publish('a', 'e', '1')
      const lastParts = parseEventId(last) as { ms: number, seq: number }
      t.ok(lastParts.ms >= firstMs + 2, 'the second event is at least 2 ms later')
      const neverIssued = ['0-0', '0-1', `${firstMs - 1}-0`, `${firstMs}-${(parseEventId(first) as { seq: number }).seq + 1}`,
        `${firstMs + 1}-0`, `${lastParts.ms}-${lastParts.seq + 1}`, `${lastParts.ms + 1}-0`, `${lastParts.ms + 86400000}-0`,
        `${Number.MAX_SAFE_INTEGER}-${Number.MAX_SAFE_INTEGER}`]
      for (const id of neverIssued.filter((id) => id !== start)) t.equal(await broker.history(id, new Set(['a'])), null, id)
      t.same(ids(await broker.history(first, new Set(['a']))), [last], 'an issued id still resumes')
    })

    t.test('history of an id trimmed by maxLen with later ones is null; the newest maxLen ids still resume', async (t) => {
      const maxLen = 10
      const broker = await open(t, { maxLen })
      const all: string[] = []
      for (let i = 0; i < 500; i++) all.push(await broker.publish(i % 2 === 0 ? 'even' : 'odd', 'e', String(i)))
      const topics = new Set(['even', 'odd'])
      t.equal(await broker.history(all[0], topics), null, 'the first of 500')
      // An approximate trim keeps at least maxLen events: only ids far back are surely gone.
      const gone = approximateTrim ? [1, 100, 200] : [1, 250, all.length - maxLen - 2]
      for (const index of gone) t.equal(await broker.history(all[index], topics), null, `event ${index} of 500`)
      const oldestKept = all.length - maxLen
      if (!approximateTrim) {
        t.same(ids(await broker.history(all[oldestKept - 1], topics)), all.slice(oldestKept),
          `event ${oldestKept - 1}: trimmed itself, but every event after it is still there`)
      }
      t.same(ids(await broker.history(all[oldestKept], topics)), all.slice(oldestKept + 1), `event ${oldestKept}: within maxLen`)
      t.same(ids(await broker.history(all[all.length - 3], new Set(['odd']))), [all[all.length - 1]])
    })

    t.test('maxAgeMs: an id resumes until an event after it is older than maxAgeMs, however old the id itself', async (t) => {
      const maxAgeMs = 300
      const broker = await open(t, { maxAgeMs })
      const listener = listen(broker)
      const topics = new Set(['a'])
      const start = await position(broker)
      const old = await broker.publish('a', 'e', 'old')
      await listener.waitFor(1)
      await sleepPast(msOf(old) + maxAgeMs + 50)
      t.same(await broker.history(old, topics), [], 'older than maxAgeMs, with nothing after it: resumes')
      t.equal(await position(broker), old, 'and is still the position')
      t.equal(await broker.history(start, topics), null, 'the start of the log: its first event is older than maxAgeMs')
      const newer = await broker.publish('a', 'e', 'newer')
      const resumed = await broker.history(old, topics)
      // Asserted only when the call finished within maxAgeMs: no assumption about how fast it is.
      if (Date.now() < msOf(newer) + maxAgeMs) t.same(ids(resumed), [newer], 'the event after it is younger than maxAgeMs: resumes')
      await sleepPast(msOf(newer) + maxAgeMs + 50)
      t.equal(await broker.history(old, topics), null, 'the event after it is older than maxAgeMs: a reset')
      t.same(await broker.history(newer, topics), [], 'the newest id still resumes')
    })

    t.test('position() before any event: history() accepts it, with nothing, then with every event after it', async (t) => {
      const broker = await open(t)
      const start = await position(broker)
      t.match(start, CANONICAL_ID)
      t.same(await broker.history(start, new Set(['a'])), [], 'nothing yet')
      t.equal(await position(broker), start, 'the same position while nothing happens')
      const published = [await broker.publish('a', 'e', '1'), await broker.publish('b', 'e', '2'), await broker.publish('a', 'e', '3')]
      t.ok(isBefore(start, published[0]), 'the position is before the first event')
      t.same(ids(await broker.history(start, new Set(['a']))), [published[0], published[2]], 'the events after it')
      t.same(ids(await broker.history(start, new Set(['a', 'b']))), published)
    })

    t.test('position() is the newest id delivered to the listeners, and history() resumes exactly the events after it', async (t) => {
      const broker = await open(t)
      const listener = listen(broker)
      await broker.publish('a', 'e', '1')
      const newest = await broker.publish('b', 'e', '2')
      await listener.waitFor(2)
      const at = await position(broker)
      t.equal(at, newest, 'the id of the last event delivered')
      t.same(await broker.history(at, new Set(['a', 'b'])), [], 'nothing after it yet')
      const later = [await broker.publish('a', 'e', '3'), await broker.publish('b', 'e', '4')]
      t.same(ids(await broker.history(at, new Set(['a', 'b']))), later)
      t.same(ids(await broker.history(at, new Set(['b']))), [later[1]])
      await listener.waitFor(4)
      t.equal(await position(broker), later[1], 'moves with the deliveries')
    })

    t.test('position() is never ahead of the listeners: every event after it is still to be delivered', async (t) => {
      const broker = await open(t)
      const listener = listen(broker)
      const published: string[] = []
      const positions: Array<{ at: string, delivered: number }> = []
      // Positions read while events are being published and delivered: whatever the lag.
      for (let i = 0; i < 60; i++) {
        published.push(await broker.publish(i % 2 === 0 ? 'a' : 'b', 'e', String(i)))
        const delivered = listener.events.length
        positions.push({ at: await position(broker), delivered })
      }
      await listener.waitFor(published.length)
      for (const { at, delivered } of positions) {
        const after = ids(await broker.history(at, new Set(['a', 'b']))) as string[]
        // Every event delivered after the position was read is in its history: none would be lost.
        const deliveredLater = ids(listener.events.slice(listener.events.findIndex((event) => event.id === at) + 1)) as string[]
        t.same(after, deliveredLater, `from ${at}`)
        t.ok(after.length <= published.length - delivered, 'not ahead of what was delivered when it was read')
      }
    })

    t.test('a position resumes for as long as no event after it has left the history; after that it is a reset', async (t) => {
      const maxLen = 10
      const broker = await open(t, { maxLen })
      const topics = new Set(['a'])
      const listener = listen(broker)
      const start = await position(broker)
      for (let i = 0; i < 500; i++) await broker.publish('a', 'e', String(i))
      await listener.waitFor(500)
      t.equal(await broker.history(start, topics), null, 'the start of a log that has lost events')
      const at = await position(broker)
      const next: string[] = []
      for (let i = 0; i < maxLen; i++) next.push(await broker.publish('a', 'e', String(i)))
      // An approximate trim may keep more than maxLen: what it dropped is only known far back.
      if (!approximateTrim) t.same(ids(await broker.history(at, topics)), next, 'the position has left, the events after it have not')
      for (let i = 0; i < 500; i++) await broker.publish('a', 'e', String(i))
      t.equal(await broker.history(at, topics), null, 'events after it have left')
    })

    t.test('history more than maxScan entries back is null, whatever the topics', async (t) => {
      const broker = await open(t, { maxScan: 2 })
      const all: string[] = []
      for (const topic of ['a', 'b', 'b', 'a']) all.push(await broker.publish(topic, 'e', '{}'))
      t.equal(await broker.history(all[0], new Set(['a'])), null, '3 entries back')
      t.equal(await broker.history(all[0], new Set(['b'])), null, '3 entries back, other topic')
      t.same(ids(await broker.history(all[1], new Set(['a']))), [all[3]], '2 entries back')
      t.same(ids(await broker.history(all[1], new Set(['a', 'b']))), [all[2], all[3]])
    })

    t.test('after close(), publish rejects with FRT_ERR_BROKER_UNAVAILABLE and listeners get nothing more', async (t) => {
      const broker = await open(t)
      const listener = listen(broker)
      const before = await broker.publish('t', 'e', 'before')
      await listener.waitFor(1)
      await broker.close()
      await t.rejects(broker.publish('t', 'e', 'after'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
      await t.resolves(broker.close(), 'a second close() resolves')
      await t.rejects(broker.publish('t', 'e', 'after'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'still rejects')
      await t.rejects(position(broker), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'position() rejects too')
      if (makePeer !== undefined) {
        // Events of the shared log published after close() do not reach the closed broker's listeners.
        const peer = await openPeer(t, broker)
        const witness = listen(peer)
        const later = await peer.publish('t', 'e', 'later')
        await receivedUpTo(t, witness, later, [before])
        await sleep(100) // a short grace for a reader that would (wrongly) still deliver
      }
      t.same(ids(listener.events), [before])
    })

    t.test('options maxLen, maxAgeMs, maxScan must be positive integers, else FRT_ERR_INVALID_OPTION', async (t) => {
      for (const option of ['maxLen', 'maxAgeMs', 'maxScan']) {
        for (const value of [0, -1, 1.5, '10', Number.NaN, Number.POSITIVE_INFINITY, null, 2 ** 53]) {
          t.equal(await codeOfMaking(() => makeBroker({ [option]: value })), 'FRT_ERR_INVALID_OPTION', `${option}: ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`)
        }
        t.equal(await codeOfMaking(() => makeBroker({ [option]: 1 })), 'did not throw', `${option}: 1`)
      }
    })

    if (makePeer === undefined) return

    t.test('brokers on one log: a listener gets an event published on another broker right after listen()', async (t) => {
      // Three rounds, each with a broker that is already up and a peer whose first listen() has just been called.
      for (let round = 0; round < 3; round++) {
        const broker = await open(t)
        const before = await broker.publish('lobby', 'message', '"before"')
        const peer = await openPeer(t, broker)
        const listener = listen(peer)
        const id = await broker.publish('lobby', 'message', `${round}`)
        await t.test(`round ${round}`, (t) => receivedUpTo(t, listener, id, [before]))
      }
    })

    t.test('brokers on one log: every listener of each gets the events of both, in one order', async (t) => {
      const broker = await open(t)
      const peer = await openPeer(t, broker)
      const listeners = [listen(broker), listen(broker), listen(peer)]
      // Warm up until every listener has got the same event: the readers are live from then on (how
      // listening starts is the test above), and everything before that event has been delivered.
      const deadline = Date.now() + deliveryTimeoutMs
      for (let live = false; !live;) {
        const warmUp = await peer.publish('lobby', 'e', 'warm-up')
        const got = (events: BrokerEvent[]): boolean => events.some((event) => event.id === warmUp)
        live = (await Promise.allSettled(listeners.map((listener) => listener.waitUntil(got, 'the warm-up', 200))))
          .every((result) => result.status === 'fulfilled')
        if (!live && Date.now() > deadline) throw new Error(`the listeners never all got one event within ${deliveryTimeoutMs} ms`)
      }
      for (const listener of listeners) listener.events.length = 0
      const published: string[] = []
      for (let i = 0; i < 20; i++) published.push(await (i % 2 === 0 ? broker : peer).publish('lobby', 'e', String(i)))
      const concurrent = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? broker : peer).publish('lobby', 'e', `c${i}`)))
      const expected = [...published, ...concurrent.sort((a, b) => isBefore(a, b) ? -1 : 1)]
      t.same(new Set(expected).size, expected.length, 'distinct ids across brokers')
      for (const [index, listener] of listeners.entries()) {
        t.same(ids(await listener.waitFor(expected.length)), expected, `listener ${index}: id order`)
      }
    })

    t.test('brokers on one log: an id from one resumes on the other, with the events of both', async (t) => {
      const broker = await open(t)
      const peer = await openPeer(t, broker)
      const start = await broker.publish('a', 'e', '0')
      const fromPeer = await peer.publish('a', 'e', '1')
      await peer.publish('b', 'e', '2')
      const fromBroker = await broker.publish('a', 'e', '3')
      t.same(ids(await peer.history(start, new Set(['a']))), [fromPeer, fromBroker], 'the peer resumes an id the broker issued')
      t.same(ids(await broker.history(start, new Set(['a']))), [fromPeer, fromBroker], 'and the broker itself')
      t.same(ids(await broker.history(fromPeer, new Set(['a']))), [fromBroker], 'the broker resumes an id the peer issued')
    })

    t.test('brokers on one log: the position of one follows the events of both, and resumes on the other', async (t) => {
      const broker = await open(t)
      const peer = await openPeer(t, broker)
      const listener = listen(broker)
      const start = await position(peer)
      t.same(await broker.history(start, new Set(['a'])), [], 'the start of the shared log resumes on the other broker')
      const first = await broker.publish('a', 'e', '0')
      const newest = await peer.publish('a', 'e', '1')
      await listener.waitUntil((events) => events.some((event) => event.id === newest), 'the peer\'s event')
      t.equal(await position(broker), newest, 'the peer\'s event, once delivered here')
      t.same(ids(await peer.history(await position(broker), new Set(['a']))), [], 'nothing after it, on the peer too')
      t.same(ids(await peer.history(start, new Set(['a']))), [first, newest])
    })
  })
}
