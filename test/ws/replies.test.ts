// Messages reach their handlers; replies carry their ids, in arrival order.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { captureLogs, recordEscapes } from '../helpers/index.js'
import { buildWs, openWS, sleep } from '../helpers/ws.js'
import { HANDLER_FAILED, chat, frames, record } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
