// Parsing of inbound WebSocket messages against a model of API.md's wire format.
import t, { type Test } from 'tap'
import fc from 'fast-check'
import { replyMessage } from '../../lib/protocol/messages.js'
import { ProtocolError, parseMessage, type InboundMessage } from '../../lib/ws/inbound.js'

const RUNS = 500
const PROTOCOL_CODES = ['BAD_JSON', 'BAD_FRAME']

/** Runs a fast-check property; the counterexample ends up in the failure message. */
function holds (t: Test, property: fc.IProperty<any>, numRuns = RUNS): void {
  t.doesNotThrow(() => fc.assert(property, { numRuns }), `holds for ${numRuns} runs`)
}

function message (t: Test, text: string): InboundMessage {
  const parsed = parseMessage(text)
  if (parsed instanceof ProtocolError) {
    t.fail(`${text} was refused with ${parsed.code}`)
    throw new Error(parsed.message)
  }
  return parsed
}

function refusal (t: Test, text: string): ProtocolError {
  const parsed = parseMessage(text)
  t.ok(parsed instanceof ProtocolError, `${text.slice(0, 60)} is refused`)
  return parsed as ProtocolError
}

/** The reference model of parseMessage, written from API.md with plain JSON.parse. */
function expected (text: string): { code: 'BAD_JSON' | 'BAD_FRAME', id: unknown } | { type: string, id: unknown, data: unknown } {
  let value: unknown
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xFEFF ? text.slice(1) : text)
  } catch {
    return { code: 'BAD_JSON', id: undefined }
  }
  // secure-json-parse: an own "__proto__" key, or an own "constructor" object with an own "prototype" key.
  // Such a message is refused, but keeps its id (when valid) so the sender's request gets its answer.
  const top = value as Record<string, unknown> | null
  const topId = top !== null && typeof top === 'object' ? top.id : undefined
  const refusedId = (typeof topId === 'string' && topId.length <= 256) || (typeof topId === 'number' && Number.isFinite(topId)) ? topId : undefined
  const stack = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === null || typeof node !== 'object') continue
    if (Object.hasOwn(node, '__proto__')) return { code: 'BAD_JSON', id: refusedId }
    const ctor = (node as Record<string, unknown>).constructor
    if (Object.hasOwn(node, 'constructor') && ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) {
      return { code: 'BAD_JSON', id: refusedId }
    }
    stack.push(...Object.values(node))
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { code: 'BAD_FRAME', id: undefined }
  const { type, id, data } = value as Record<string, unknown>
  const goodId = id === undefined || (typeof id === 'string' && id.length <= 256) || (typeof id === 'number' && Number.isFinite(id))
  if (!goodId) return { code: 'BAD_FRAME', id: undefined }
  if (typeof type !== 'string') return { code: 'BAD_FRAME', id }
  return { type, id, data }
}

function sameAsModel (text: string): boolean {
  const parsed = parseMessage(text)
  const model = expected(text)
  if (parsed instanceof ProtocolError) {
    if (!PROTOCOL_CODES.includes(parsed.code)) throw new Error(`undocumented code ${parsed.code}`)
    if (typeof parsed.message !== 'string' || parsed.message === '') throw new Error('an error frame needs a message')
    if (!('code' in model)) throw new Error(`refused with ${parsed.code}, the model accepts it`)
    if (parsed.code !== model.code) throw new Error(`${parsed.code}, the model says ${model.code}`)
    if (!Object.is(parsed.id, model.id)) throw new Error(`id ${String(parsed.id)}, the model says ${String(model.id)}`)
    return true
  }
  if ('code' in model) throw new Error(`accepted, the model says ${model.code}`)
  if (typeof parsed.type !== 'string') throw new Error('type is not a string')
  if (!Object.is(parsed.id, model.id)) throw new Error(`id ${String(parsed.id)}, the model says ${String(model.id)}`)
  if (JSON.stringify(parsed.data) !== JSON.stringify(model.data)) throw new Error('data changed')
  return true
}

