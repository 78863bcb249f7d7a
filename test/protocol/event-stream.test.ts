import { deepStrictEqual } from 'node:assert/strict'
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { createParser } from 'eventsource-parser'
import { EventStreamParser, type ParsedEvent } from '../../lib/protocol/event-stream.js'

const RUNS = 500
const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

function holds (t: Test, property: fc.IProperty<any>, numRuns = RUNS): void {
  t.doesNotThrow(() => fc.assert(property, { numRuns }), `holds for ${numRuns} runs`)
}

interface Outcome {
  events: ParsedEvent[]
  lastEventId: string
  retry: number | undefined
}

/** Our parser, fed chunk by chunk. */
function ours (chunks: (string | Uint8Array)[]): Outcome {
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser((event) => events.push(event))
  for (const chunk of chunks) parser.push(chunk)
  return { events, lastEventId: parser.lastEventId, retry: parser.retry }
}

/**
 * eventsource-parser v3 on the whole text. It reports no last event id buffer, so that one comes from
 * a plain reading of the spec: the last complete `id` line whose value holds no NUL.
 */
function reference (text: string): Outcome {
  const events: ParsedEvent[] = []
  let retry: number | undefined
  const parser = createParser({
    onEvent: (event) => { events.push({ event: event.event ?? 'message', data: event.data, id: event.id }) },
    onRetry: (value) => { retry = value }
  })
  // A CR that ends the stream ends its line (spec), but eventsource-parser waits to see whether an LF
  // follows; an LF after it makes the same single line break, so it reads the same stream to the end.
  parser.feed(text.endsWith('\r') ? `${text}\n` : text)
  const lines = text.split(/\r\n|\r|\n/)
  lines.pop() // the unterminated rest: not a line yet
  let lastEventId = ''
  for (const line of lines) {
    const colon = line.indexOf(':')
    if ((colon === -1 ? line : line.slice(0, colon)) !== 'id') continue
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
    if (!value.includes('\0')) lastEventId = value
  }
  return { events, lastEventId, retry }
}

/**
 * How to cut a stream into chunks: at random points (doubled points give empty chunks, as a stream
 * may deliver), or right after every CR with an empty chunk there, to split each CRLF the hard way.
 */
type Plan = { points: number[], doubled: boolean } | 'after-each-cr'

/** Cuts text or bytes by a plan. */
function cut<T extends string | Uint8Array> (whole: T, plan: Plan): T[] {
  const at: number[] = []
  if (plan === 'after-each-cr') {
    for (let i = 0; i < whole.length; i++) {
      const unit = typeof whole === 'string' ? whole.charCodeAt(i) : whole[i]
      if (unit === 0x0d) at.push(i + 1, i + 1)
    }
  } else {
    for (const point of plan.points) {
      at.push(point % (whole.length + 1))
      if (plan.doubled) at.push(point % (whole.length + 1))
    }
    at.sort((a, b) => a - b)
  }
  const bounds = [0, ...at, whole.length]
  const chunks: T[] = []
  for (let i = 1; i < bounds.length; i++) chunks.push(whole.slice(bounds[i - 1], bounds[i]) as T)
  return chunks
}

const valueChars = fc.constantFrom('a', 'Z', '1', ' ', ':', '\t', '\0', 'é', '€', '😀', '\uFEFF', 'data:', 'id:')
const value = fc.string({ unit: valueChars, maxLength: 6 })
const retryValue = fc.oneof(
  fc.nat({ max: 100000 }).map(String),
  fc.constantFrom('', ' 5', '5 ', '-1', '1.5', '12a', '0x10', '\u0663', '007', '99999999999999999999')
)
const line = fc.oneof(
  { arbitrary: value.map((v) => `data:${v}`), weight: 4 },
  { arbitrary: value.map((v) => `data: ${v}`), weight: 4 },
  { arbitrary: fc.constant('data'), weight: 1 },
  { arbitrary: value.map((v) => `id:${v}`), weight: 2 },
  { arbitrary: value.map((v) => `id: ${v}`), weight: 2 },
  { arbitrary: fc.constant('id'), weight: 1 },
  { arbitrary: value.map((v) => `event:${v}`), weight: 2 },
  { arbitrary: value.map((v) => `event: ${v}`), weight: 2 },
  { arbitrary: fc.constant('event'), weight: 1 },
  { arbitrary: retryValue.map((v) => `retry:${v}`), weight: 1 },
  { arbitrary: retryValue.map((v) => `retry: ${v}`), weight: 1 },
  { arbitrary: value.map((v) => `:${v}`), weight: 2 },
  { arbitrary: fc.tuple(fc.constantFrom('foo', 'Data', 'data ', 'ID', 'retr', 'events', ' data'), value).map(([f, v]) => `${f}:${v}`), weight: 2 },
  { arbitrary: fc.constant(''), weight: 5 }
)
const terminator = fc.constantFrom('\n', '\r', '\r\n')
/** A stream of lines with random terminators; the last line may lack its terminator. */
const stream = fc.tuple(
  fc.array(fc.tuple(line, terminator), { maxLength: 30 }),
  fc.boolean()
).map(([lines, terminated]) => {
  const text = lines.map(([l, end]) => l + end).join('')
  const last = lines.at(-1)
  return terminated || last === undefined ? text : text.slice(0, text.length - last[1].length)
})
const plan: fc.Arbitrary<Plan> = fc.oneof(
  fc.record({ points: fc.array(fc.nat(), { maxLength: 16 }), doubled: fc.boolean() }),
  fc.constant('after-each-cr' as const)
)

