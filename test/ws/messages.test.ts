import t, { type Test } from 'tap'
import fc from 'fast-check'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, publicError, type Connection } from '../../lib/index.js'
import type { ConnectedWS, WsFrame } from '../../lib/testing/index.js'
import { captureLogs, recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection (F7).
const escaped = recordEscapes(t)

const chat = defineContract({
  events: { message: Type.Object({ text: Type.String() }) },
  messages: {
    say: Type.Object({ text: Type.String({ minLength: 1 }) }),
    note: Type.Object({ text: Type.String() })
  },
  replies: { say: Type.Object({ id: Type.String() }) }
})

const echo = defineContract({
  messages: { echo: Type.Unknown() },
  replies: { echo: Type.Unknown() }
})

const HANDLER_FAILED = 'fastify-realtime: a WebSocket message handler failed'
const BAD_CODES = ['BAD_JSON', 'BAD_FRAME', 'UNKNOWN_TYPE', 'VALIDATION']

/** Every frame the client receives, parsed, in order (request() replies included). */
function record (ws: ConnectedWS): WsFrame[] {
  const frames: WsFrame[] = []
  ws.socket.on('message', (data: Buffer) => { frames.push(JSON.parse(data.toString())) })
  return frames
}

/** The next `count` frames not taken by request(). */
async function frames (ws: ConnectedWS, count: number): Promise<WsFrame[]> {
  const got: WsFrame[] = []
  for (let i = 0; i < count; i++) got.push(await ws.nextFrame())
  return got
}

/** An echo route: replies with the data it got. */
async function echoApp (t: Test, routeOptions: Record<string, unknown> = {}, pluginOptions: Record<string, unknown> = {}) {
  const app = await buildWs(t, pluginOptions)
  let calls = 0
  app.ws('/echo', {
    contract: echo,
    handlers: { echo: (data) => { calls++; return data } },
    ...routeOptions
  })
  await app.ready()
  return { app, calls: () => calls }
}

// ---- routing and replies ----

t.test('each message reaches its own handler with the validated data and the connection', async (t) => {
  const app = await buildWs(t)
  const calls: Array<[string, unknown, unknown]> = []
  let opened: unknown
  app.ws('/chat', {
    contract: chat,
    onOpen (conn) { opened = conn },
    handlers: {
      say (data, conn) {
        calls.push(['say', data, conn])
        return { id: `r-${data.text}` }
      },
      note (data, conn) { calls.push(['note', data, conn]) }
    }
  })
  const ws = await openWS(app, '/chat')
  t.same(await ws.request('say', { text: 'hi' }), { id: 'r-hi' })
  t.equal(await ws.request('note', { text: 'n' }), undefined)
  t.same(calls.map(([name, data]) => [name, data]), [['say', { text: 'hi' }], ['note', { text: 'n' }]])
  t.ok(opened !== undefined && calls.every(([, , conn]) => conn === opened), 'the handler gets the connection onOpen got')
})

t.test('a reply carries the message id with its JSON type', async (t) => {
  const app = await buildWs(t)
  app.ws('/chat', { contract: chat, handlers: { say: (data) => ({ id: data.text }), note: () => {} } })
  const ws = await openWS(app, '/chat')
  const ids: Array<string | number> = ['c7', '7', 7, 0, -1.5, '', 'x'.repeat(256)]
  for (const id of ids) ws.sendRaw(JSON.stringify({ type: 'say', id, data: { text: 'ok' } }))
  const got = await frames(ws, ids.length)
  for (const [i, frame] of got.entries()) {
    t.same(frame, { type: 'reply', id: ids[i], data: { id: 'ok' } }, `id ${JSON.stringify(ids[i]).slice(0, 20)}`)
    t.equal(typeof frame.id, typeof ids[i])
  }
  ws.sendRaw('{"type":"say","id":3,"data":{"text":""}}')
  const error = await ws.nextFrame('error')
  t.equal(error.id, 3, 'an error frame keeps a numeric id numeric')
})

t.test('a message without id runs its handler and gets no reply', async (t) => {
  const app = await buildWs(t)
  const texts: string[] = []
  app.ws('/chat', {
    contract: chat,
    handlers: {
      say (data) {
        texts.push(data.text)
        return { id: data.text }
      },
      note: () => {}
    }
  })
  const ws = await openWS(app, '/chat')
  const seen = record(ws)
  ws.send('say', { text: 'quiet' })
  t.same(await ws.request('say', { text: 'loud' }), { id: 'loud' })
  t.same(texts, ['quiet', 'loud'])
  t.same(seen, [{ type: 'reply', id: 'c1', data: { id: 'loud' } }], 'only the message with an id was answered')
})

t.test('a message with no reply schema gets a reply without data', async (t) => {
  const app = await buildWs(t)
  app.ws('/chat', { contract: chat, handlers: { say: () => ({ id: 'x' }), note: () => undefined } })
  const ws = await openWS(app, '/chat')
  ws.sendRaw('{"type":"note","id":"n1","data":{"text":"t"}}')
  const frame = await ws.nextFrame()
  t.same(frame, { type: 'reply', id: 'n1' })
  t.notOk('data' in frame, 'no data key at all')
})

t.test('a reply that does not match its schema becomes HANDLER_ERROR and is logged', async (t) => {
  const logs = captureLogs()
  const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
  app.ws('/chat', { contract: chat, handlers: { say: () => ({ id: 5 } as any), note: () => {} } })
  const ws = await openWS(app, '/chat')
  await t.rejects(ws.request('say', { text: 'x' }), { code: 'HANDLER_ERROR', message: 'The handler failed.' })
  const logged = logs.lines.filter((line) => line.msg === HANDLER_FAILED)
  t.equal(logged.length, 1, 'logged once')
  t.match(logged[0]?.err?.message, /does not match its schema/)
  t.same(await ws.request('note', { text: 'still open' }), undefined)
})

t.test('answers go out in arrival order even when an earlier handler is slower', async (t) => {
  const ordered = defineContract({
    messages: { work: Type.Object({ delay: Type.Integer({ minimum: 0 }), n: Type.Integer() }) },
    replies: { work: Type.Integer() }
  })
  const app = await buildWs(t)
  let running = 0
  let overlapped = false
  app.ws('/work', {
    contract: ordered,
    handlers: {
      async work (data) {
        if (++running > 1) overlapped = true
        await sleep(data.delay)
        running--
        return data.n
      }
    }
  })
  const ws = await openWS(app, '/work')
  for (let n = 0; n < 10; n++) {
    // Slowest first; message 4 is invalid and 7 has an unknown type: their errors keep their places too.
    const frame = n === 4
      ? { type: 'work', id: n, data: { delay: -1, n } }
      : n === 7 ? { type: 'nope', id: n } : { type: 'work', id: n, data: { delay: (10 - n) * 3, n } }
    ws.sendRaw(JSON.stringify(frame))
  }
  const got = await frames(ws, 10)
  t.same(got.map((frame) => frame.id), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  t.same(got.map((frame) => frame.type), ['reply', 'reply', 'reply', 'reply', 'error', 'reply', 'reply', 'error', 'reply', 'reply'])
  t.same(got.filter((frame) => frame.type === 'reply').map((frame) => frame.data), [0, 1, 2, 3, 5, 6, 8, 9])
  t.equal(overlapped, false, 'one message at a time per connection')
})

// ---- validation and bad messages ----

t.test('a message that fails its schema gets VALIDATION with a JSON pointer, and the handler never runs', async (t) => {
  const app = await buildWs(t)
  let calls = 0
  app.ws('/chat', { contract: chat, handlers: { say: () => { calls++; return { id: 'x' } }, note: () => {} } })
  const ws = await openWS(app, '/chat')
  for (const data of [{ text: 1 }, { text: '' }]) {
    const err = await ws.request('say', data).then(() => undefined, (err) => err)
    t.equal(err?.code, 'VALIDATION', JSON.stringify(data))
    t.equal(err?.details?.[0]?.path, '/text')
    t.type(err?.details?.[0]?.message, 'string')
  }
  const missing = await ws.request('say').then(() => undefined, (err) => err)
  t.equal(missing?.code, 'VALIDATION', 'a missing data the schema requires')
  ws.sendRaw('{"type":"say","id":"m","data":null}')
  t.match(await ws.nextFrame(), { type: 'error', id: 'm', error: { code: 'VALIDATION' } })
  t.equal(calls, 0)
})

t.test('an unknown type gets UNKNOWN_TYPE', async (t) => {
  const app = await buildWs(t)
  app.ws('/chat', { contract: chat, handlers: { say: () => ({ id: 'x' }), note: () => {} } })
  const ws = await openWS(app, '/chat')
  for (const type of ['shout', '__proto__', 'constructor', 'toString', '', 'say '.repeat(100)]) {
    await t.rejects(ws.request(type, { text: 'x' }), { code: 'UNKNOWN_TYPE' }, JSON.stringify(type).slice(0, 20))
  }
})

t.test('valid JSON that is not a message object gets BAD_FRAME', async (t) => {
  const app = await buildWs(t)
  app.ws('/chat', { contract: chat, handlers: { say: () => ({ id: 'x' }), note: () => {} } })
  const ws = await openWS(app, '/chat')
  const cases: Array<[string, unknown]> = [
    ['[]', undefined],
    ['"say"', undefined],
    ['42', undefined],
    ['null', undefined],
    ['{"id":1}', 1],
    ['{"type":1,"id":"a"}', 'a'],
    ['{"type":"say","id":{},"data":{"text":"x"}}', undefined],
    ['{"type":"say","id":true,"data":{"text":"x"}}', undefined],
    [`{"type":"say","id":"${'i'.repeat(257)}","data":{"text":"x"}}`, undefined],
    ['{"type":"say","id":1e999,"data":{"text":"x"}}', undefined]
  ]
  for (const [i, [text, id]] of cases.entries()) {
    if (i === 5) t.same(await ws.request('say', { text: 'x' }), { id: 'x' }, 'a good one, so ten bad in a row never happen')
    ws.sendRaw(text)
    const frame = await ws.nextFrame()
    t.match(frame, { type: 'error', error: { code: 'BAD_FRAME' } }, text.slice(0, 40))
    t.equal(frame.id, id)
  }
  t.same(await ws.request('say', { text: 'x' }), { id: 'x' }, 'a good message afterwards is handled')
})

t.test('unparseable JSON and forbidden keys get BAD_JSON, and nothing is polluted', async (t) => {
  const app = await buildWs(t)
  let calls = 0
  app.ws('/echo', { contract: echo, handlers: { echo: (data) => { calls++; return data } } })
  const ws = await openWS(app, '/echo')
  const texts = [
    '{',
    '',
    'undefined',
    '{"type":"echo",}',
    '{"__proto__":{"x":1}}',
    '{"constructor":{"prototype":{"x":1}}}',
    '{"type":"echo","id":1,"data":{"__proto__":{"x":1}}}',
    '{"type":"echo","id":2,"data":[{"constructor":{"prototype":{"x":1}}}]}',
    '{"type":"echo","id":3,"__proto__":{"type":"x"}}'
  ]
  for (const text of texts) {
    ws.sendRaw(text)
    t.match(await ws.nextFrame(), { type: 'error', error: { code: 'BAD_JSON' } }, text)
  }
  t.equal(calls, 0)
  t.equal(({} as any).x, undefined, 'Object.prototype untouched')
  t.equal(({} as any).type, undefined)
  t.same(await ws.request('echo', { constructor: 'fine', prototype: 1 }), { constructor: 'fine', prototype: 1 }, 'plain keys of those names are fine')
})

t.test('the 10th bad message in a row closes with 4400', async (t) => {
  const app = await buildWs(t)
  const closed = deferred<number>()
  app.ws('/chat', { contract: chat, handlers: { say: () => ({ id: 'x' }), note: () => {} }, onClose: (conn, code) => closed.resolve(code) })
  const ws = await openWS(app, '/chat')
  const bad = ['{', '[]', '{"type":"nope"}', '{"type":"say","data":{}}', '{"type":1}', 'x', '{"type":"nope"}', '{', '[]']
  for (const text of bad) ws.sendRaw(text)
  const errors = await frames(ws, 9)
  t.same(errors.map((frame) => (frame.error as any).code), ['BAD_JSON', 'BAD_FRAME', 'UNKNOWN_TYPE', 'VALIDATION', 'BAD_FRAME', 'BAD_JSON', 'UNKNOWN_TYPE', 'BAD_JSON', 'BAD_FRAME'])
  t.same(await ws.request('say', { text: 'still here' }), { id: 'x' }, 'nine are tolerated')
  ws.sendRaw('{')
  t.match(await ws.nextFrame(), { type: 'error', error: { code: 'BAD_JSON' } }, 'a good message reset the count: this is the first again')
  for (let i = 0; i < 8; i++) ws.sendRaw('{')
  await frames(ws, 8)
  t.same(await ws.request('say', { text: 'after 9 more' }), { id: 'x' }, '9 bad, 1 good, 9 bad: still open')
  for (let i = 0; i < 10; i++) ws.sendRaw('{')
  const { code, reason } = await within(ws.closed, 2000, 'the close')
  t.equal(code, 4400)
  t.type(reason, 'string')
  t.equal(await within(closed.promise, 2000, 'onClose'), 4400)
})

t.test('handler errors do not count as bad messages', async (t) => {
  const failing = defineContract({ messages: { fail: Type.Null() } })
  const app = await buildWs(t)
  app.ws('/fail', { contract: failing, handlers: { fail: () => { throw new Error('no') } }, rateLimit: false })
  const ws = await openWS(app, '/fail')
  for (let i = 0; i < 15; i++) await t.rejects(ws.request('fail', null), { code: 'HANDLER_ERROR' })
  t.equal(ws.socket.readyState, WebSocket.OPEN)
})

// ---- handler errors ----

t.test('a failing handler answers with a generic or a public error, logs it once, and the connection keeps working', async (t) => {
  const failing = defineContract({
    messages: { boom: Type.String(), ok: Type.Null() },
    replies: { ok: Type.Literal('ok') }
  })
  const logs = captureLogs()
  const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
  app.ws('/fail', {
    contract: failing,
    handlers: {
      boom (kind): any {
        switch (kind) {
          case 'sync': throw new Error('secret: db password is hunter2')
          case 'async': return Promise.reject(new Error('secret: async'))
          case 'async-fn': return (async () => { await sleep(1); throw new Error('secret: later') })()
          case 'public': throw publicError('ROOM_FULL', 'The room is full')
          case 'expose': throw Object.assign(new Error('You may see this'), { expose: true, code: 'NOT_YOURS' })
          case 'expose-bad-code': throw Object.assign(new Error('Shown with a generic code'), { expose: true, code: 'lower-case' })
          case 'string': throw 'secret: a string' // eslint-disable-line no-throw-literal
          case 'null': throw null // eslint-disable-line no-throw-literal
          case 'undefined': return Promise.reject(undefined) // eslint-disable-line prefer-promise-reject-errors
        }
      },
      ok: () => 'ok' as const
    }
  })
  const ws = await openWS(app, '/fail')
  const other = await openWS(app, '/fail')
  const cases: Array<[string, string, string]> = [
    ['sync', 'HANDLER_ERROR', 'The handler failed.'],
    ['async', 'HANDLER_ERROR', 'The handler failed.'],
    ['async-fn', 'HANDLER_ERROR', 'The handler failed.'],
    ['public', 'ROOM_FULL', 'The room is full'],
    ['expose', 'NOT_YOURS', 'You may see this'],
    ['expose-bad-code', 'HANDLER_ERROR', 'Shown with a generic code'],
    ['string', 'HANDLER_ERROR', 'The handler failed.'],
    ['null', 'HANDLER_ERROR', 'The handler failed.'],
    ['undefined', 'HANDLER_ERROR', 'The handler failed.']
  ]
  for (const [kind, code, message] of cases) {
    const before = logs.lines.filter((line) => line.msg === HANDLER_FAILED).length
    const err = await ws.request('boom', kind).then(() => undefined, (err) => err)
    t.equal(err?.code, code, kind)
    t.equal(err?.message, message, kind)
    t.notMatch(JSON.stringify(err), /secret/, 'never the error\'s own text')
    t.same(await ws.request('ok', null), 'ok', 'the connection keeps working')
    t.equal(logs.lines.filter((line) => line.msg === HANDLER_FAILED).length, before + 1, `${kind}: logged once`)
  }
  const logged = logs.lines.filter((line) => line.msg === HANDLER_FAILED)
  t.match(logged[0], { level: 50, messageType: 'boom', err: { message: /hunter2/ } }, 'the log keeps what the client does not see')
  t.same(await other.request('ok', null), 'ok', 'another connection is untouched')
  t.equal(ws.socket.readyState, WebSocket.OPEN)
})

// ---- rate limit ----

t.test('over the rate limit: RATE_LIMITED with the id, the handler is not called; over twice the limit: 4429', async (t) => {
  const { app, calls } = await echoApp(t, { rateLimit: { messages: 3, intervalMs: 60000 } })
  const ws = await openWS(app, '/echo')
  for (let i = 0; i < 3; i++) t.equal(await ws.request('echo', i), i)
  ws.sendRaw('{"type":"echo","id":41,"data":1}')
  ws.sendRaw('{"type":"echo","id":"s42","data":1}')
  ws.sendRaw('{"type":"echo","data":1}')
  const limited = await frames(ws, 3)
  t.same(limited.map((frame) => [frame.id, (frame.error as any).code]), [[41, 'RATE_LIMITED'], ['s42', 'RATE_LIMITED'], [undefined, 'RATE_LIMITED']])
  t.equal(calls(), 3, 'the handler ran only for the allowed messages')
  ws.sendRaw('{"type":"echo","id":43,"data":1}')
  t.equal((await within(ws.closed, 2000, 'the close')).code, 4429)
  t.equal(calls(), 3)
})

t.test('rateLimit: false turns the limit off', async (t) => {
  const { app, calls } = await echoApp(t, { rateLimit: false }, { rateLimit: { messages: 2, intervalMs: 60000 } })
  const ws = await openWS(app, '/echo')
  for (let i = 0; i < 300; i++) ws.sendRaw(JSON.stringify({ type: 'echo', id: i, data: i }))
  const got = await frames(ws, 300)
  t.ok(got.every((frame, i) => frame.type === 'reply' && frame.data === i))
  t.equal(calls(), 300)
})

t.test('a route overrides the plugin rate limit', async (t) => {
  const app = await buildWs(t, { rateLimit: { messages: 2, intervalMs: 60000 } })
  app.ws('/loose', { contract: echo, handlers: { echo: (data) => data }, rateLimit: { messages: 20, intervalMs: 60000 } })
  app.ws('/strict', { contract: echo, handlers: { echo: (data) => data } })
  const loose = await openWS(app, '/loose')
  for (let i = 0; i < 20; i++) t.equal(await loose.request('echo', i), i)
  await t.rejects(loose.request('echo', 21), { code: 'RATE_LIMITED' })
  const strict = await openWS(app, '/strict')
  for (let i = 0; i < 2; i++) t.equal(await strict.request('echo', i), i)
  await t.rejects(strict.request('echo', 3), { code: 'RATE_LIMITED' }, 'the plugin default applies elsewhere')
})

t.test('the default rate limit is 100 messages per second', async (t) => {
  const { app, calls } = await echoApp(t)
  const ws = await openWS(app, '/echo')
  for (let i = 0; i < 101; i++) ws.sendRaw(JSON.stringify({ type: 'echo', id: i, data: i }))
  const got = await frames(ws, 101)
  const limited = got.filter((frame) => frame.type === 'error')
  // Only the 101st can be limited, and only if all 101 arrived within one second.
  t.ok(limited.length <= 1 && limited.every((frame) => frame.id === 100 && (frame.error as any).code === 'RATE_LIMITED'))
  t.ok(calls() >= 100)
})

t.test('pings count toward the rate limit: a ping flood closes with 4429', async (t) => {
  const closed = deferred<number>()
  const { app, calls } = await echoApp(t, { rateLimit: { messages: 5, intervalMs: 60000 }, onClose: (conn: unknown, code: number) => closed.resolve(code) })
  const ws = await openWS(app, '/echo')
  for (let i = 0; i < 20; i++) ws.socket.ping()
  t.equal((await within(ws.closed, 2000, 'the close')).code, 4429)
  t.equal(await within(closed.promise, 2000, 'onClose'), 4429)
  t.equal(calls(), 0)
})

// ---- frame kinds and sizes ----

t.test('a binary frame on a JSON route closes with 1003', async (t) => {
  const { app, calls } = await echoApp(t)
  const ws = await openWS(app, '/echo')
  ws.sendRaw(Buffer.from('{"type":"echo","id":1,"data":1}'), { binary: true })
  t.equal((await within(ws.closed, 2000, 'the close')).code, 1003)
  t.equal(calls(), 0, 'never parsed')
})

/** A text message of exactly `bytes` bytes: an echo request with a padded string. */
function messageOfSize (bytes: number, id = 1): string {
  const empty = JSON.stringify({ type: 'echo', id, data: '' })
  return JSON.stringify({ type: 'echo', id, data: 'p'.repeat(bytes - empty.length) })
}

t.test('a message over the default maxPayload (64 KiB) closes with 1009; one at the limit is handled', async (t) => {
  const app = await buildWs(t)
  const closed = deferred<number>()
  app.ws('/echo', { contract: echo, handlers: { echo: (data) => (data as string).length }, onClose: (conn, code) => closed.resolve(code) })
  const ws = await openWS(app, '/echo')
  ws.sendRaw(messageOfSize(65536, 1))
  t.match(await ws.nextFrame(), { type: 'reply', id: 1 }, '65536 bytes are fine')
  ws.sendRaw(messageOfSize(65537, 2))
  t.equal((await within(ws.closed, 2000, 'the close')).code, 1009)
  t.equal(await within(closed.promise, 2000, 'onClose'), 1009, 'onClose reports 1009')
})

t.test('a route can lower maxPayload: a larger message closes with 1009', async (t) => {
  const { app } = await echoApp(t, { maxPayload: 1024 })
  const ws = await openWS(app, '/echo')
  ws.sendRaw(messageOfSize(1024, 1))
  t.match(await ws.nextFrame(), { type: 'reply', id: 1 })
  ws.sendRaw(messageOfSize(1025, 2))
  t.equal((await within(ws.closed, 2000, 'the close')).code, 1009)
})

t.test('a route cannot raise maxPayload', async (t) => {
  const app = await buildWs(t, { maxPayload: 4096 })
  t.throws(() => app.ws('/echo', { contract: echo, handlers: { echo: (data) => data }, maxPayload: 4097 }), { code: 'FRT_ERR_INVALID_OPTION' })
  const defaults = await buildWs(t)
  t.throws(() => defaults.ws('/echo', { contract: echo, handlers: { echo: (data) => data }, maxPayload: 65537 }), { code: 'FRT_ERR_INVALID_OPTION' })
  t.doesNotThrow(() => defaults.ws('/same', { contract: echo, handlers: { echo: (data) => data }, maxPayload: 65536 }))
})

t.test('a nesting bomb within maxPayload gets an answer, never a crash', async (t) => {
  const deep = defineContract({
    messages: {
      any: Type.Any(),
      unknown: Type.Unknown(),
      recursive: Type.Recursive((Self) => Type.Array(Self)),
      object: Type.Recursive((Self) => Type.Object({ a: Type.Optional(Self) }))
    },
    replies: { any: Type.Any(), recursive: Type.Recursive((Self) => Type.Array(Self)) }
  })
  const app = await buildWs(t)
  app.ws('/deep', {
    contract: deep,
    handlers: {
      any: (data) => data,
      unknown: () => {},
      recursive: (data) => data as any,
      object: () => {}
    }
  })
  const ws = await openWS(app, '/deep')
  const arrays = '['.repeat(30000) + ']'.repeat(30000)
  const objects = '{"a":'.repeat(6000) + '{}' + '}'.repeat(6000)
  for (const [type, data] of [['any', arrays], ['unknown', arrays], ['recursive', arrays], ['object', objects], ['any', objects]]) {
    ws.sendRaw(`{"type":"${type}","id":"${type}","data":${data}}`)
    const frame = await within(ws.nextFrame(), 5000, `the answer to ${type}`)
    t.ok(frame.type === 'reply' || frame.type === 'error', `${type}: ${frame.type} ${JSON.stringify(frame.error ?? '')}`)
    t.equal(frame.id, type)
  }
  ws.sendRaw(`{"type":"any","id":"no-data-key","data":1,"x":${arrays}}`)
  t.match(await ws.nextFrame(), { type: 'reply', id: 'no-data-key', data: 1 })
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'still open')
})

/** True when secure-json-parse refuses the JSON of `value`: a __proto__ key, or constructor.prototype. */
function forbidden (value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  if (Array.isArray(value)) return value.some(forbidden)
  const record = value as Record<string, unknown>
  if (Object.prototype.hasOwnProperty.call(record, '__proto__')) return true
  const ctor = Object.prototype.hasOwnProperty.call(record, 'constructor') ? record.constructor : undefined
  if (ctor !== null && typeof ctor === 'object' && Object.prototype.hasOwnProperty.call(ctor, 'prototype')) return true
  return Object.values(record).some(forbidden)
}

t.test('property: any JSON value sent as data comes back unchanged from an echo handler', async (t) => {
  const { app } = await echoApp(t, { rateLimit: false })
  const ws = await openWS(app, '/echo')
  let checked = 0
  await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 5 }), fc.oneof(fc.string({ maxLength: 20 }), fc.integer()), async (value, id) => {
    ws.sendRaw(JSON.stringify({ type: 'echo', id, data: value }))
    const frame = await ws.nextFrame()
    if (forbidden(value)) {
      // Refused, nothing of it handled; its id is kept so the request is answered.
      if ((frame.error as any)?.code !== 'BAD_JSON' || frame.id !== id) throw new Error(`expected BAD_JSON with id ${JSON.stringify(id)}, got ${JSON.stringify(frame)}`)
      return
    }
    if (frame.id !== id) throw new Error(`answer with id ${JSON.stringify(frame.id)} to ${JSON.stringify(id)}`)
    t.strictSame(frame, { type: 'reply', id, data: JSON.parse(JSON.stringify(value)) })
    checked++
  }), { numRuns: 200 })
  t.ok(checked > 150, `${checked} echoed`)
  t.equal(ws.socket.readyState, WebSocket.OPEN)
})

