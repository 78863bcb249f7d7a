import { deepStrictEqual, strictEqual } from 'node:assert/strict'
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import {
  assertField,
  frameComment,
  frameData,
  frameEvent,
  frameRetry
} from '../../lib/sse/framing.js'
import { retryOption } from '../../lib/options.js'
import { EventStreamParser } from '../../lib/protocol/event-stream.js'

const RUNS = 500

/** Runs a fast-check property; the counterexample ends up in the failure message. */
function holds (t: Test, property: fc.IProperty<any>, numRuns = RUNS): void {
  t.doesNotThrow(() => fc.assert(property, { numRuns }), `holds for ${numRuns} runs`)
}

interface Parsed {
  events: EventSourceMessage[]
  retries: number[]
  comments: string[]
}

/** Reads text chunks with eventsource-parser, the parser the `eventsource` client uses. */
function parse (chunks: string[]): Parsed {
  const parsed: Parsed = { events: [], retries: [], comments: [] }
  const parser = createParser({
    onEvent: (event) => { parsed.events.push(event) },
    onRetry: (retry) => { parsed.retries.push(retry) },
    onComment: (comment) => { parsed.comments.push(comment) }
  })
  for (const chunk of chunks) parser.feed(chunk)
  return parsed
}

/** What a client reads from `text`'s bytes cut at `cuts` and decoded as they arrive, as fetch() delivers them. */
function decodedChunks (text: string, cuts: number[] | 'each-byte'): string[] {
  const bytes = new TextEncoder().encode(text)
  const points = cuts === 'each-byte'
    ? Array.from({ length: bytes.length + 1 }, (_, i) => i)
    : [0, ...cuts.map((cut) => cut % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]
  const decoder = new TextDecoder('utf-8')
  const chunks: string[] = []
  for (let i = 1; i < points.length; i++) {
    chunks.push(decoder.decode(bytes.subarray(points[i - 1], points[i]), { stream: true }))
  }
  chunks.push(decoder.decode())
  return chunks
}

/** The data a client dispatches: every line break (CRLF, CR, LF) becomes LF. */
function normalized (data: string): string {
  return data.replace(/\r\n|\r/g, '\n')
}

/** Strings rich in what could end a field or start another. */
const TRICKY = fc.constantFrom(
  '\r', '\n', '\r\n', '\n\r', ':', ' ', '\0', '\uFEFF', 'data:', 'data: ', 'id:', 'id: 999', 'event:',
  'event: admin', 'retry: 1', 'a', 'é', '€', '😀', '\u2028'
)
const anyData = fc.oneof(
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: TRICKY })
)
/** Legal event names and ids: anything but CR, LF and NUL. */
const fieldValue = fc.oneof(
  fc.string({ unit: 'grapheme' }),
  fc.string({ unit: TRICKY })
).map((value) => value.replace(/[\r\n\0]/g, ''))
const cuts = fc.oneof(
  fc.array(fc.nat(), { maxLength: 12 }),
  fc.constant('each-byte' as const)
)
/** A string holding at least one CR, LF or NUL. */
const withForbidden = fc.tuple(anyData, fc.constantFrom('\r', '\n', '\r\n', '\0'), anyData)
  .map(([before, bad, after]) => before + bad + after)

function codeOf (fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  return 'did not throw'
}

t.test('frameEvent round-trips any data, event name and id through eventsource-parser', async (t) => {
  holds(t, fc.property(
    fc.option(fieldValue, { nil: undefined }),
    anyData,
    fc.option(fieldValue, { nil: undefined }),
    (event, data, id) => {
      const { events } = parse([frameEvent(event, data, id)])
      deepStrictEqual(events, [{ event: event === '' ? undefined : event, data: normalized(data), id }])
    }
  ))
})

t.test('frameEvent reads the same whatever the chunking (inside CRLF and inside UTF-8 sequences)', async (t) => {
  holds(t, fc.property(
    fc.option(fieldValue, { nil: undefined }),
    anyData,
    fc.option(fieldValue, { nil: undefined }),
    cuts,
    (event, data, id, cutAt) => {
      const { events } = parse(decodedChunks(frameEvent(event, data, id), cutAt))
      deepStrictEqual(events, [{ event: event === '' ? undefined : event, data: normalized(data), id }])
    }
  ))
})

