// onClose: once per connection, with the code the connection ended with.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import { defineContract, type Connection } from '../../lib/index.js'
import { captureLogs, recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, within } from '../helpers/ws.js'
import { echo } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

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

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