t.test('property: an arbitrary string as a frame gets at most one answer, and the connection stays usable', async (t) => {
  const { app } = await echoApp(t, { rateLimit: false })
  const ws = await openWS(app, '/echo')
  const seen = record(ws)
  const frameText = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.json(),
    fc.jsonValue().map((data) => JSON.stringify({ type: 'echo', data })),
    // Ids of connectWS's own requests ("c1", "c2", ...) are left out: a raw frame carrying one would
    // answer the pending request of the same id, which is the client's mix-up, not the server's.
    fc.record({ type: fc.oneof(fc.constant('echo'), fc.string()), id: fc.anything().filter((id) => !(typeof id === 'string' && /^c\d+$/.test(id))), data: fc.anything() }).map((value) => {
      try { return JSON.stringify(value) ?? 'undefined' } catch { return '{' }
    })
  )
  let n = 0
  await fc.assert(fc.asyncProperty(frameText, async (text) => {
    const start = seen.length
    ws.sendRaw(text)
    n++
    if (await ws.request('echo', n) !== n) throw new Error('the good message after it was not answered')
    // Answers keep arrival order: the raw frame's answer, if any, came before the good reply.
    const answers = seen.slice(start, -1)
    if (answers.length > 1) throw new Error(`${answers.length} answers to ${JSON.stringify(text)}`)
    const answer = answers[0]
    if (answer === undefined) return
    if (answer.type === 'error' && !BAD_CODES.includes((answer.error as any).code)) {
      throw new Error(`unexpected error ${JSON.stringify(answer)} for ${JSON.stringify(text)}`)
    }
    await ws.nextFrame() // take it from the helper's queue
  }), { numRuns: 200 })
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'never closed: a good message after each keeps the bad count at 1')
})

