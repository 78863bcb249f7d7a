// The hello: the first message to a client that negotiated realtime.v1, with what it needs to pace
// itself; clients of the plain wire never get one.
import t from 'tap'
import { type Connection } from '../../lib/index.js'
import { recordEscapes } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep } from '../helpers/ws.js'
import { chat } from '../helpers/ws-messages.js'

const escaped = recordEscapes(t)

const handlers = { say: () => ({ id: 'x' }), note: () => {} }

t.test('a realtime.v1 client gets the hello first: its connection id, the heartbeat, maxPayload, no expiry', async (t) => {
  const app = await buildWs(t, { heartbeat: 25000, maxPayload: 4096 })
  const opened = deferred<Connection<typeof chat>>()
  app.ws('/chat', {
    contract: chat,
    onOpen (conn) {
      conn.send('message', { text: 'welcome' })
      opened.resolve(conn)
    },
    handlers
  })
  const ws = await openWS(app, '/chat', { protocols: ['realtime.v1'] })
  const conn = await opened.promise
  t.equal(ws.protocol, 'realtime.v1')
  t.strictSame(await ws.nextFrame(), {
    type: 'hello',
    data: { connectionId: conn.id, heartbeatMs: 25000, maxPayload: 4096, expiresAt: null }
  }, 'the hello, before what onOpen sent')
  t.match(await ws.nextFrame(), { type: 'event', event: 'message' }, 'then what onOpen sent')
})

t.test('the hello carries the route\'s lower maxPayload, 0 for no heartbeat, and the expiry authenticate gave', async (t) => {
  const expiresAt = Date.now() + 60000
  const app = await buildWs(t, { heartbeat: false, authenticate: () => ({ user: { name: 'ann' }, expiresAt: new Date(expiresAt) }) })
  app.ws('/chat', { contract: chat, maxPayload: 1000, handlers })
  const ws = await openWS(app, '/chat', { protocols: ['bearer.abc', 'realtime.v1'] })
  const hello = await ws.nextFrame()
  t.match(hello, { type: 'hello', data: { heartbeatMs: 0, maxPayload: 1000, expiresAt } })
  t.type((hello.data as { connectionId: unknown }).connectionId, 'string')
})

t.test('a client without realtime.v1 gets no hello: the wire is unchanged for it', async (t) => {
  const app = await buildWs(t)
  app.ws('/chat', {
    contract: chat,
    onOpen (conn) { conn.send('message', { text: 'welcome' }) },
    handlers
  })
  for (const protocols of [undefined, ['other']]) {
    const ws = await openWS(app, '/chat', { protocols })
    t.equal(ws.protocol, '')
    t.match(await ws.nextFrame(), { type: 'event', event: 'message' }, `the first frame is onOpen's (${String(protocols)})`)
  }
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
