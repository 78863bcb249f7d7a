import t from 'tap'
import fc from 'fast-check'
import { Type } from '@sinclair/typebox'
import type { EventSourceMessage } from 'eventsource-parser'
import { defineContract, type SseStream } from '../../lib/index.js'
import { EventStreamParser, type ParsedEvent } from '../../lib/protocol/event-stream.js'
import { build, connect, deferred, listen, recordEscapes, type RealClient } from '../helpers/index.js'
import { sleep, within } from '../helpers/ws.js'

// The SSE framer fuzzed end to end: what reply.sse() streams write on a real socket, read by
// eventsource-parser (what the `eventsource` client uses) and by the spec's algorithm
// (lib/sse/parser.ts). No input forges a field or an event; data round-trips with its line breaks
// normalized; event names and ids holding CR, LF or NUL are refused with a coded error and write
// nothing. (The framing functions alone are fuzzed in sse-framing.test.ts.)

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

/** Characters that could end a field or start another, and lone surrogates (sent as U+FFFD). */
const TRICKY = fc.oneof(
  fc.constantFrom('\r', '\n', '\r\n', '\n\r', ':', ' ', '\0', '\uFEFF', 'data:', 'id: 9', 'event: admin', 'retry: 1', 'a', 'é', '😀', '\u2028', '\u0085'),
  fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code))
)
const anyText = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.string({ unit: TRICKY, maxLength: 12 })
)
/** Event names and ids: mostly legal, sometimes holding CR, LF or NUL. */
const fieldText = fc.oneof(
  { weight: 4, arbitrary: anyText.map((text) => text.replace(/[\r\n\0]/g, '')) },
  { weight: 1, arbitrary: anyText }
)

const FORBIDDEN = /[\r\n\0]/

/** Text as it arrives: UTF-8 on the wire turns a lone surrogate into U+FFFD. */
function wire (text: string): string {
  return Buffer.from(text).toString()
}

/** Data as a client dispatches it: every line break (CRLF, CR, LF) becomes LF. */
function normalized (data: string): string {
  return wire(data).replace(/\r\n|\r/g, '\n')
}

function codeOf (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  return undefined
}

/** A real client plus the spec parser fed with the same text. */
interface Reader {
  client: RealClient
  spec: ParsedEvent[]
  parser: EventStreamParser
  /** Feeds the spec parser what arrived since the last call. */
  catchUp (): void
}

function reader (client: RealClient): Reader {
  const spec: ParsedEvent[] = []
  const parser = new EventStreamParser((event) => spec.push(event))
  let fed = 0
  return {
    client,
    spec,
    parser,
    catchUp () {
      parser.push(client.raw.slice(fed))
      fed = client.raw.length
    }
  }
}

type Op =
  | { kind: 'send', event: string, data: string | object, id: string | undefined }
  | { kind: 'comment', text: string }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('send' as const), event: fc.oneof(fieldText, fc.constantFrom('message', '')), data: fc.oneof({ weight: 4, arbitrary: anyText }, { weight: 1, arbitrary: fc.object({ maxDepth: 2 }) }), id: fc.option(fieldText, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('comment' as const), text: anyText }) }
)

t.test('property: stream.send and comment of any input, on a real socket: one event per send as sent, a coded refusal that writes nothing, never a forged field', async (t) => {
  const app = await build(t)
  const opened = deferred<SseStream>()
  app.get('/s', (request, reply) => { opened.resolve(reply.sse()) })
  const url = await listen(app)
  const client = await connect(`${url}/s`)
  t.teardown(() => client.destroy())
  const stream = await opened.promise
  const read = reader(client)
  const expected: EventSourceMessage[] = []
  let lastId = ''
  let refused = 0
  let n = 0
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 6 }), async (ops) => {
    const rawBefore = client.raw.length
    for (const op of ops) {
      if (op.kind === 'comment') {
        if (stream.comment(op.text) !== true) throw new Error('comment() refused')
        continue
      }
      const { event, data, id } = op
      const forbidden = FORBIDDEN.test(event) || (id !== undefined && FORBIDDEN.test(id))
      const code = codeOf(() => stream.send(event, data, { id }))
      if (forbidden) {
        if (code !== 'FRT_ERR_SSE_INVALID_FIELD') throw new Error(`send(${JSON.stringify(event)}, …, ${JSON.stringify(id)}) gave ${String(code)}`)
        refused++
        continue
      }
      if (code !== undefined) throw new Error(`send threw ${String(code)}`)
      const text = typeof data === 'string' ? data : JSON.stringify(data)
      expected.push({ event: event === '' || event === 'message' ? undefined : wire(event), data: normalized(text), id: id === undefined ? undefined : wire(id) })
      if (id !== undefined) lastId = wire(id)
    }
    stream.send('sentinel', String(++n))
    expected.push({ event: 'sentinel', data: String(n), id: undefined })
    const events = await within(client.waitFor(expected.length), 3000, 'the sentinel')
    if (client.events.length !== expected.length) throw new Error(`${client.events.length} events, expected ${expected.length}`)
    for (const [i, event] of events.entries()) {
      const want = expected[i] as EventSourceMessage
      if (event.event !== want.event || event.data !== want.data || event.id !== want.id) {
        throw new Error(`eventsource-parser read ${JSON.stringify(event)}, expected ${JSON.stringify(want)}; sent ${JSON.stringify(client.raw.slice(rawBefore))}`)
      }
    }
    read.catchUp()
    if (read.spec.length !== expected.length) throw new Error(`the spec parser read ${read.spec.length} events`)
    for (const [i, event] of read.spec.entries()) {
      const want = expected[i] as EventSourceMessage
      if (event.event !== (want.event === undefined ? 'message' : want.event) || event.data !== want.data || event.id !== want.id) {
        throw new Error(`the spec parser read ${JSON.stringify(event)}, expected ${JSON.stringify(want)}`)
      }
    }
    // What a browser would resume from moves only with the ids that were sent.
    if (read.parser.lastEventId !== lastId) throw new Error(`last event id ${JSON.stringify(read.parser.lastEventId)}, expected ${JSON.stringify(lastId)}`)
    if (read.parser.retry !== undefined) throw new Error('a retry was forged')
  }), { numRuns: 200 })
  t.ok(refused > 0, `${refused} sends refused with FRT_ERR_SSE_INVALID_FIELD`)
  t.ok(expected.length > 400, `${expected.length} events read back`)
  t.equal(stream.signal.aborted, false, 'the stream is still open')
})