t.test('agrees with eventsource-parser on whole text streams', async (t) => {
  holds(t, fc.property(stream, (text) => {
    deepStrictEqual(ours([text]), reference(text))
  }))
})

t.test('agrees with eventsource-parser on text streams cut anywhere (inside CRLF, inside surrogate pairs)', async (t) => {
  holds(t, fc.property(stream, plan, (text, how) => {
    deepStrictEqual(ours(cut(text, how)), reference(text))
  }))
})

t.test('agrees with eventsource-parser on byte streams cut anywhere (inside CRLF, inside UTF-8 sequences)', async (t) => {
  holds(t, fc.property(stream, plan, (text, how) => {
    deepStrictEqual(ours(cut(encode(text), how)), reference(text))
  }))
})

t.test('agrees with eventsource-parser on byte streams fed one byte at a time', async (t) => {
  holds(t, fc.property(stream, (text) => {
    const bytes = encode(text)
    deepStrictEqual(ours(Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))), reference(text))
  }), 200)
})

t.test('dispatches on a blank line: event type, data lines joined by LF, id', async (t) => {
  const { events, lastEventId } = ours(['id: 5\nevent: tick\ndata: a\ndata:b\ndata\n\n'])
  t.same(events, [{ event: 'tick', data: 'a\nb\n', id: '5' }])
  t.equal(lastEventId, '5')
})

t.test('an event without an event field is a "message", without an id field has id undefined', async (t) => {
  t.same(ours(['data: x\n\n']).events, [{ event: 'message', data: 'x', id: undefined }])
  t.same(ours(['event:\ndata: x\n\n']).events, [{ event: 'message', data: 'x', id: undefined }])
})

t.test('the last event id persists across events that have no id field', async (t) => {
  const { events, lastEventId } = ours(['id: 1\ndata: a\n\ndata: b\n\n'])
  t.same(events.map((event) => event.id), ['1', undefined])
  t.equal(lastEventId, '1')
})

t.test('a block without data dispatches nothing, but its id and retry still count', async (t) => {
  const { events, lastEventId, retry } = ours(['id: 3\nevent: ignored\nretry: 10\n\ndata: x\n\n'])
  t.same(events, [{ event: 'message', data: 'x', id: undefined }], 'the event type does not carry over')
  t.equal(lastEventId, '3')
  t.equal(retry, 10)
})

t.test('only one leading space of a value is removed', async (t) => {
  t.same(ours(['data:  two\nid:  a \n\n']).events, [{ event: 'message', data: ' two', id: ' a ' }])
})

t.test('comments and unknown fields are ignored', async (t) => {
  t.same(ours([': hi\n:\nfoo: bar\nData: no\ndata : no\ndata: yes\n\n']).events, [{ event: 'message', data: 'yes', id: undefined }])
})

t.test('an id containing NUL is ignored', async (t) => {
  const { events, lastEventId } = ours(['id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n'])
  t.same(events, [{ event: 'message', data: 'a', id: '1' }, { event: 'message', data: 'b', id: undefined }])
  t.equal(lastEventId, '1')
})

t.test('an empty id resets the last event id', async (t) => {
  t.equal(ours(['id: 1\ndata: a\n\nid\ndata: b\n\n']).lastEventId, '')
  t.equal(ours(['id: 1\ndata: a\n\nid:\ndata: b\n\n']).lastEventId, '')
})

