import net from 'node:net'
import t from 'tap'
import fc from 'fast-check'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Topic } from '../../lib/index.js'
import { formatEventId, parseEventId } from '../../lib/protocol/event-id.js'
import { injectSSE, type SseEvent } from '../../lib/testing/index.js'
import { build, listen, recordEscapes } from '../helpers/index.js'
import { buildWs, openWS, sleep, within } from '../helpers/ws.js'

// Resume points from the client, fuzzed: `Last-Event-ID` (and `?lastEventId=`) on SSE, `after` on
// WebSocket. Any string either resumes (an id the broker issued, every event after which is still
// in its history: exactly the topic's events after it are replayed) or gives one reset per
// subscribe(); then the stream goes live. Nothing throws; nothing is replayed twice.

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

const RUNS = 300
const CANONICAL = /^(0|[1-9]\d*)-(0|[1-9]\d*)$/

const chat = defineContract({
  events: { message: Type.Object({ n: Type.Integer() }) },
  messages: { resume: Type.String() },
  replies: { resume: Type.Null() }
})

/** Ways to bend an issued id: most give a string that cannot be resumed, some another issued id. */
const MUTATIONS: Array<(value: string) => string> = [
  (value) => `0${value}`, // a leading zero: not canonical
  (value) => value.replace('-', '-0'),
  (value) => `-${value}`,
  (value) => `+${value}`,
  (value) => ` ${value}`,
  (value) => `${value} `,
  (value) => `${value}\0`,
  (value) => `${value}\r\n`,
  (value) => value.replace(/\d$/, (digit) => String((Number(digit) + 1) % 10)), // a neighbour, issued or not
  (value) => value.replace('-', '_'),
  (value) => value.replace(/^\d+/, (ms) => String(Number(ms) + 1)),
  (value) => value.replace(/\d/, '\u0661'), // an Arabic-Indic digit
  (value) => `${value}-0`,
  (value) => value.split('-')[0] as string,
  (value) => `${value}${'0'.repeat(300)}`
]

/** Strings near and far from event ids: the issued ones, their mutations, and anything at all. */
function resumePoints (issued: string[]): fc.Arbitrary<string> {
  const id = fc.constantFrom(...issued)
  const mutated = fc.tuple(id, fc.constantFrom(...MUTATIONS)).map(([value, mutate]) => mutate(value))
  return fc.oneof(
    { weight: 3, arbitrary: id },
    { weight: 4, arbitrary: mutated },
    { weight: 1, arbitrary: fc.constantFrom('', '0', '0-0', '-1', '1-', '-', '9007199254740992-0', '99999999999999999999-0', '1e3-0', '0x1-0', 'NaN-NaN', 'x'.repeat(256), 'x'.repeat(257), '1'.repeat(5000)) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('0', '1', '9', '-', ' ', '\0', '\r', '\n', 'é', '😀'), maxLength: 30 }) },
    { weight: 1, arbitrary: fc.tuple(fc.nat(), fc.nat()).map(([ms, seq]) => `${ms}-${seq}`) }
  )
}

/** The broker's log, as the tests published it: every id, and the topic of each. */
interface Log {
  ids: string[]
  topics: string[]
  /** The ids still in the history (the broker keeps the newest `kept`). */
  kept: number
}

/** The events of `topic` a subscription replays after `after`, or 'reset' when it cannot resume. */
function replayOf (log: Log, topic: string, after: string): string[] | 'reset' {
  const first = log.ids.length - log.kept
  // The retained ids resume, so does the newest trimmed one, and the start of the log ('0-0') while nothing was trimmed.
  const index = after === '0-0' ? -1 : log.ids.indexOf(after)
  if ((index === -1 && after !== '0-0') || index < first - 1) return 'reset'
  return log.ids.slice(index + 1).filter((_, i) => log.topics[index + 1 + i] === topic)
}

async function publishLog (a: Topic<typeof chat>, b: Topic<typeof chat>, kept: number): Promise<Log> {
  const log: Log = { ids: [], topics: [], kept }
  for (let n = 0; n < 12; n++) {
    const topic = n % 3 === 2 ? b : a
    log.ids.push(await topic.publish('message', { n }))
    log.topics.push(topic.name)
  }
  return log
}

