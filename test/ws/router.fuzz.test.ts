import t, { type Test } from 'tap'
import fc from 'fast-check'
import WebSocket from 'ws'
import { Type, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { FastifyInstance } from 'fastify'
import { defineContract, publicError } from '../../lib/index.js'
import type { ConnectedWS } from '../../lib/testing/index.js'
import {
  Opcode,
  buildWs,
  clientFrame,
  maskedFrame,
  openWS,
  readFrames,
  sleep,
  within,
  wsUpgrade
} from '../helpers/ws.js'
import { recordEscapes } from '../helpers/index.js'

// The WebSocket message router against arbitrary input, checked against a reference model written
// from API.md: every frame gets exactly the answer the model predicts (a reply, or an error frame
// with a documented code, carrying the message's id when it had a valid one), answers keep arrival
// order, the 10th bad message in a row closes with 4400, and nothing crashes. Then nesting bombs,
// inbound and outbound. (parseMessage alone is fuzzed in ws-protocol.test.ts.)

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

const messages = {
  add: Type.Object({ a: Type.Integer(), b: Type.Integer() }),
  say: Type.Object({ text: Type.String({ minLength: 1, maxLength: 20 }) }),
  later: Type.Union([Type.Null(), Type.Integer({ minimum: 0, maximum: 3 })]),
  fail: Type.Object({ public: Type.Boolean() }),
  anything: Type.Unknown(),
  tree: Type.Recursive((Self) => Type.Array(Self))
}
const replies = {
  add: Type.Integer(),
  say: Type.Object({ length: Type.Integer() }),
  later: Type.Literal('later')
}
const api = defineContract({ messages, replies })
type Name = keyof typeof messages

/** What each handler does with valid data: return a value, or throw. */
const behaviour: Record<Name, (data: any) => { value: unknown } | { throws: 'public' | 'secret' }> = {
  add: (data) => ({ value: data.a + data.b }), // can overflow past an integer: the reply fails its schema
  say: (data) => ({ value: { length: data.text.length } }),
  later: () => ({ value: 'later' }),
  fail: (data) => ({ throws: data.public === true ? 'public' : 'secret' }),
  anything: () => ({ value: undefined }),
  tree: (data) => ({ value: data })
}

function addRoute (app: FastifyInstance, path = '/api'): void {
  const outcome = (name: Name, data: unknown): unknown => {
    const result = behaviour[name](data)
    if ('value' in result) return result.value
    throw result.throws === 'public' ? publicError('NOPE', 'public nope') : new Error('a secret detail')
  }
  app.ws(path, {
    contract: api,
    rateLimit: false,
    handlers: {
      add: (data) => outcome('add', data) as number,
      say: (data) => outcome('say', data) as { length: number },
      // Async, and slower than what follows it: answers must still keep arrival order.
      later: async (data) => {
        await sleep(data ?? 0)
        return outcome('later', data) as 'later'
      },
      fail: async (data) => { outcome('fail', data) },
      anything: (data) => { outcome('anything', data) },
      tree: (data) => outcome('tree', data) as void // no reply schema: the value is sent as it is
    }
  })
}

// ---- the reference model ----

type Expected =
  | { type: 'reply', id: unknown, data?: unknown }
  | { type: 'error', id?: unknown, code: string, message?: string }

const BAD_CODES = new Set(['BAD_JSON', 'BAD_FRAME', 'UNKNOWN_TYPE', 'VALIDATION'])

function validId (id: unknown): boolean {
  return (typeof id === 'string' && id.length <= 256) || (typeof id === 'number' && Number.isFinite(id))
}

/** An id as the client reads it back: -0 is written as 0. */
function echoed (id: unknown): unknown {
  return Object.is(id, -0) ? 0 : id
}

/** A __proto__ key, or a constructor key holding an object with a prototype key, anywhere. */
function forbidden (value: unknown): boolean {
  const stack = [value]
  while (stack.length > 0) {
    const node = stack.pop()
    if (node === null || typeof node !== 'object') continue
    if (Object.hasOwn(node, '__proto__')) return true
    const ctor = (node as Record<string, unknown>).constructor
    if (Object.hasOwn(node, 'constructor') && ctor !== null && typeof ctor === 'object' && Object.hasOwn(ctor, 'prototype')) return true
    stack.push(...Object.values(node))
  }
  return false
}

/** The answer API.md prescribes for one text frame (undefined: none), and whether it is a bad message. */
function model (text: string): { answer: Expected | undefined, bad: boolean } {
  let value: unknown
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text)
  } catch {
    return { answer: { type: 'error', code: 'BAD_JSON' }, bad: true }
  }
  const top = value !== null && typeof value === 'object' ? value as Record<string, unknown> : undefined
  if (forbidden(value)) {
    const id = top !== undefined && validId(top.id) ? top.id : undefined
    return { answer: id === undefined ? { type: 'error', code: 'BAD_JSON' } : { type: 'error', id: echoed(id), code: 'BAD_JSON' }, bad: true }
  }
  if (top === undefined || Array.isArray(top)) return { answer: { type: 'error', code: 'BAD_FRAME' }, bad: true }
  const { type, id, data } = top
  if (id !== undefined && !validId(id)) return { answer: { type: 'error', code: 'BAD_FRAME' }, bad: true }
  const withId = <T extends Expected>(answer: T): T => id === undefined ? answer : { ...answer, id: echoed(id) }
  if (typeof type !== 'string') return { answer: withId({ type: 'error', code: 'BAD_FRAME' }), bad: true }
  if (!Object.hasOwn(messages, type)) return { answer: withId({ type: 'error', code: 'UNKNOWN_TYPE' }), bad: true }
  const name = type as Name
  if (!Value.Check(messages[name] as TSchema, data)) return { answer: withId({ type: 'error', code: 'VALIDATION' }), bad: true }
  const result = behaviour[name](data)
  if ('throws' in result) {
    const error: Expected = result.throws === 'public'
      ? { type: 'error', code: 'NOPE', message: 'public nope' }
      : { type: 'error', code: 'HANDLER_ERROR', message: 'The handler failed.' }
    return { answer: withId(error), bad: false }
  }
  // Without an id no reply is sent, so none is checked against its schema.
  if (id === undefined) return { answer: undefined, bad: false }
  const schema = (replies as Record<string, TSchema>)[name]
  if (schema !== undefined && !Value.Check(schema, result.value)) {
    return { answer: withId({ type: 'error', code: 'HANDLER_ERROR', message: 'The handler failed.' }), bad: false }
  }
  return { answer: result.value === undefined ? { type: 'reply', id: echoed(id) } : { type: 'reply', id: echoed(id), data: result.value }, bad: false }
}

