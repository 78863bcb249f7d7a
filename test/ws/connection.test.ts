// onOpen and the connection object: send, close, signal, id, user.
import t from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, type Connection } from '../../lib/index.js'
import { captureLogs, recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'
import { chat, frames } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