t.test('property: parseEventId never throws, accepts exactly the canonical <ms>-<seq> within safe integers, and formats back to the same text', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(
    fc.oneof(
      fc.anything(),
      fc.string({ unit: fc.constantFrom('0', '1', '5', '9', '-', '+', ' ', 'e', '.'), maxLength: 40 }),
      fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 60n }), fc.bigInt({ min: 0n, max: 2n ** 60n })).map(([ms, seq]) => `${ms}-${seq}`)
    ),
    (value) => {
      const parsed = parseEventId(value)
      const match = typeof value === 'string' ? CANONICAL.exec(value) : null
      const valid = match !== null && BigInt(match[1] as string) <= BigInt(Number.MAX_SAFE_INTEGER) && BigInt(match[2] as string) <= BigInt(Number.MAX_SAFE_INTEGER)
      if (!valid) return parsed === undefined
      return parsed !== undefined && formatEventId(parsed.ms, parsed.seq) === value
    }
  ), { numRuns: 2000 }))
})

t.test('property: any Last-Event-ID header resumes exactly the events after an issued id, or sends one realtime.reset per subscribe(); then the stream is live', async (t) => {
  const app = await build(t, { broker: memoryBroker({ maxLen: 8 }) })
  const a = app.realtime.topic('a', { contract: chat })
  const b = app.realtime.topic('b', { contract: chat })
  const seen: Array<string | undefined> = []
  app.get('/both', async (request, reply) => {
    const stream = reply.sse()
    seen.push(stream.lastEventId)
    await stream.subscribe(a)
    await stream.subscribe(b)
    stream.send('live', 'subscribed') // both subscriptions are live from here on
  })
  const log = await publishLog(a, b, 8)
  let resumed = 0
  let resets = 0
  await fc.assert(fc.asyncProperty(resumePoints(log.ids), fc.boolean(), async (value, viaQuery) => {
    const sse = viaQuery
      ? await injectSSE(app, { url: `/both?lastEventId=${encodeURIComponent(value)}` })
      : await injectSSE(app, { url: '/both', lastEventId: value })
    try {
      const ignored = value.length > 256
      if (seen.at(-1) !== (ignored ? undefined : value)) throw new Error(`stream.lastEventId is ${JSON.stringify(seen.at(-1))}`)
      const expected: string[] = []
      for (const topic of ['a', 'b']) {
        const replay = ignored ? [] : replayOf(log, topic, value)
        if (replay === 'reset') expected.push(`reset ${topic}`)
        else expected.push(...replay)
        expected.push(`position ${log.ids.at(-1) as string}`)
      }
      const got: string[] = []
      for (;;) {
        const event: SseEvent = await sse.next()
        if (event.event === 'live') break
        if (event.event === 'realtime.reset') {
          const { topics } = JSON.parse(event.data) as { topics: string[] }
          if (event.id !== undefined || topics.length !== 1) throw new Error(`a reset names its one topic, without an id: ${JSON.stringify(event)}`)
          got.push(`reset ${topics[0] as string}`)
        } else if (event.event === 'realtime.position') {
          got.push(`position ${event.id as string}`)
        } else {
          got.push(event.id as string)
        }
      }
      if (got.join() !== expected.join()) throw new Error(`got ${got.join()}, expected ${expected.join()} for ${JSON.stringify(value)}`)
      if (expected.some((entry) => entry.startsWith('reset'))) resets++
      else if (!ignored) resumed++
    } finally {
      await sse.close()
    }
  }), { numRuns: RUNS })
  t.ok(resumed > 20, `${resumed} resumed`)
  t.ok(resets > 20, `${resets} reset`)
  // And the streams are live: one more subscriber with an arbitrary id gets the next event.
  const sse = await injectSSE(app, { url: '/both', lastEventId: '\0garbage' })
  const events = []
  for (let i = 0; i < 5; i++) events.push((await sse.next()).event)
  t.same(events, ['realtime.reset', 'realtime.position', 'realtime.reset', 'realtime.position', 'live'], 'one reset and one position per subscribe()')
  const id = await a.publish('message', { n: 99 })
  t.same(await sse.next(), { event: 'message', data: '{"n":99}', id }, 'the live event follows')
  await sse.close()
})