t.test('property: a burst of arbitrary strings ends open, or closed only with 4400 or 4429', async (t) => {
  const app = await buildWs(t)
  const codes = new Map<string, number[]>()
  app.ws('/echo', {
    contract: echo,
    handlers: { echo: (data) => data },
    rateLimit: { messages: 10, intervalMs: 60000 },
    onClose: (conn, code) => { codes.set(conn.id, [...(codes.get(conn.id) ?? []), code]) }
  })
  let connections = 0
  await fc.assert(fc.asyncProperty(fc.array(fc.oneof(fc.string(), fc.json()), { minLength: 1, maxLength: 40 }), async (texts) => {
    const ws = await openWS(app, '/echo')
    connections++
    for (const text of texts) ws.sendRaw(text)
    const last = await ws.request('echo', 'last').then(() => 'answered', (err) => err.code as string)
    if (last === 'answered' || last === 'RATE_LIMITED') {
      if (ws.socket.readyState !== WebSocket.OPEN) throw new Error(`${last} but not open`)
      await ws.close(4000)
    } else {
      const { code } = await within(ws.closed, 2000, 'the close')
      if (code !== 4400 && code !== 4429) throw new Error(`closed with ${code}`)
    }
  }), { numRuns: 30 })
  await within((async () => { while (codes.size < connections) await sleep(5) })(), 3000, 'every onClose')
  t.ok([...codes.values()].every((list) => list.length === 1 && [4000, 4400, 4429].includes(list[0] as number)), 'onClose ran once per connection, with a documented code')
})