/** The answers to a burst of frames, in order, and whether the burst closes the connection with 4400. */
function modelBurst (texts: string[]): { answers: Expected[], closes: boolean } {
  const answers: Expected[] = []
  let badInARow = 0
  for (const text of texts) {
    const { answer, bad } = model(text)
    if (answer !== undefined) answers.push(answer)
    badInARow = bad ? badInARow + 1 : 0
    if (badInARow === 10) return { answers, closes: true }
  }
  return { answers, closes: false }
}

/** Throws unless `frame` is the answer the model expects. */
function assertAnswer (frame: any, expected: Expected, text: string): void {
  const fail = (why: string): never => {
    throw new Error(`${why}: got ${JSON.stringify(frame).slice(0, 300)}, expected ${JSON.stringify(expected)} for ${JSON.stringify(text).slice(0, 300)}`)
  }
  if (frame.type !== expected.type) fail('wrong frame type')
  if ('id' in expected ? !Object.is(frame.id, expected.id) : 'id' in frame) fail('wrong id')
  if (expected.type === 'reply') {
    if ('data' in expected ? JSON.stringify(frame.data) !== JSON.stringify(expected.data) : 'data' in frame) fail('wrong reply data')
    return
  }
  const error = frame.error
  if (error?.code !== expected.code) fail('wrong error code')
  if (typeof error.message !== 'string' || error.message === '') fail('an error needs a message')
  if (expected.message !== undefined && error.message !== expected.message) fail('wrong error message')
  if (expected.code === 'VALIDATION') {
    if (!Array.isArray(error.details) || error.details.length !== 1 || typeof error.details[0].path !== 'string') fail('VALIDATION needs one detail with a path')
  } else if ('details' in error) {
    fail('details only on VALIDATION')
  }
  if (error.code === 'HANDLER_ERROR' && /secret/.test(error.message)) fail('a private error message leaked')
}

