import t from 'tap'
import Fastify from 'fastify'
import WebSocket from 'ws'
import { fastifyWs } from '../../lib/index.js'
import { connectWS } from '../../lib/testing/index.js'
import { kConnection } from '../../lib/symbols.js'

// The plugin's ws server makes its sockets with its own class: a connection gets its socket's events
// without listening to them, and a plain { websocket: true } route's socket is ws's as it is.

t.test('a plain route\'s socket emits every event to its listeners', async (t) => {
  const app = Fastify()
  await app.register(fastifyWs, { heartbeat: 0 })
  t.teardown(() => app.close())
  const seen: string[] = []
  let closed!: () => void
  const done = new Promise<void>((resolve) => { closed = resolve })
  app.get('/plain', { websocket: true }, (socket) => {
    socket.on('message', (data) => {
      seen.push(`message ${String(data)}`)
      socket.ping()
    })
    socket.on('ping', () => seen.push('ping'))
    socket.on('pong', () => {
      seen.push('pong')
      socket.close(4000, 'bye')
    })
    socket.on('close', (code: number) => {
      seen.push(`close ${code}`)
      closed()
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const client = new WebSocket(`ws://127.0.0.1:${port}/plain`)
  await new Promise((resolve) => client.once('open', resolve))
  client.ping()
  await new Promise((resolve) => setTimeout(resolve, 20))
  client.send('hi')
  await done
  t.same(seen, ['ping', 'message hi', 'pong', 'close 4000'])
})

t.test('a connection\'s socket carries no listener of the connection\'s', async (t) => {
  const app = Fastify()
  await app.register(fastifyWs, { heartbeat: 0 })
  t.teardown(() => app.close())
  let socket: WebSocket | undefined
  app.ws('/rt', { authenticate: false, handlers: {}, onOpen () {} })
  await app.ready()
  const client = await connectWS(app, '/rt')
  for (const server of app.websocketServer.clients) socket = server
  t.ok(socket !== undefined && (socket as any)[kConnection] !== undefined, 'the socket knows its connection')
  const counts = Object.fromEntries(['message', 'ping', 'pong', 'close', 'error'].map((event) => [event, socket?.listenerCount(event)]))
  // ws's own 'close' (which keeps the server's clients) and @fastify/websocket's 'error'.
  t.same(counts, { message: 0, ping: 0, pong: 0, close: 1, error: 1 })
  await client.close()
})