t.test('parseMessage: valid frames', async (t) => {
  t.test('a string id', async (t) => {
    t.strictSame(message(t, '{"type":"say","id":"c1","data":{"text":"hi"}}'), { type: 'say', id: 'c1', data: { text: 'hi' } })
  })

  t.test('a numeric id keeps its JSON type', async (t) => {
    t.strictSame(message(t, '{"type":"say","id":7,"data":{}}'), { type: 'say', id: 7, data: {} })
    t.equal(message(t, '{"type":"say","id":0}').id, 0, '0 is an id')
    t.equal(message(t, '{"type":"say","id":-1.5}').id, -1.5)
    t.equal(message(t, '{"type":"say","id":""}').id, '', 'the empty string is an id')
  })

  t.test('no id', async (t) => {
    const parsed = message(t, '{"type":"say","data":[1,2]}')
    t.strictSame(parsed, { type: 'say', id: undefined, data: [1, 2] })
  })

  t.test('data missing, null or a scalar', async (t) => {
    t.strictSame(message(t, '{"type":"ping","id":"p"}'), { type: 'ping', id: 'p', data: undefined })
    t.equal(message(t, '{"type":"ping","data":null}').data, null)
    t.equal(message(t, '{"type":"ping","data":"text"}').data, 'text')
    t.equal(message(t, '{"type":"ping","data":0}').data, 0)
  })

  t.test('keys in any order, whitespace, unknown keys ignored', async (t) => {
    t.strictSame(message(t, ' \n{ "data" : {"a":1} , "extra": true, "id":"x", "type" : "t" }\t'), { type: 't', id: 'x', data: { a: 1 } })
  })

  t.test('an id of exactly 256 characters', async (t) => {
    const id = 'i'.repeat(256)
    t.equal(message(t, JSON.stringify({ type: 'a', id })).id, id)
  })

  t.test('an empty type is a string type (the router answers UNKNOWN_TYPE)', async (t) => {
    t.equal(message(t, '{"type":""}').type, '')
  })

  t.test('a "constructor" key without "prototype" is ordinary data', async (t) => {
    const data = message(t, '{"type":"a","data":{"constructor":{"name":"x"}}}').data as Record<string, unknown>
    t.ok(Object.hasOwn(data, 'constructor'))
    t.equal(JSON.stringify(data), '{"constructor":{"name":"x"}}')
  })
})

t.test('BAD_JSON', async (t) => {
  t.test('text that is not JSON', async (t) => {
    for (const text of ['', ' ', '{', '{"type":"a",}', "{'type':'a'}", '{"type":"a"}x', 'undefined', 'NaN', '{"type":"a","id":NaN}', '\u0000']) {
      const error = refusal(t, text)
      t.equal(error.code, 'BAD_JSON', JSON.stringify(text))
      t.equal(error.id, undefined, 'no id can be read from it')
    }
  })

  t.test('__proto__ keys, at the top and nested, are refused and pollute nothing', async (t) => {
    for (const text of [
      '{"__proto__":{"polluted":1},"type":"a"}',
      '{"type":"a","data":{"__proto__":{"polluted":1}}}',
      '{"type":"a","data":[{"x":{"__proto__":{"polluted":1}}}]}',
      '{"type":"a","data":{"\\u005f_proto__":{"polluted":1}}}'
    ]) {
      const error = refusal(t, text)
      t.equal(error.code, 'BAD_JSON', text)
      t.equal(error.id, undefined)
    }
    const withId = refusal(t, '{"type":"a","id":"c1","__proto__":{"polluted":1}}')
    t.same([withId.code, withId.id], ['BAD_JSON', 'c1'], 'the refusal keeps a valid id, so the request is answered')
    t.equal(refusal(t, '\uFEFF{"id":7,"__proto__":{}}').id, 7, 'after a BOM too')
    t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
  })

  t.test('constructor.prototype keys are refused', async (t) => {
    for (const text of [
      '{"type":"a","constructor":{"prototype":{"polluted":1}}}',
      '{"type":"a","data":{"constructor":{"prototype":{}}}}',
      '{"type":"a","data":[[{"constructor":{"prototype":null}}]]}'
    ]) {
      t.equal(refusal(t, text).code, 'BAD_JSON', text)
    }
  })
})

t.test('BAD_FRAME', async (t) => {
  t.test('JSON that is not an object', async (t) => {
    for (const text of ['[]', '[{"type":"a","id":"c1"}]', 'null', '1', '-0', '1e400', '"say"', 'true', 'false']) {
      const error = refusal(t, text)
      t.equal(error.code, 'BAD_FRAME', text)
      t.equal(error.id, undefined)
    }
  })

  t.test('a missing or non-string type keeps a valid id', async (t) => {
    const cases: Array<[string, unknown]> = [
      ['{}', undefined],
      ['{"id":"c1"}', 'c1'],
      ['{"type":1,"id":"c1"}', 'c1'],
      ['{"type":null,"id":3}', 3],
      ['{"type":["say"],"id":"x"}', 'x'],
      ['{"type":{"name":"say"},"id":0}', 0],
      ['{"type":true}', undefined]
    ]
    for (const [text, id] of cases) {
      const error = refusal(t, text)
      t.equal(error.code, 'BAD_FRAME', text)
      t.equal(error.id, id, `${text} keeps its id`)
    }
  })

  t.test('bad ids: objects, arrays, booleans, null, Infinity, strings over 256 characters', async (t) => {
    for (const text of [
      '{"type":"a","id":{}}',
      '{"type":"a","id":{"x":1}}',
      '{"type":"a","id":[1]}',
      '{"type":"a","id":true}',
      '{"type":"a","id":false}',
      '{"type":"a","id":null}',
      '{"type":"a","id":1e400}',
      '{"type":"a","id":-1e400}',
      JSON.stringify({ type: 'a', id: 'i'.repeat(257) }),
      JSON.stringify({ type: 7, id: 'i'.repeat(257) })
    ]) {
      const error = refusal(t, text)
      t.equal(error.code, 'BAD_FRAME', text.slice(0, 60))
      t.equal(error.id, undefined, 'a bad id is not echoed')
    }
  })

  t.test('ProtocolError carries a human message', async (t) => {
    const error = refusal(t, '[]')
    t.type(error.message, 'string')
    t.ok(error.message.length > 0)
  })
})

