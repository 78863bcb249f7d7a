import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, publicError } from '../../lib/index.js'
import { createWsClient, type RealtimeClientError, type WsClient } from '../../lib/client/index.js'
import { freePort, recordEscapes } from '../helpers/index.js'
import { FAST, NodeWebSocket, serve, states, until, type Served } from '../helpers/client.js'

const chat = defineContract({
  events: { message: Type.Object({ text: Type.String() }) },
  messages: {
    say: Type.Object({ text: Type.String({ minLength: 1 }) }),
    note: Type.Object({ text: Type.String() }),
    hang: Type.Null(),
    fail: Type.Null(),
    drop: Type.Null()
  },
  replies: { say: Type.Object({ id: Type.String() }) }
})
type Chat = typeof chat

const escaped = recordEscapes(t)

async function chatServer (t: Test, maxPayload = 65536): Promise<Served & { notes: string[] }> {
  const notes: string[] = []
  const served = await serve(t, (app) => {
    app.ws('/chat', {
      contract: chat,
      maxPayload,
      handlers: {
        say: (data) => ({ id: `r-${data.text}` }),
        note: (data, conn) => { notes.push(data.text); conn.send('message', { text: data.text }) },
        hang: () => new Promise<void>(() => {}),
        fail: () => { throw publicError('NOPE', 'not today') },
        drop: (data, conn) => { conn.close(4000, 'bye'); return new Promise<void>(() => {}) }
      }
    })
  })
  return Object.assign(served, { notes })
}

function client (t: Test, url: string, options = {}): WsClient<Chat> {
  const rt = createWsClient<Chat>(`${url.replace('http', 'ws')}/chat`, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0, ...options })
  t.teardown(() => rt.close())
  return rt
}

async function rejection (promise: Promise<unknown>): Promise<RealtimeClientError> {
  return promise.then(() => { throw new Error('resolved') }, (err) => err)
}

t.test('a request sent while connecting waits, then resolves with its reply; a message without a reply schema resolves undefined', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  t.equal(rt.state, 'connecting')
  t.same(await rt.request('say', { text: 'hi' }), { id: 'r-hi' })
  t.equal(rt.state, 'open')
  t.equal(await rt.request('note', { text: 'n' }), undefined)
})

t.test('server errors reject with their code, message and details', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  const invalid = await rejection(rt.request('say', { text: '' }))
  t.equal(invalid.name, 'RealtimeClientError')
  t.equal(invalid.code, 'VALIDATION')
  t.equal(invalid.details?.[0].path, '/text')
  const refused = await rejection(rt.request('fail', null))
  t.equal(refused.code, 'NOPE')
  t.equal(refused.message, 'not today')
})

t.test('a request without a reply in time rejects with TIMEOUT; the connection stays', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url, { requestTimeoutMs: 30 })
  t.equal((await rejection(rt.request('hang', null))).code, 'TIMEOUT')
  t.equal((await rejection(rt.request('hang', null, { timeoutMs: 10 }))).code, 'TIMEOUT')
  const forever = rt.request('hang', null, { timeoutMs: Infinity })
  t.equal((await rejection(rt.request('hang', null, { timeoutMs: 20 }))).code, 'TIMEOUT', 'a later request times out first')
  rt.close()
  t.equal((await rejection(forever)).code, 'CLOSED', 'an Infinity timeout never fires')
  t.equal(server.seen.upgrades, 1, 'handled in arrival order, the hang holds later messages, not the connection')
})

t.test('an aborted signal rejects with ABORTED, before sending or in flight', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  t.equal((await rejection(rt.request('say', { text: 'x' }, { signal: AbortSignal.abort() }))).code, 'ABORTED')
  await until(() => rt.state === 'open', 5000, 'open')
  const controller = new AbortController()
  const pending = rt.request('hang', null, { signal: controller.signal })
  controller.abort()
  t.equal((await rejection(pending)).code, 'ABORTED')
})

t.test('send() is fire-and-forget; events reach the client\'s listeners', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  const got: unknown[] = []
  rt.on('message', (data, meta) => { got.push([data, meta]) })
  t.equal(rt.send('note', { text: 'a' }), true, 'queued while connecting')
  await until(() => rt.state === 'open', 5000, 'open')
  t.equal(rt.send('note', { text: 'b' }), true)
  await until(() => got.length === 2, 5000, 'both echoes')
  t.same(server.notes, ['a', 'b'])
  t.same(got, [[{ text: 'a' }, { topic: undefined, id: undefined }], [{ text: 'b' }, { topic: undefined, id: undefined }]])
})

t.test('a request in flight when the connection drops rejects with DISCONNECTED; the client reconnects', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  const error = await rejection(rt.request('drop', null))
  t.equal(error.code, 'DISCONNECTED')
  t.match(error.message, /may or may not have run/)
  t.same(await rt.request('say', { text: 'again' }), { id: 'r-again' })
  t.equal(server.seen.upgrades, 2)
})

t.test('while disconnected, the queue is bounded in messages and bytes; a queued request\'s timeout runs', async (t) => {
  const port = await freePort()
  const rt = client(t, `http://127.0.0.1:${port}`, { queue: { messages: 2, bytes: 200 } })
  const first = rt.request('say', { text: 'one' }, { timeoutMs: 20 })
  const second = rt.request('say', { text: 'two' })
  t.equal((await rejection(rt.request('say', { text: 'three' }))).code, 'QUEUE_FULL')
  t.equal(rt.send('note', { text: 'four' }), false)
  t.equal((await rejection(first)).code, 'TIMEOUT', 'a queued request times out')
  t.equal(rt.send('note', { text: 'its place is free again' }), true)
  t.equal((await rejection(rt.request('note', { text: 'x'.repeat(200) }))).code, 'QUEUE_FULL', 'over the bytes')
  rt.close()
  t.equal((await rejection(second)).code, 'CLOSED', 'close() rejects what waits')
})

t.test('a message over the hello\'s maxPayload is refused locally; the connection stays', async (t) => {
  const server = await chatServer(t, 1024)
  const rt = client(t, server.url)
  const early = rt.request('say', { text: 'x'.repeat(2000) })
  t.equal((await rejection(early)).code, 'PAYLOAD_TOO_LARGE', 'queued before the hello, refused when it came')
  t.equal((await rejection(rt.request('say', { text: 'y'.repeat(2000) }))).code, 'PAYLOAD_TOO_LARGE')
  t.equal(rt.send('note', { text: 'z'.repeat(2000) }), false)
  t.same(await rt.request('say', { text: 'small' }), { id: 'r-small' })
  t.equal(server.seen.upgrades, 1)
})

t.test('data that is not JSON is refused with VALIDATION', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  t.equal((await rejection(rt.request('say', { text: 10n } as any))).code, 'VALIDATION')
})

t.test('after close(): requests reject with CLOSED, send() returns false, a subscription never becomes ready', async (t) => {
  const server = await chatServer(t)
  const rt = client(t, server.url)
  await until(() => rt.state === 'open', 5000, 'open')
  const changes = states(rt)
  rt.close()
  rt.close()
  t.same(await rt.closed, { code: 1000 })
  t.same(changes.names(), ['closed'])
  t.equal((await rejection(rt.request('say', { text: 'late' }))).code, 'CLOSED')
  t.equal(rt.send('note', { text: 'late' }), false)
  t.equal((await rejection(rt.subscribe('lobby').ready)).code, 'CLOSED')
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