t.test('Last-Event-ID bytes on a real socket: surrounding whitespace is trimmed by HTTP, obs-text and a huge header do not crash anything', async (t) => {
  const app = await build(t, { broker: memoryBroker({ maxLen: 8 }) })
  const a = app.realtime.topic('a', { contract: chat })
  const seen: Array<string | undefined> = []
  app.get('/a', async (request, reply) => {
    const stream = reply.sse()
    seen.push(stream.lastEventId)
    await stream.subscribe(a)
    stream.send('live', 'subscribed')
  })
  const ids: string[] = []
  for (let n = 0; n < 3; n++) ids.push(await a.publish('message', { n }))
  const url = await listen(app)
  const { port } = new URL(url)

  /** Sends a GET with the raw header bytes; resolves to the status and the body read until `until` appears or the socket ends. */
  const get = (header: Buffer, until: string): Promise<{ status: number, body: string }> => new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    let text = ''
    const done = (): void => {
      socket.destroy()
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), body: text.slice(text.indexOf('\r\n\r\n') + 4) })
    }
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (text.includes(until)) done()
    })
    socket.on('close', done)
    socket.write(Buffer.concat([Buffer.from('GET /a HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nLast-Event-ID:'), header, Buffer.from('\r\n\r\n')]))
  })

  const trimmed = await within(get(Buffer.from(` \t${ids[0]} \t`), 'event: live'), 3000, 'the resumed stream')
  t.equal(trimmed.status, 200, 'served')
  t.equal(seen.at(-1), ids[0], 'optional whitespace around the value is not part of it')
  t.match(trimmed.body, `id: ${ids[1]}`, 'so it resumes')
  t.notMatch(trimmed.body, 'realtime.reset', 'without a reset')

  const latin1 = await within(get(Buffer.from([0x31, 0xe9, 0x2d, 0x30]), 'event: live'), 3000, 'the stream with obs-text')
  t.equal(latin1.status, 200, 'served')
  t.equal(seen.at(-1), '1é-0', 'obs-text is read as latin1')
  t.match(latin1.body, 'event: realtime.reset', 'and cannot be resumed')

  const before = seen.length
  const huge = await within(get(Buffer.alloc(20 * 1024, 0x31), '\r\n\r\n'), 3000, 'the answer to a huge header')
  t.equal(huge.status, 431, 'a header past Node\'s limit is refused by HTTP')
  t.equal(seen.length, before, 'before any handler ran')

  const nul = await within(get(Buffer.from(`${ids[0]}\0`), '\r\n\r\n'), 3000, 'the answer to a NUL')
  t.equal(nul.status, 400, 'a NUL in a header is refused by HTTP')
  t.equal(seen.length, before, 'before any handler ran')

  const sse = await injectSSE(app, { url: '/a', lastEventId: ids[1] })
  t.same(await sse.next(), { event: 'message', data: '{"n":2}', id: ids[2] }, 'the server still serves resumes')
  await sse.close()
})

t.test('property: any `after` given to conn.subscribe() resumes exactly the events after an issued id, or sends one reset; then the connection is live', async (t) => {
  const app = await buildWs(t, { broker: memoryBroker({ maxLen: 8 }) })
  const a = app.realtime.topic('a', { contract: chat })
  const b = app.realtime.topic('b', { contract: chat })
  app.ws('/resume', {
    contract: chat,
    rateLimit: false,
    handlers: {
      async resume (after, conn) {
        await conn.subscribe(a, { after })
        await conn.subscribe(b, { after })
        return null
      }
    }
  })
  const log = await publishLog(a, b, 8)
  let resumed = 0
  let resets = 0
  await fc.assert(fc.asyncProperty(resumePoints(log.ids), async (after) => {
    const ws = await openWS(app, '/resume')
    try {
      ws.sendRaw(JSON.stringify({ type: 'resume', id: 'r', data: after }))
      const expected: string[] = []
      for (const topic of ['a', 'b']) {
        const replay = replayOf(log, topic, after)
        if (replay === 'reset') expected.push(`reset ${topic}`)
        else expected.push(...replay)
      }
      const got: string[] = []
      for (;;) {
        const frame = await within(ws.nextFrame(), 3000, 'a frame')
        if (frame.type === 'reply') break
        got.push(frame.type === 'reset' ? `reset ${String(frame.topic)}` : frame.id as string)
      }
      if (got.join() !== expected.join()) throw new Error(`got ${got.join()}, expected ${expected.join()} for ${JSON.stringify(after)}`)
      if (expected.some((entry) => entry.startsWith('reset'))) resets++
      else resumed++
    } finally {
      ws.socket.terminate()
    }
  }), { numRuns: RUNS })
  t.ok(resumed > 20, `${resumed} resumed`)
  t.ok(resets > 20, `${resets} reset`)
  const ws = await openWS(app, '/resume')
  t.equal(await ws.request('resume', '\0'), null, 'answered')
  t.same([(await ws.nextFrame()).type, (await ws.nextFrame()).type], ['reset', 'reset'], 'one reset per subscribe()')
  const id = await b.publish('message', { n: 99 })
  t.same(await ws.nextFrame(), { type: 'event', topic: 'b', id, event: 'message', data: { n: 99 } }, 'the live event follows')
  ws.socket.terminate()
  await sleep(10)
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [], 'nothing escaped')
})
