// The WebSocket messages the server sends have exactly the shapes of API.md.
import t, { type Test } from 'tap'
import fc from 'fast-check'
import {
  ErrorCode,
  errorMessage,
  eventMessage,
  helloMessage,
  replyMessage,
  resetMessage,
  subscribedReply,
  topicEventMessage
} from '../../lib/protocol/messages.js'
import { POSITION_EVENT_DATA, resetEventData } from '../../lib/protocol/reserved-events.js'

const RUNS = 500

/** Runs a fast-check property; the counterexample ends up in the failure message. */
function holds (t: Test, property: fc.IProperty<any>, numRuns = RUNS): void {
  t.doesNotThrow(() => fc.assert(property, { numRuns }), `holds for ${numRuns} runs`)
}

t.test('messages have exactly the shapes of API.md', async (t) => {
  t.test('reply', async (t) => {
    t.strictSame(JSON.parse(replyMessage('c1', '{"id":"1-0"}')), { type: 'reply', id: 'c1', data: { id: '1-0' } })
    t.strictSame(JSON.parse(replyMessage(7, '"ok"')), { type: 'reply', id: 7, data: 'ok' }, 'a numeric id stays a number')
    t.strictSame(JSON.parse(replyMessage(0, 'null')), { type: 'reply', id: 0, data: null }, 'null data is data')
    const empty = JSON.parse(replyMessage('c2', undefined))
    t.strictSame(empty, { type: 'reply', id: 'c2' })
    t.notOk('data' in empty, 'a reply without data has no data key')
    t.equal(JSON.parse(replyMessage('', undefined)).id, '', 'the empty string id is kept')
  })

  t.test('error', async (t) => {
    const details = [{ path: '/text', message: 'Expected string' }]
    t.strictSame(JSON.parse(errorMessage('c1', 'VALIDATION', 'Bad data.', details)), {
      type: 'error', id: 'c1', error: { code: 'VALIDATION', message: 'Bad data.', details }
    })
    const withoutDetails = JSON.parse(errorMessage(3, 'HANDLER_ERROR', 'The handler failed.'))
    t.strictSame(withoutDetails, { type: 'error', id: 3, error: { code: 'HANDLER_ERROR', message: 'The handler failed.' } })
    t.notOk('details' in withoutDetails.error, 'details only when given')
    const withoutId = JSON.parse(errorMessage(undefined, 'BAD_JSON', 'Not JSON.'))
    t.strictSame(withoutId, { type: 'error', error: { code: 'BAD_JSON', message: 'Not JSON.' } })
    t.notOk('id' in withoutId, 'no id key when the message had none')
    t.strictSame(JSON.parse(errorMessage('x', 'VALIDATION', 'm', [])).error.details, [], 'an empty details array is given, so kept')
  })

  t.test('event', async (t) => {
    const frame = JSON.parse(eventMessage('message', '{"user":"ann","text":"hi"}'))
    t.strictSame(frame, { type: 'event', event: 'message', data: { user: 'ann', text: 'hi' } })
    t.notOk('topic' in frame || 'id' in frame, 'no topic or id on a direct event')
  })

  t.test('topic event', async (t) => {
    t.strictSame(JSON.parse(topicEventMessage('lobby', '1700000000000-0', 'message', '{"user":"ann"}')), {
      type: 'event', topic: 'lobby', id: '1700000000000-0', event: 'message', data: { user: 'ann' }
    })
  })

  t.test('reset', async (t) => {
    t.strictSame(JSON.parse(resetMessage('lobby')), { type: 'reset', topic: 'lobby' })
  })

  t.test('hello', async (t) => {
    const hello = { connectionId: 'c-1', heartbeatMs: 30000, maxPayload: 65536, expiresAt: null }
    t.equal(helloMessage(hello), '{"type":"hello","data":{"connectionId":"c-1","heartbeatMs":30000,"maxPayload":65536,"expiresAt":null}}')
    const extra = { ...hello, expiresAt: 1700000000000, secret: 'x' }
    t.strictSame(JSON.parse(helloMessage(extra)), { type: 'hello', data: { ...hello, expiresAt: 1700000000000 } }, 'exactly the four fields')
  })

  t.test('the reply to realtime.subscribe', async (t) => {
    t.strictSame(JSON.parse(subscribedReply(7, { topic: 'room:42', position: '1700000000000-3', resumed: true })),
      { type: 'reply', id: 7, data: { topic: 'room:42', position: '1700000000000-3', resumed: true } })
    const noPosition = JSON.parse(subscribedReply('s', { topic: 'lobby', resumed: false }))
    t.strictSame(noPosition, { type: 'reply', id: 's', data: { topic: 'lobby', resumed: false } })
    t.notOk('position' in noPosition.data, 'no position key when the broker reports none')
  })

  t.test('error codes of the reserved messages', async (t) => {
    t.equal(ErrorCode.Forbidden, 'FORBIDDEN')
    t.equal(ErrorCode.TooManySubscriptions, 'TOO_MANY_SUBSCRIPTIONS')
  })

  t.test('SSE reserved events: reset names its topics, position carries {}', async (t) => {
    t.equal(resetEventData(['lobby', 'room:1']), '{"topics":["lobby","room:1"]}')
    t.equal(POSITION_EVENT_DATA, '{}')
  })

  t.test('strings that need escaping stay inside their field', async (t) => {
    const nasty = '","type":"reply","x":"\n\u2028\u0000\\'
    const frame = JSON.parse(topicEventMessage(nasty, nasty, nasty, '1'))
    t.strictSame(frame, { type: 'event', topic: nasty, id: nasty, event: nasty, data: 1 })
    t.strictSame(JSON.parse(errorMessage(nasty, 'X', nasty)), { type: 'error', id: nasty, error: { code: 'X', message: nasty } })
  })
})

t.test('properties', async (t) => {
  const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }))
  const jsonText = fc.oneof(fc.jsonValue(), fc.object()).map((value) => JSON.stringify(value) ?? 'null')

  t.test('topic events built from arbitrary strings and JSON parse back to the same values', async (t) => {
    holds(t, fc.property(anyString, anyString, anyString, jsonText, (topic, id, event, data) => {
      const frame = JSON.parse(topicEventMessage(topic, id, event, data))
      if (Object.keys(frame).join() !== 'type,topic,id,event,data') return false
      return frame.type === 'event' && frame.topic === topic && frame.id === id && frame.event === event &&
        JSON.stringify(frame.data) === JSON.stringify(JSON.parse(data))
    }))
  })

  t.test('events, resets, replies and errors parse back to the same values', async (t) => {
    const messageId = fc.oneof(anyString, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }))
    holds(t, fc.property(anyString, jsonText, messageId, fc.option(jsonText, { nil: undefined }), anyString, (name, data, id, reply, text) => {
      const event = JSON.parse(eventMessage(name, data))
      const reset = JSON.parse(resetMessage(name))
      const replied = JSON.parse(replyMessage(id, reply))
      const error = JSON.parse(errorMessage(id, 'HANDLER_ERROR', text))
      return event.type === 'event' && event.event === name && JSON.stringify(event.data) === data &&
        reset.type === 'reset' && reset.topic === name && Object.keys(reset).length === 2 &&
        replied.type === 'reply' && Object.is(replied.id, Object.is(id, -0) ? 0 : id) &&
        (reply === undefined ? !('data' in replied) : JSON.stringify(replied.data) === reply) &&
        error.type === 'error' && Object.is(error.id, Object.is(id, -0) ? 0 : id) &&
        error.error.code === 'HANDLER_ERROR' && error.error.message === text && !('details' in error.error)
    }))
  })
})