t.test('no data can forge a field or an event: neighbours keep their own fields', async (t) => {
  holds(t, fc.property(
    fc.option(fieldValue, { nil: undefined }),
    anyData,
    fc.option(fieldValue, { nil: undefined }),
    cuts,
    (event, data, id, cutAt) => {
      const stream = frameEvent('before', 'x', 'first') + frameEvent(event, data, id) + frameEvent(undefined, 'after')
      const { events, retries } = parse(decodedChunks(stream, cutAt))
      deepStrictEqual(events, [
        { event: 'before', data: 'x', id: 'first' },
        { event: event === '' ? undefined : event, data: normalized(data), id },
        { event: undefined, data: 'after', id: undefined }
      ])
      deepStrictEqual(retries, [])
      // The spec's last event ID buffer (what Last-Event-ID resumes from) moves only with our id.
      const browser = new EventStreamParser(() => {})
      browser.push(new TextEncoder().encode(stream))
      strictEqual(browser.lastEventId, id ?? 'first')
      strictEqual(browser.retry, undefined)
    }
  ))
})

t.test('an event name holding CR, LF or NUL throws FRT_ERR_SSE_INVALID_FIELD', async (t) => {
  holds(t, fc.property(withForbidden, anyData, (event, data) => {
    strictEqual(codeOf(() => frameEvent(event, data)), 'FRT_ERR_SSE_INVALID_FIELD')
  }))
})

t.test('an id holding CR, LF or NUL throws FRT_ERR_SSE_INVALID_FIELD', async (t) => {
  holds(t, fc.property(withForbidden, anyData, (id, data) => {
    strictEqual(codeOf(() => frameEvent('message', data, id)), 'FRT_ERR_SSE_INVALID_FIELD')
    strictEqual(codeOf(() => frameEvent(undefined, data, id)), 'FRT_ERR_SSE_INVALID_FIELD')
  }))
})

t.test('frameComment of any text dispatches nothing and leaves the last event id and retry alone', async (t) => {
  holds(t, fc.property(anyData, cuts, (text, cutAt) => {
    const stream = frameEvent(undefined, 'x', 'before') + frameComment(text) + frameEvent(undefined, 'y')
    const { events, retries, comments } = parse(decodedChunks(stream, cutAt))
    deepStrictEqual(events, [
      { event: undefined, data: 'x', id: 'before' },
      { event: undefined, data: 'y', id: undefined }
    ])
    deepStrictEqual(retries, [])
    // Every line of the text arrives as one comment, nothing else.
    deepStrictEqual(comments, text.split(/\r\n|\r|\n/))
    const browser = new EventStreamParser(() => {})
    browser.push(stream)
    strictEqual(browser.lastEventId, 'before')
    strictEqual(browser.retry, undefined)
  }))
})

t.test('a comment alone dispatches no event', async (t) => {
  holds(t, fc.property(anyData, (text) => {
    deepStrictEqual(parse([frameComment(text)]).events, [])
  }))
})

t.test('frameComment writes one ":" line per line and ends with a blank line', async (t) => {
  t.equal(frameComment(''), ':\n\n')
  t.equal(frameComment('ping'), ': ping\n\n')
  t.equal(frameComment('a\r\nb\rc\n\nd'), ': a\n: b\n: c\n:\n: d\n\n')
  t.equal(frameComment(42 as unknown as string), ': 42\n\n', 'a non-string is stringified, not a crash')
})

t.test('frameData writes one data line per line, whatever the line break', async (t) => {
  t.equal(frameData('plain'), 'data: plain\n')
  t.equal(frameData('a\r\nb\rc\nd'), 'data: a\ndata: b\ndata: c\ndata: d\n')
  t.equal(frameData('trailing\n'), 'data: trailing\ndata: \n')
})

t.test('frameEvent writes id, event, retry and data lines, then the blank line', async (t) => {
  t.equal(frameEvent('tick', '{"n":1}', '7-0', 1500), 'id: 7-0\nevent: tick\nretry: 1500\ndata: {"n":1}\n\n')
  t.equal(frameEvent(undefined, 'hi'), 'data: hi\n\n')
})

t.test('id "" is legal: an "id: " line that resets the last event id', async (t) => {
  const frame = frameEvent(undefined, 'x', '')
  t.equal(frame, 'id: \ndata: x\n\n')
  t.same(parse([frame]).events, [{ event: undefined, data: 'x', id: '' }])
  const browser = new EventStreamParser(() => {})
  browser.push(frameEvent(undefined, 'a', 'earlier') + frame)
  t.equal(browser.lastEventId, '')
})