t.test('a nesting bomb within 64 KiB never throws', async (t) => {
  const half = 32 * 1024 - 16
  const arrays = '['.repeat(half) + ']'.repeat(half)
  t.ok(arrays.length <= 64 * 1024)
  t.equal((parseMessage(arrays) as ProtocolError).code, 'BAD_FRAME', 'deep arrays are not an object')

  const level = '{"a":'
  const depth = Math.floor((64 * 1024 - 64) / (level.length + 1))
  const objects = level.repeat(depth) + '1' + '}'.repeat(depth)
  t.ok(objects.length <= 64 * 1024)
  t.equal((parseMessage(objects) as ProtocolError).code, 'BAD_FRAME', 'deep objects with no type')

  const inData = `{"type":"t","id":"c1","data":${'['.repeat(half - 40)}${']'.repeat(half - 40)}}`
  t.ok(inData.length <= 64 * 1024)
  t.doesNotThrow(() => parseMessage(inData), 'deep data parses')
  t.equal((parseMessage(inData) as InboundMessage).type, 't')

  // "constructor" makes secure-json-parse walk the whole tree.
  const ctor = '{"constructor":'
  const ctorDepth = Math.floor((64 * 1024 - 64) / (ctor.length + 1))
  const scanned = `{"type":"t","data":${ctor.repeat(ctorDepth)}1${'}'.repeat(ctorDepth)}}`
  t.ok(scanned.length <= 64 * 1024)
  t.doesNotThrow(() => parseMessage(scanned), 'the forbidden-key scan copes with depth')
  t.equal((parseMessage(scanned) as InboundMessage).type, 't')

  const proto = `{"type":"t","data":${'{"a":'.repeat(depth - 10)}{"__proto__":{}}${'}'.repeat(depth - 10)}}`
  t.ok(proto.length <= 64 * 1024)
  t.equal((parseMessage(proto) as ProtocolError).code, 'BAD_JSON', 'a __proto__ key deep down is still found')

  const unclosed = '['.repeat(64 * 1024)
  t.equal((parseMessage(unclosed) as ProtocolError).code, 'BAD_JSON')
})

t.test('properties', async (t) => {
  const anyString = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }))
  const jsonText = fc.oneof(fc.jsonValue(), fc.object()).map((value) => JSON.stringify(value) ?? 'null')
  const idValue = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.double(),
    fc.integer(),
    fc.constantFrom(Infinity, -Infinity, 'i'.repeat(256), 'i'.repeat(257)),
    fc.jsonValue()
  )
  /** JSON text with non-finite numbers written as 1e400 / -1e400, which JSON.parse reads as Infinity. */
  const jsonOf = (value: unknown): string => {
    if (typeof value === 'number' && !Number.isFinite(value) && !Number.isNaN(value)) return value > 0 ? '1e400' : '-1e400'
    return JSON.stringify(value) ?? 'null'
  }
  /** Envelopes close to valid: each key present or not, with good or bad values, "__proto__" and "constructor" included. */
  const envelope = fc.array(fc.oneof(
    fc.tuple(fc.constant('type'), fc.oneof(fc.string(), fc.jsonValue())),
    fc.tuple(fc.constant('id'), idValue),
    fc.tuple(fc.constant('data'), fc.jsonValue()),
    fc.tuple(fc.constant('__proto__'), fc.jsonValue()),
    fc.tuple(fc.constant('constructor'), fc.oneof(fc.jsonValue(), fc.record({ prototype: fc.jsonValue() }))),
    fc.tuple(fc.string(), fc.jsonValue())
  ), { maxLength: 6 }).map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${jsonOf(value)}`).join(',')}}`)

  t.test('arbitrary strings never make parseMessage throw and match the model', async (t) => {
    holds(t, fc.property(anyString, (text) => sameAsModel(text)))
  })

  t.test('arbitrary JSON values never make parseMessage throw and match the model', async (t) => {
    holds(t, fc.property(jsonText, (text) => sameAsModel(text)))
  })

  t.test('arbitrary envelopes match the model (ids keep their type, bad ids are dropped)', async (t) => {
    holds(t, fc.property(envelope, (text) => sameAsModel(text)))
  })

  t.test('truncated and spliced JSON never throws', async (t) => {
    holds(t, fc.property(jsonText, fc.nat(), anyString, (text, cut, junk) => {
      const at = cut % (text.length + 1)
      return sameAsModel(text.slice(0, at)) && sameAsModel(text.slice(0, at) + junk + text.slice(at))
    }))
  })

  t.test('what the server would echo: a parsed id framed in a reply parses back to itself', async (t) => {
    holds(t, fc.property(envelope, (text) => {
      const parsed = parseMessage(text)
      if (parsed instanceof ProtocolError || parsed.id === undefined) return true
      const id = JSON.parse(replyMessage(parsed.id, undefined)).id
      return Object.is(id, Object.is(parsed.id, -0) ? 0 : parsed.id) && typeof id === typeof parsed.id
    }))
  })
})