t.test('retry takes ASCII digits only', async (t) => {
  t.equal(ours(['retry: 250\n']).retry, 250)
  t.equal(ours(['retry: 0\n']).retry, 0)
  for (const bad of ['-1', '1.5', '12a', ' 5', '\u0663', '']) {
    t.equal(ours([`retry: 100\nretry: ${bad}\n`]).retry, 100, `"${bad}" is ignored`)
  }
})

t.test('CR, LF and CRLF all end a line; CRLF is one line break', async (t) => {
  t.same(ours(['data: a\r\rdata: b\n\ndata: c\r\n\r\n']).events.map((event) => event.data), ['a', 'b', 'c'])
})

t.test('a lone CR at the end of the input ends the line at once', async (t) => {
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser((event) => events.push(event))
  parser.push('data: a\r\r')
  t.same(events, [{ event: 'message', data: 'a', id: undefined }], 'dispatched before any LF arrives')
  parser.push('\ndata: b\n\n')
  t.same(events.map((event) => event.data), ['a', 'b'], 'the LF of the split CRLF is not a second line break')
})

t.test('a CRLF split across two chunks is one line break', async (t) => {
  t.same(ours(['data: a\r', '\ndata: b\r', '\n\r', '\n']).events, [{ event: 'message', data: 'a\nb', id: undefined }])
  t.same(ours([encode('data: a\r'), encode('\ndata: b\r'), encode('\n\r'), encode('\n')]).events,
    [{ event: 'message', data: 'a\nb', id: undefined }])
})

t.test('regression: an empty chunk between the CR and the LF of a CRLF is not a second line break', async (t) => {
  t.same(ours(['data: a\r', '', '\ndata: b\n\n']).events, [{ event: 'message', data: 'a\nb', id: undefined }])
  t.same(ours([encode('data: a\r'), new Uint8Array(0), encode('\ndata: b\n\n')]).events,
    [{ event: 'message', data: 'a\nb', id: undefined }])
})

t.test('multi-byte characters split across byte chunks are decoded whole', async (t) => {
  const bytes = encode('data: é€😀\n\n')
  t.same(ours([bytes.subarray(0, 7), bytes.subarray(7, 10), bytes.subarray(10, 14), bytes.subarray(14)]).events,
    [{ event: 'message', data: 'é€😀', id: undefined }])
})

t.test('a leading BOM is stripped (text and bytes)', async (t) => {
  t.same(ours(['\uFEFFdata: x\n\n']).events, [{ event: 'message', data: 'x', id: undefined }])
  t.same(ours([encode('\uFEFFdata: x\n\n')]).events, [{ event: 'message', data: 'x', id: undefined }])
  const bom = encode('\uFEFF')
  t.same(ours([bom.subarray(0, 1), bom.subarray(1), encode('data: x\n\n')]).events,
    [{ event: 'message', data: 'x', id: undefined }], 'a BOM split across byte chunks')
  t.same(ours(['', '\uFEFFdata: x\n\n']).events, [{ event: 'message', data: 'x', id: undefined }],
    'an empty first chunk does not use up the BOM check')
})

t.test('a leading BOM is stripped once only: a second one belongs to the field name', async (t) => {
  t.same(ours(['\uFEFF\uFEFFdata: x\n\n']).events, [], 'text: the field "\\uFEFFdata" is unknown')
  t.same(ours(['\uFEFF', '\uFEFFdata: x\n\n']).events, [], 'text, one BOM per chunk')
  t.same(ours([encode('\uFEFF\uFEFFdata: x\n\n')]).events, [], 'bytes: the field "\\uFEFFdata" is unknown')
})

t.test('a BOM after the start of the stream is not stripped', async (t) => {
  t.same(ours(['data: a\n\n', '\uFEFFdata: b\n\n']).events, [{ event: 'message', data: 'a', id: undefined }])
  t.same(ours(['data: \uFEFFb\n\n']).events, [{ event: 'message', data: '\uFEFFb', id: undefined }])
})

t.test('end() discards a trailing event without its blank line', async (t) => {
  const events: ParsedEvent[] = []
  const parser = new EventStreamParser((event) => events.push(event))
  parser.push('data: a\n\nevent: late\nid: 9\ndata: b\ndata: partial')
  parser.end()
  t.same(events, [{ event: 'message', data: 'a', id: undefined }])
  // Nothing of the discarded event survives: not its data, type, id or unterminated line.
  parser.push('\ndata: c\n\n')
  t.same(events, [{ event: 'message', data: 'a', id: undefined }, { event: 'message', data: 'c', id: undefined }])
})