t.test('id "0" is legal and sent', async (t) => {
  t.equal(frameEvent(undefined, 'x', '0'), 'id: 0\ndata: x\n\n')
  t.same(parse([frameEvent(undefined, 'x', '0')]).events, [{ event: undefined, data: 'x', id: '0' }])
})

t.test('retry 0 is legal, alone or with an event', async (t) => {
  t.equal(frameRetry(0), 'retry: 0\n\n')
  const alone = parse([frameRetry(0)])
  t.same(alone.retries, [0])
  t.same(alone.events, [], 'a lone retry dispatches nothing')
  const withEvent = parse([frameEvent('e', 'x', undefined, 0)])
  t.same(withEvent.retries, [0])
  t.same(withEvent.events, [{ event: 'e', data: 'x', id: undefined }])
})

t.test('retry must be a non-negative integer: anything else throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const retry of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '5', null, {}]) {
    t.equal(codeOf(() => frameRetry(retry as number)), 'FRT_ERR_INVALID_OPTION', `frameRetry(${String(retry)})`)
    t.equal(codeOf(() => frameEvent('e', 'x', undefined, retry as number)), 'FRT_ERR_INVALID_OPTION', `frameEvent retry ${String(retry)}`)
    t.equal(codeOf(() => retryOption(retry)), 'FRT_ERR_INVALID_OPTION', `retryOption(${String(retry)})`)
  }
  t.doesNotThrow(() => retryOption(Number.MAX_SAFE_INTEGER))
})

t.test('an event name or id that is not a string throws FRT_ERR_INVALID_OPTION', async (t) => {
  t.equal(codeOf(() => frameEvent(42 as unknown as string, 'x')), 'FRT_ERR_INVALID_OPTION')
  t.equal(codeOf(() => frameEvent('e', 'x', null as unknown as string)), 'FRT_ERR_INVALID_OPTION')
  t.equal(codeOf(() => assertField('id', 1)), 'FRT_ERR_INVALID_OPTION')
  t.doesNotThrow(() => assertField('event', 'a: b c'))
})

t.test('empty data dispatches one event with data ""', async (t) => {
  t.equal(frameEvent(undefined, ''), 'data: \n\n')
  t.same(parse([frameEvent(undefined, '')]).events, [{ event: undefined, data: '', id: undefined }])
})

t.test('data starting with a space keeps its space', async (t) => {
  t.same(parse([frameEvent(undefined, ' x')]).events, [{ event: undefined, data: ' x', id: undefined }])
  t.same(parse([frameEvent(undefined, ' a\n  b')]).events, [{ event: undefined, data: ' a\n  b', id: undefined }])
})

t.test('event undefined writes no event line: the type is "message"', async (t) => {
  const frame = frameEvent(undefined, 'x', '1')
  t.notMatch(frame, /event:/)
  const seen: string[] = []
  new EventStreamParser((event) => seen.push(event.event)).push(frame)
  t.same(seen, ['message'])
})

t.test('regression: event name with \\n cannot inject an admin event', async (t) => {
  for (const event of ['x\nevent: admin\ndata: pwned', 'x\r\nevent: admin', 'x\revent: admin']) {
    t.equal(codeOf(() => frameEvent(event, 'hi')), 'FRT_ERR_SSE_INVALID_FIELD', JSON.stringify(event))
  }
})

t.test('regression: lone \\r in id cannot inject a data line', async (t) => {
  t.equal(codeOf(() => frameEvent('m', 'hi', '1\rdata: injected')), 'FRT_ERR_SSE_INVALID_FIELD')
  t.equal(codeOf(() => frameEvent('m', 'hi', '1\0')), 'FRT_ERR_SSE_INVALID_FIELD', 'NUL would make clients ignore the id')
})

t.test('regression: \\r in data cannot forge id: 999', async (t) => {
  const stream = frameEvent(undefined, 'x\rid: 999', '1') + frameEvent(undefined, 'next\r\rid: 999\r')
  t.same(parse([stream]).events, [
    { event: undefined, data: 'x\nid: 999', id: '1' },
    { event: undefined, data: 'next\n\nid: 999\n', id: undefined }
  ])
  const browser = new EventStreamParser(() => {})
  browser.push(stream)
  t.equal(browser.lastEventId, '1')
})