// ---- onOpen and the connection ----

t.test('an async onOpen delays message handling but loses nothing', async (t) => {
  const app = await buildWs(t)
  const opened = deferred()
  let ready = false
  app.ws('/chat', {
    contract: chat,
    async onOpen () {
      await opened.promise
      ready = true
    },
    handlers: { say: (data) => ({ id: `${data.text}:${ready}` }), note: () => {} }
  })
  const ws = await openWS(app, '/chat')
  for (let i = 0; i < 5; i++) ws.sendRaw(JSON.stringify({ type: 'say', id: i, data: { text: String(i) } }))
  ws.sendRaw('{')
  await sleep(20)
  opened.resolve()
  const got = await frames(ws, 6)
  t.same(got.slice(0, 5).map((frame) => frame.data), [0, 1, 2, 3, 4].map((i) => ({ id: `${i}:true` })), 'answered after onOpen resolved, in order')
  t.match(got[5], { type: 'error', error: { code: 'BAD_JSON' } })
})

t.test('an onOpen that throws or rejects closes with 1011 and is logged', async (t) => {
  for (const kind of ['sync', 'async']) {
    const logs = captureLogs()
    const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
    const closed = deferred<number>()
    let called = 0
    app.ws('/chat', {
      contract: chat,
      onOpen: kind === 'sync'
        ? () => { throw new Error('open failed') }
        : async () => { await sleep(5); throw new Error('open failed') },
      onClose: (conn, code) => closed.resolve(code),
      handlers: { say: () => { called++; return { id: 'x' } }, note: () => {} }
    })
    const ws = await openWS(app, '/chat')
    if (ws.socket.readyState === WebSocket.OPEN) ws.sendRaw('{"type":"say","id":1,"data":{"text":"x"}}')
    t.equal(await within(closed.promise, 2000, 'onClose'), 1011, `${kind}: onClose`)
    t.equal(called, 0, 'no message handled')
    t.equal(logs.lines.filter((line) => /onOpen failed/.test(line.msg) && line.err?.message === 'open failed').length, 1, 'logged once')
    t.equal((await within(ws.closed, 2000, 'the client\'s close')).code, 1011, `${kind}: the client sees 1011`)
  }
})