// ---- generators ----

/** Non-finite numbers written as 1e400 / -1e400 (JSON.parse reads them as Infinity). */
function jsonOf (value: unknown): string {
  if (typeof value === 'number' && !Number.isFinite(value) && !Number.isNaN(value)) return value > 0 ? '1e400' : '-1e400'
  return JSON.stringify(value) ?? 'null'
}

const names = Object.keys(messages) as Name[]
const idArb = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, '', 'i'.repeat(256), 'i'.repeat(257), Infinity, -Infinity, null, true, [1], { id: 1 })
)
/** Data shaped for each message, valid or nearly so, plus arbitrary JSON. */
const dataArb = fc.oneof(
  fc.record({ a: fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_VALUE, 1.5, '1')), b: fc.oneof(fc.integer(), fc.constantFrom(Number.MAX_VALUE, -0)) }),
  fc.record({ text: fc.oneof(fc.string({ maxLength: 25 }), fc.string({ unit: 'grapheme', maxLength: 25 }), fc.integer()) }),
  fc.oneof(fc.constant(null), fc.integer({ min: -1, max: 4 })),
  fc.record({ public: fc.oneof(fc.boolean(), fc.constant('yes')) }),
  fc.letrec<{ tree: unknown }>((tie) => ({
    tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant([]), fc.array(tie('tree'), { maxLength: 3 }), fc.constant([1]))
  })).tree,
  fc.jsonValue({ maxDepth: 4 })
)
/** Envelopes near the valid shape: each key there or not, with good or bad values, duplicates and forbidden keys included. */
const envelopeArb = fc.array(fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constant('type'), fc.oneof(fc.constantFrom<unknown>(...names), fc.constantFrom<unknown>('nope', '', 'Add', 'realtime.x', 1, null, ['add']))) },
  { weight: 3, arbitrary: fc.tuple(fc.constant('id'), idArb) },
  { weight: 4, arbitrary: fc.tuple(fc.constant('data'), dataArb) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('__proto__'), fc.jsonValue({ maxDepth: 2 })) },
  { weight: 1, arbitrary: fc.tuple(fc.constant('constructor'), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ prototype: fc.jsonValue({ maxDepth: 2 }) }))) },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })) }
), { maxLength: 6 }).map((entries) => `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${jsonOf(value)}`).join(',')}}`)
/** Well-formed messages of the contract with valid data and an id (so that the good path is exercised too). */
const goodArb = fc.oneof(
  fc.record({ type: fc.constant('add'), id: fc.integer(), data: fc.record({ a: fc.integer(), b: fc.integer() }) }),
  fc.record({ type: fc.constant('say'), id: fc.string({ maxLength: 8 }), data: fc.record({ text: fc.string({ minLength: 1, maxLength: 20 }) }) }),
  fc.record({ type: fc.constant('later'), id: fc.nat(), data: fc.integer({ min: 0, max: 3 }) })
).map((message) => JSON.stringify(message))
const frameText = fc.oneof(
  { weight: 5, arbitrary: envelopeArb },
  { weight: 2, arbitrary: goodArb },
  { weight: 1, arbitrary: fc.string() },
  { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
  { weight: 1, arbitrary: fc.json({ maxDepth: 3 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', '{', '[]', 'null', '\uFEFF{"type":"add","id":1,"data":{"a":1,"b":2}}', '{"type":"add","id":1,"data":{"a":1,"b":2}}x') }
)

/** Bursts of frames: any mix, or one long enough to hold 10 bad frames in a row, between good ones. */
const burstArb = fc.oneof(
  { weight: 3, arbitrary: fc.array(frameText, { minLength: 1, maxLength: 14 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.array(frameText, { maxLength: 3 }),
      fc.array(fc.oneof(envelopeArb, fc.string(), fc.constantFrom('{', '[]', '{"type":"nope","id":1}')), { minLength: 9, maxLength: 12 }),
      fc.array(frameText, { maxLength: 3 })
    ).map(([before, bad, after]) => [...before, ...bad, ...after])
  }
)

/** Every frame a connectWS client receives, parsed, in order. */
function record (ws: ConnectedWS): any[] {
  const frames: any[] = []
  ws.socket.on('message', (data: Buffer) => { frames.push(JSON.parse(data.toString())) })
  return frames
}

// ---- properties ----

t.test('property: a burst of arbitrary frames gets exactly the answers the model predicts, in order, and 4400 exactly when 10 bad ones come in a row', async (t) => {
  const app = await buildWs(t)
  addRoute(app)
  await app.ready()
  let closedRuns = 0
  let answered = 0
  await fc.assert(fc.asyncProperty(burstArb, async (texts) => {
    const ws = await openWS(app, '/api')
    try {
      const frames = record(ws)
      for (const text of texts) ws.sendRaw(text)
      const { answers, closes } = modelBurst(texts)
      if (closes) {
        const { code } = await within(ws.closed, 3000, 'the 4400 close')
        if (code !== 4400) throw new Error(`closed with ${code}, expected 4400`)
        closedRuns++
      } else {
        // A good message last: its reply follows every other answer (answers keep arrival order).
        ws.sendRaw('{"type":"say","id":"sentinel","data":{"text":"end"}}')
        await within((async () => {
          while (!frames.some((frame) => frame.id === 'sentinel') && ws.socket.readyState === WebSocket.OPEN) await sleep(1)
        })(), 3000, 'the sentinel reply')
        if (ws.socket.readyState !== WebSocket.OPEN) throw new Error(`closed with ${(await ws.closed).code}, though the model says open`)
        const last = frames.pop()
        if (last.type !== 'reply' || last.id !== 'sentinel') throw new Error(`the sentinel got ${JSON.stringify(last)}`)
      }
      if (frames.length !== answers.length) {
        throw new Error(`${frames.length} answers, expected ${answers.length}: ${JSON.stringify(frames).slice(0, 500)}`)
      }
      for (const [i, expected] of answers.entries()) assertAnswer(frames[i], expected, texts.join('\u241E'))
      answered += answers.length
    } finally {
      ws.socket.terminate()
    }
  }), { numRuns: 150 })
  t.ok(closedRuns > 0, `${closedRuns} runs closed with 4400`)
  t.ok(answered > 500, `${answered} answers checked`)
})

t.test('property: every frame with a readable id gets exactly one answer with that id, even one at a time with a good message between', async (t) => {
  const app = await buildWs(t)
  addRoute(app)
  const ws = await openWS(app, '/api')
  const frames = record(ws)
  let n = 0
  await fc.assert(fc.asyncProperty(frameText, async (text) => {
    const start = frames.length
    ws.sendRaw(text)
    const sentinel = `s${++n}`
    ws.sendRaw(`{"type":"say","id":"${sentinel}","data":{"text":"x"}}`)
    await within((async () => { while (!frames.some((frame, i) => i >= start && frame.id === sentinel)) await sleep(1) })(), 3000, 'the sentinel reply')
    const got = frames.slice(start, -1)
    const { answer } = model(text)
    if (got.length !== (answer === undefined ? 0 : 1)) throw new Error(`${got.length} answers to ${JSON.stringify(text)}`)
    if (answer !== undefined) assertAnswer(got[0], answer, text)
    if (answer?.type === 'error' && !BAD_CODES.has(answer.code) && answer.code !== 'HANDLER_ERROR' && answer.code !== 'NOPE') {
      throw new Error(`undocumented code ${answer.code}`)
    }
  }), { numRuns: 300 })
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'the connection is still open after every kind of frame')
})

/** Cuts `bytes` into 1..n pieces at the given points (empty pieces allowed). */
function pieces (bytes: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((point) => point % (bytes.length + 1)))].sort((a, b) => a - b)
  const bounds = [0, ...at, bytes.length]
  const out: Buffer[] = []
  for (let i = 1; i < bounds.length; i++) out.push(bytes.subarray(bounds[i - 1], bounds[i]))
  return out
}

t.test('property: a message fragmented anywhere (inside UTF-8 sequences too), with pings between fragments and TCP writes cut anywhere, gets the same answer as whole', async (t) => {
  const app = await buildWs(t)
  addRoute(app)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = await wsUpgrade(url, '/api')
  socket.setNoDelay(true)
  t.teardown(() => socket.destroy())
  const reader = readFrames(socket)
  let n = 0
  await fc.assert(fc.asyncProperty(
    fc.oneof(envelopeArb, goodArb, fc.string({ unit: 'grapheme', maxLength: 30 }).map((text) => JSON.stringify({ type: 'say', id: 'g', data: { text } }))),
    fc.array(fc.nat(), { maxLength: 6 }),
    fc.array(fc.boolean(), { maxLength: 7 }),
    fc.array(fc.nat(), { maxLength: 5 }),
    async (text, cuts, pingAfter, writeCuts) => {
      const payload = Buffer.from(text)
      const parts = pieces(payload, cuts)
      const frames: Buffer[] = []
      const pings: string[] = []
      for (const [i, part] of parts.entries()) {
        frames.push(maskedFrame(part, { opcode: i === 0 ? Opcode.text : 0x0, fin: i === parts.length - 1 }))
        if (i < parts.length - 1 && pingAfter[i] === true) {
          // A control frame may come between the fragments of a message (RFC 6455 section 5.4).
          pings.push(`p${n}.${i}`)
          frames.push(clientFrame(Opcode.ping, pings.at(-1)))
        }
      }
      const sentinel = `s${++n}`
      frames.push(clientFrame(Opcode.text, `{"type":"say","id":"${sentinel}","data":{"text":"x"}}`))
      const start = reader.frames.length
      for (const chunk of pieces(Buffer.concat(frames), writeCuts)) socket.write(chunk)
      await within((async () => {
        while (!reader.frames.slice(start).some((frame) => frame.opcode === Opcode.text && JSON.parse(frame.payload.toString()).id === sentinel)) await sleep(1)
      })(), 3000, 'the sentinel reply')
      const got = reader.frames.slice(start)
      const pongs = got.filter((frame) => frame.opcode === Opcode.pong).map((frame) => frame.payload.toString())
      if (pongs.join() !== pings.join()) throw new Error(`pongs ${pongs.join()}, expected ${pings.join()}`)
      const answers = got.filter((frame) => frame.opcode === Opcode.text).map((frame) => JSON.parse(frame.payload.toString())).slice(0, -1)
      const { answer } = model(text)
      if (answers.length !== (answer === undefined ? 0 : 1)) throw new Error(`${answers.length} answers to ${JSON.stringify(text)}`)
      if (answer !== undefined) assertAnswer(answers[0], answer, text)
      if (got.some((frame) => frame.opcode === Opcode.close)) throw new Error('closed')
    }
  ), { numRuns: 200 })
  t.equal(socket.destroyed, false, 'the connection is still open')
})

// ---- nesting bombs ----

/** JSON text nested `depth` levels deep around `leaf`: arrays, or objects under key `a`. */
function deepText (depth: number, kind: 'array' | 'object', leaf = kind === 'array' ? '' : '{}'): string {
  return kind === 'array' ? '['.repeat(depth) + leaf + ']'.repeat(depth) : '{"a":'.repeat(depth) + leaf + '}'.repeat(depth)
}

/** A value nested `depth` levels deep, built without recursion. */
function deepValue (depth: number, kind: 'array' | 'object' = 'array'): unknown {
  let value: unknown = kind === 'array' ? [] : {}
  for (let i = 0; i < depth; i++) value = kind === 'array' ? [value] : { a: value }
  return value
}

t.test('nesting bombs within maxPayload get an error frame, not a RangeError, and the connection keeps working', async (t) => {
  const app = await buildWs(t)
  addRoute(app)
  const ws = await openWS(app, '/api')
  const arrays = deepText(30000, 'array')
  const objects = deepText(10000, 'object')
  const cases: Array<[string, string, string]> = [
    ['arrays against a flat schema', `{"type":"say","id":1,"data":${arrays}}`, 'VALIDATION'],
    ['objects against a flat schema', `{"type":"say","id":2,"data":${objects}}`, 'VALIDATION'],
    ['arrays inside a flat schema\'s field', `{"type":"say","id":3,"data":{"text":${arrays}}}`, 'VALIDATION'],
    ['arrays with an invalid leaf against a recursive schema', `{"type":"tree","id":4,"data":${deepText(30000, 'array', '1')}}`, 'VALIDATION'],
    ['objects against a recursive array schema', `{"type":"tree","id":5,"data":${objects}}`, 'VALIDATION'],
    ['arrays as the id', `{"type":"say","id":${arrays},"data":{"text":"x"}}`, 'BAD_FRAME'],
    ['objects as the type', `{"type":${objects},"id":7,"data":{"text":"x"}}`, 'BAD_FRAME'],
    ['arrays as the whole message', arrays, 'BAD_FRAME'],
    ['an unclosed bomb', '['.repeat(60000), 'BAD_JSON']
  ]
  for (const [what, text, code] of cases) {
    t.ok(Buffer.byteLength(text) <= 64 * 1024, `${what}: ${Buffer.byteLength(text)} bytes, within maxPayload`)
    ws.sendRaw(text)
    const frame = await within(ws.nextFrame(), 5000, `the answer to ${what}`)
    t.equal(frame.type, 'error', what)
    t.equal((frame.error as any).code, code, `${what}: ${code}`)
    t.same(await ws.request('say', { text: 'after' }), { length: 5 }, 'a good message after it is answered (and resets the bad count)')
  }
  t.same(await ws.request('add', { a: 1, b: 2 }), 3, 'still answering')
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'still open')
})

t.test('a nesting bomb a handler returns, sends or publishes is a coded error, never a crash', async (t) => {
  const bombs = defineContract({
    events: { deep: Type.Unknown(), tree: Type.Recursive((Self) => Type.Array(Self)) },
    messages: {
      untyped: Type.Null(),
      unknown: Type.Null(),
      recursive: Type.Null(),
      send: Type.Union([Type.Literal('deep'), Type.Literal('tree')]),
      publish: Type.Union([Type.Literal('deep'), Type.Literal('tree')]),
      ok: Type.Null()
    },
    replies: {
      unknown: Type.Unknown(),
      recursive: Type.Recursive((Self) => Type.Array(Self)),
      publish: Type.String(),
      ok: Type.Literal('ok')
    }
  })
  const app = await buildWs(t)
  const topic = app.realtime.topic('bombs', { contract: bombs })
  const bomb = deepValue(100000)
  app.ws('/bombs', {
    contract: bombs,
    onOpen: (conn) => conn.subscribe(topic),
    handlers: {
      untyped: () => bomb as any,
      unknown: () => bomb,
      recursive: () => bomb as any,
      send: (event, conn) => { conn.send(event, bomb as any) },
      publish: async (event) => {
        try {
          await topic.publish(event, bomb as any)
          return 'published'
        } catch (err) {
          return (err as { code: string }).code
        }
      },
      ok: () => 'ok' as const
    }
  })
  const ws = await openWS(app, '/bombs')
  for (const type of ['untyped', 'unknown', 'recursive']) {
    await t.rejects(ws.request(type, null), { code: 'HANDLER_ERROR', message: 'The handler failed.' }, `a 1e5-deep reply (${type} reply schema) is a HANDLER_ERROR`)
    t.equal(await ws.request('ok', null), 'ok', 'the next request is answered')
  }
  for (const event of ['deep', 'tree']) {
    await t.rejects(ws.request('send', event), { code: 'HANDLER_ERROR' }, `conn.send of a 1e5-deep ${event} event throws a coded error inside the handler`)
    t.equal(await ws.request('publish', event), event === 'deep' ? 'FRT_ERR_SERIALIZE' : 'FRT_ERR_VALIDATION', `topic.publish of a 1e5-deep ${event} event rejects with a coded error`)
  }
  const id = await topic.publish('deep', { fine: true })
  t.same(await ws.nextFrame('event'), { type: 'event', topic: 'bombs', id, event: 'deep', data: { fine: true } }, 'the subscription still delivers, and nothing of the bombs went out')
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'still open')
})

t.test('no uncaughtException or unhandledRejection escaped', async (t: Test) => {
  await sleep(20)
  t.same(escaped.map(String), [], 'nothing escaped')
})
