// Handler failures: a generic or a public error, logged once, the connection keeps working.
import t from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, publicError } from '../../lib/index.js'
import { captureLogs, recordEscapes } from '../helpers/index.js'
import { buildWs, openWS, sleep } from '../helpers/ws.js'
import { HANDLER_FAILED } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