t.test('connectWS reports a close that happens during the upgrade', async (t) => {
  // Regression: connectWS kept frames that came with the 101 but not a close: when the server closed
  // in onOpen, the ws client had already emitted 'close' before connectWS listened, so \`closed\`
  // never resolved and every request() waited for its timeout.
  const app = await buildWs(t)
  app.ws('/closing', {
    contract: chat,
    onOpen (conn) { conn.close(4000, 'not today') },
    handlers: { say: () => ({ id: 'x' }), note: () => {} }
  })
  const ws = await openWS(app, '/closing', { timeout: 1000 })
  t.same(await within(ws.closed, 2000, 'closed'), { code: 4000, reason: 'not today' })
  await t.rejects(within(ws.request('say', { text: 'x' }), 2000, 'a request after the close'), { code: 'FRT_ERR_TESTING' })
})

t.test('connectWS receives what the server sends in onOpen', async (t) => {
  // Regression: connectWS listened for frames only after injectWS() resolved, so a frame written
  // right after the upgrade (a welcome event, a replay, a reset) reached nobody.
  const app = await buildWs(t)
  app.ws('/welcome', {
    contract: chat,
    onOpen (conn) { conn.send('message', { text: 'welcome' }) },
    handlers: { say: () => ({ id: 'x' }), note: () => {} }
  })
  const ws = await openWS(app, '/welcome', { timeout: 1000 })
  t.same(await ws.nextFrame().catch((err) => err.message), { type: 'event', event: 'message', data: { text: 'welcome' } })
})

