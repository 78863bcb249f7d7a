// The per-connection message budget: RATE_LIMITED, then 4429.
import t from 'tap'
import { recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'
import { echo, echoApp, frames } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