t.test('property: with a contract, any string (lone surrogates too) and any JSON value round-trip exactly on one data line', async (t) => {
  const contract = defineContract({ events: { text: Type.String(), any: Type.Unknown() } })
  const app = await build(t)
  const opened = deferred<SseStream<typeof contract>>()
  app.get('/s', (request, reply) => { opened.resolve(reply.sse({ contract })) })
  const url = await listen(app)
  const client = await connect(`${url}/s`)
  t.teardown(() => client.destroy())
  const stream = await opened.promise
  let count = 0
  await fc.assert(fc.asyncProperty(fc.oneof(anyText.map((text) => ['text', text] as const), fc.jsonValue({ maxDepth: 4 }).map((value) => ['any', value] as const)), async ([event, value]) => {
    if (event === 'text') stream.send('text', value)
    else stream.send('any', value)
    const got = (await within(client.waitFor(++count), 3000, 'the event'))[count - 1] as EventSourceMessage
    if (got.event !== event) throw new Error(`event ${String(got.event)}`)
    if (/[\r\n]/.test(got.data)) throw new Error('JSON data spans several lines')
    const parsed = JSON.parse(got.data)
    if (event === 'text' ? parsed !== value : JSON.stringify(parsed) !== JSON.stringify(value)) {
      throw new Error(`${JSON.stringify(got.data)} is not ${JSON.stringify(value)}`)
    }
  }), { numRuns: 300 })
  t.equal(client.events.length, count, 'one event per send, nothing else')
})

interface Item { event?: string, data: string | object, id?: string }

const itemArb: fc.Arbitrary<Item> = fc.record({
  event: fc.option(fieldText, { nil: undefined }),
  data: fc.oneof({ weight: 4, arbitrary: anyText }, { weight: 1, arbitrary: fc.object({ maxDepth: 2 }) }),
  id: fc.option(fieldText, { nil: undefined })
}, { requiredKeys: ['data'] })

t.test('property: an iterable source of arbitrary items streams each valid one as sent; the first item with a CR, LF or NUL in a field ends the stream with a generic realtime.error', async (t) => {
  const app = await build(t)
  const sources = new Map<string, Item[]>()
  app.get('/source/:run', (request, reply) => {
    const items = sources.get((request.params as { run: string }).run) as Item[]
    return reply.sse((async function * () {
      for (const item of items) {
        await sleep(0)
        yield item
      }
    })())
  })
  const url = await listen(app)
  let errors = 0
  let n = 0
  await fc.assert(fc.asyncProperty(fc.array(itemArb, { minLength: 1, maxLength: 6 }), async (items) => {
    const run = String(++n)
    sources.set(run, items)
    const client = await connect(`${url}/source/${run}`)
    try {
      const expected: EventSourceMessage[] = []
      for (const { event, data, id } of items) {
        if ((event !== undefined && FORBIDDEN.test(event)) || (id !== undefined && FORBIDDEN.test(id))) {
          expected.push({ event: 'realtime.error', data: '{"code":"SOURCE_ERROR","message":"The event source failed."}', id: undefined })
          errors++
          break
        }
        const text = typeof data === 'string' ? data : JSON.stringify(data)
        expected.push({ event: event === undefined || event === '' || event === 'message' ? undefined : wire(event), data: normalized(text), id: id === undefined ? undefined : wire(id) })
      }
      await within(client.ended, 3000, 'the end of the stream')
      const got = client.events.map(({ event, data, id }) => ({ event, data, id }))
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        throw new Error(`read ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}; on the wire ${JSON.stringify(client.raw)}`)
      }
    } finally {
      client.destroy()
      sources.delete(run)
    }
  }), { numRuns: 100 })
  t.ok(errors > 0, `${errors} sources ended by a refused item`)
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [], 'nothing escaped')
})