t.test('conn.signal aborts as soon as the server closes the connection, whenever it was first read', async (t) => {
  // Regression: a signal read before conn.close() stayed unaborted until the close handshake ended
  // (up to the 1 s close timeout, the slow-consumer cut included), while one read after was aborted.
  const closer = defineContract({ messages: { close: Type.Null() } })
  const app = await buildWs(t)
  const seen = deferred<boolean[]>()
  app.ws('/close', {
    contract: closer,
    handlers: {
      close (data, conn) {
        const early = conn.signal
        conn.close(4000, 'done')
        seen.resolve([early.aborted, conn.signal.aborted, early === conn.signal])
      }
    }
  })
  const ws = await openWS(app, '/close')
  ws.send('close', null)
  t.same(await within(seen.promise, 2000, 'the handler'), [true, true, true])
  t.equal((await within(ws.closed, 2000, 'the close')).code, 4000)
})

t.test('conn.send validates against the contract\'s events, and reports false after close', async (t) => {
  const app = await buildWs(t)
  let conn!: Connection<typeof chat>
  const closed = deferred()
  app.ws('/chat', {
    contract: chat,
    onOpen (c) { conn = c },
    onClose: () => closed.resolve(),
    handlers: { say: () => ({ id: 'x' }), note: () => {} }
  })
  const ws = await openWS(app, '/chat')
  t.throws(() => conn.send('message', { text: 1 } as any), { code: 'FRT_ERR_VALIDATION' })
  t.throws(() => conn.send('nope' as any, {} as any), { code: 'FRT_ERR_UNKNOWN_EVENT' })
  t.throws(() => conn.send('message', { text: 'x', extra: 1n } as any), /./, 'unserializable data throws while open')
  t.equal(conn.send('message', { text: 'hi' }), true)
  const frame = await ws.nextFrame()
  t.same(frame, { type: 'event', event: 'message', data: { text: 'hi' } }, 'no topic, no id')
  await ws.close()
  await within(closed.promise, 2000, 'onClose')
  t.equal(conn.send('message', { text: 'late' }), false)
  t.equal(conn.send('nope' as any, {} as any), false, 'never throws once closed')
  t.equal(conn.send('message', { text: 1 } as any), false)
})

