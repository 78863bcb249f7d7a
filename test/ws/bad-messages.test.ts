// Bad messages: validation, unknown types, bad frames and JSON; 4400 after ten in a row.
import t from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'
import { chat, echo, frames } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
