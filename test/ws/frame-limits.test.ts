// Frame limits: binary frames (1003), maxPayload (1009), nesting bombs.
import t from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'
import { echo, echoApp } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