t.test('conn.close refuses codes and reasons the protocol does not allow', async (t) => {
  const closer = defineContract({ messages: { close: Type.Array(Type.Unknown()) }, replies: { close: Type.Array(Type.String()) } })
  const app = await buildWs(t)
  app.ws('/close', {
    contract: closer,
    handlers: {
      close ([code, reason], conn) {
        try {
          conn.close(code as number, reason as string)
          return ['closed']
        } catch (err) {
          return [(err as { code: string }).code]
        }
      }
    }
  })
  const ws = await openWS(app, '/close')
  const refused: unknown[][] = [[999], [1004], [1005], [1006], [1015], [2000], [5000], [4000.5], ['4000'], [4000, 'x'.repeat(124)], [4000, 'é'.repeat(62)], [4000, 42]]
  for (const args of refused) t.same(await ws.request('close', args), ['FRT_ERR_INVALID_OPTION'], JSON.stringify(args).slice(0, 30))
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'none of them closed anything')
  const allowed = await openWS(app, '/close')
  allowed.sendRaw(JSON.stringify({ type: 'close', id: 1, data: [4000, 'x'.repeat(123)] }))
  t.same(await within(allowed.closed, 2000, 'the close'), { code: 4000, reason: 'x'.repeat(123) }, '123 bytes are fine')
})

t.test('conn: id is unique, user, request and log are there, signal aborts on close', async (t) => {
  const app = await buildWs(t, { authenticate: (request) => ({ name: request.headers['x-user'] }) })
  const conns: Connection<any>[] = []
  const closed = deferred()
  app.ws('/chat', {
    contract: chat,
    onOpen (conn) { conns.push(conn) },
    onClose: () => closed.resolve(),
    handlers: { say: () => ({ id: 'x' }), note: () => {} }
  })
  const clients = await Promise.all(['ann', 'bob', 'cy'].map((user) => openWS(app, '/chat?room=1', { headers: { 'x-user': user } })))
  t.equal(new Set(conns.map((conn) => conn.id)).size, 3, 'ids are unique')
  t.ok(conns.every((conn) => typeof conn.id === 'string' && conn.id.length > 0))
  t.same(conns.map((conn) => conn.user), [{ name: 'ann' }, { name: 'bob' }, { name: 'cy' }])
  t.equal(conns[0]?.request.url, '/chat?room=1')
  t.same(conns[0]?.request.query, { room: '1' })
  t.type(conns[0]?.log.info, 'function')
  const signal = conns[0]?.signal as AbortSignal
  t.equal(signal.aborted, false)
  let aborted = 0
  signal.addEventListener('abort', () => { aborted++ })
  await clients[0]?.close()
  await within(closed.promise, 2000, 'onClose')
  t.equal(signal.aborted, true)
  t.equal(aborted, 1)
  t.equal(conns[1]?.signal.aborted, false, 'only that connection')
  t.equal(conns[0]?.signal, signal, 'the same signal')
})

t.test('conn.signal read for the first time after the close is already aborted', async (t) => {
  const app = await buildWs(t)
  let conn!: Connection<any>
  const closed = deferred()
  app.ws('/chat', { contract: chat, onOpen (c) { conn = c }, onClose: () => closed.resolve(), handlers: { say: () => ({ id: 'x' }), note: () => {} } })
  const ws = await openWS(app, '/chat')
  await ws.close()
  await within(closed.promise, 2000, 'onClose')
  t.equal(conn.signal.aborted, true)
})

// ---- onClose ----

interface CloseRecord { id: string, code: number, reason: string }

async function closeApp (t: Test, serverOptions = {}) {
  const app = await buildWs(t, {}, serverOptions)
  const records: CloseRecord[] = []
  const waiters: Array<() => void> = []
  let conn!: Connection<any>
  const closer = defineContract({ messages: { close: Type.Tuple([Type.Integer(), Type.String()]) } })
  app.ws('/chat', {
    contract: closer,
    onOpen (c) { conn = c },
    onClose (c, code, reason) {
      records.push({ id: c.id, code, reason })
      waiters.shift()?.()
    },
    handlers: { close: ([code, reason], c) => c.close(code, reason) }
  })
  await app.ready()
  return {
    app,
    records,
    conn: () => conn,
    nextClose: () => within(new Promise<void>((resolve) => { waiters.push(resolve) }), 3000, 'onClose')
  }
}

t.test('onClose gets the client\'s code and reason when the client closes', async (t) => {
  const { app, records, conn, nextClose } = await closeApp(t)
  const ws = await openWS(app, '/chat')
  const closing = nextClose()
  await ws.close(4000, 'bye now')
  await closing
  await sleep(20)
  t.same(records, [{ id: conn().id, code: 4000, reason: 'bye now' }])
})

t.test('onClose gets the server\'s own code and reason when the server closes', async (t) => {
  const { app, records, nextClose } = await closeApp(t)
  const ws = await openWS(app, '/chat')
  const closing = nextClose()
  ws.send('close', [4001, 'x'])
  t.same(await within(ws.closed, 2000, 'the close'), { code: 4001, reason: 'x' })
  await closing
  await sleep(20)
  t.same(records.map(({ code, reason }) => ({ code, reason })), [{ code: 4001, reason: 'x' }])
})

t.test('a close that races the client\'s own close still runs onClose once', async (t) => {
  const { app, records, nextClose } = await closeApp(t)
  const ws = await openWS(app, '/chat')
  const closing = nextClose()
  ws.send('close', [4002, 'server'])
  ws.socket.close(4003, 'client')
  await within(ws.closed, 2000, 'the close')
  await closing
  await sleep(20)
  t.equal(records.length, 1)
  t.ok([4002, 4003].includes(records[0]?.code as number), `code ${records[0]?.code}`)
})

t.test('onClose gets 1006 when the peer vanishes', async (t) => {
  const { app, records, nextClose } = await closeApp(t)
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  const client = new WebSocket(`${url.replace('http', 'ws')}/chat`)
  client.on('error', () => {})
  await within(new Promise((resolve) => client.once('open', resolve)), 2000, 'open')
  const closing = nextClose()
  client.terminate()
  await closing
  await sleep(20)
  t.same(records.map(({ code }) => code), [1006])
})

t.test('onClose gets 1001 on app.close()', async (t) => {
  const { app, records } = await closeApp(t)
  const clients = [await openWS(app, '/chat'), await openWS(app, '/chat')]
  await within(app.close(), 2000, 'app.close()')
  t.same(records.map(({ code }) => code), [1001, 1001])
  for (const client of clients) t.equal((await client.closed).code, 1001)
})

t.test('an onClose that throws or rejects is logged and crashes nothing', async (t) => {
  const logs = captureLogs()
  const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
  let calls = 0
  app.ws('/sync', { contract: echo, handlers: { echo: (data) => data }, onClose: () => { calls++; throw new Error('close failed sync') } })
  app.ws('/async', { contract: echo, handlers: { echo: (data) => data }, onClose: async () => { calls++; throw new Error('close failed async') } })
  for (const path of ['/sync', '/async']) {
    const ws = await openWS(app, path)
    await ws.close()
  }
  await within((async () => { while (logs.lines.filter((line) => /onClose failed/.test(line.msg)).length < 2) await sleep(5) })(), 3000, 'the logs')
  t.equal(calls, 2)
  for (const message of ['close failed sync', 'close failed async']) {
    t.equal(logs.lines.filter((line) => /onClose failed/.test(line.msg) && line.err?.message === message).length, 1, message)
  }
  const ws = await openWS(app, '/sync')
  t.equal(await ws.request('echo', 'alive'), 'alive')
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})

t.test('messages piling up behind a slow handler are bounded: past maxBufferedBytes, close 4429', async (t) => {
  const app = await buildWs(t, { rateLimit: false })
  const release = deferred<void>()
  let handled = 0
  const closes: Array<[number, string]> = []
  app.ws('/slow', {
    contract: echo,
    maxBufferedBytes: 4096,
    handlers: { echo: async (data) => { handled++; await release.promise; return data } },
    onClose (conn, code, reason) { closes.push([code, reason]) }
  })
  const ws = await openWS(app, '/slow')
  const text = JSON.stringify({ type: 'echo', id: 1, data: 'p'.repeat(200) })
  for (let i = 0; i < 40; i++) ws.sendRaw(text)
  const closed = await within(ws.closed, 2000, 'the close')
  t.equal(closed.code, 4429)
  t.same(closes, [[4429, 'too many pending messages']])
  t.equal(handled, 1, 'only the first message reached the handler; the backlog was dropped')
  release.resolve()
})
