// The client against a scripted server: duplicates, junk, silence, and a server without realtime.v1.
import t from 'tap'
import { createWsClient, type RealtimeClientError } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { FAST, NodeWebSocket, peer, states, until } from '../helpers/client.js'

const escaped = recordEscapes(t)

function event (topic: string | undefined, id: string | undefined, n: number): string {
  return JSON.stringify({ type: 'event', topic, id, event: 'tick', data: { n } })
}

t.test('a resubscription resumes after the last id; duplicates are dropped per topic, in the id order', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket, index) => {
    if (message.type !== 'realtime.subscribe') return
    const reply = (position: string, resumed: boolean): void => {
      socket.send(JSON.stringify({ type: 'reply', id: message.id, data: { topic: 'lobby', position, resumed } }))
    }
    if (index === 0) {
      socket.send(event('lobby', '1-1', 1))
      reply('1-1', true)
      socket.send(event('lobby', '1-2', 2))
      socket.send(event('other', '1-3', 0))
      socket.close(1011)
    } else {
      // Too much replay: 1-1 and 1-2 again, then what was missed.
      for (const [id, n] of [['1-1', 1], ['1-2', 2], ['1-4', 4]] as const) socket.send(event('lobby', id, n))
      reply('1-9', true)
      socket.send(event('lobby', '1-9', 9))
      socket.send(event('lobby', '1-10', 10))
      socket.send(event('lobby', undefined, 11))
    }
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const lobby = rt.subscribe('lobby', { after: '1-0' })
  t.equal(rt.subscribe('lobby'), lobby, 'one subscription per topic')
  const got: unknown[] = []
  const all: unknown[] = []
  lobby.on('tick', (data: any, { id }) => { got.push([data.n, id]) })
  rt.on('tick', (data: any, { topic }) => { all.push([data.n, topic]) })
  t.same(await lobby.ready, { resumed: true })
  await until(() => got.length === 5, 5000, 'both connections')
  t.same(got, [[1, '1-1'], [2, '1-2'], [4, '1-4'], [10, '1-10'], [11, undefined]], 'the position 1-9 was already had')
  t.same(all, [[1, 'lobby'], [2, 'lobby'], [0, 'other'], [4, 'lobby'], [10, 'lobby'], [11, 'lobby']])
  t.same(server.connections.map(({ received }) => received[0].data), [{ topic: 'lobby', after: '1-0' }, { topic: 'lobby', after: '1-2' }])
  t.equal(lobby.lastId, '1-10')
})

t.test('a reset clears the resume point: the reply\'s position is the new one, whatever its order', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket) => {
    if (message.type !== 'realtime.subscribe') return
    socket.send(JSON.stringify({ type: 'reset', topic: 'lobby' }))
    socket.send(JSON.stringify({ type: 'reset', topic: 'unknown' }))
    socket.send(JSON.stringify({ type: 'reply', id: message.id, data: { topic: 'lobby', position: '0-0', resumed: false } }))
    socket.send(event('lobby', '0-1', 1))
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const lobby = rt.subscribe('lobby', { after: '99-0' })
  const resets: unknown[] = []
  lobby.onReset((info) => { resets.push(info) })
  const got: number[] = []
  lobby.on('tick', (data: any) => { got.push(data.n) })
  t.same(await lobby.ready, { resumed: false })
  await until(() => got.length === 1, 5000, 'the live event')
  t.same(resets, [{ topics: ['lobby'] }])
  t.equal(lobby.lastId, '0-1')
})

t.test('resubscriptions go out before queued messages', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => {
    if (index === 0) {
      hello(socket)
      socket.close(1011)
    } else {
      hello(socket)
    }
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, backoff: { initialMs: 50, maxMs: 50 }, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  // Queued as the drop is seen, before the reconnect can have happened.
  let queued = false
  rt.onState((change) => {
    if (change.state !== 'reconnecting' || queued) return
    queued = true
    rt.subscribe('a')
    rt.send('note', { text: 'queued' })
    rt.subscribe('b')
  })
  await until(() => server.connections.length === 2 && server.connections[1].received.length === 3, 5000, 'the second connection')
  t.same(server.connections[1].received.map((message) => message.type), ['realtime.subscribe', 'realtime.subscribe', 'note'])
})

t.test('a refused subscription rejects ready with the server\'s code and is forgotten; unsubscribe tells the server', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket) => {
    if (message.type !== 'realtime.subscribe') return
    if (message.data.topic === 'secret') {
      socket.send(JSON.stringify({ type: 'error', id: message.id, error: { code: 'FORBIDDEN', message: 'no' } }))
    }
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const secret = rt.subscribe('secret')
  const error: RealtimeClientError = await secret.ready.catch((err) => err)
  t.equal(error.code, 'FORBIDDEN')
  t.not(rt.subscribe('secret'), secret, 'a new subscription')
  const open = rt.subscribe('open')
  open.unsubscribe()
  open.unsubscribe()
  t.equal((await open.ready.catch((err) => err)).code, 'CLOSED')
  await until(() => server.connections[0].received.some((message) => message.type === 'realtime.unsubscribe'), 5000, 'the unsubscribe')
  t.same(server.connections[0].received.at(-1), { type: 'realtime.unsubscribe', data: { topic: 'open' } })
  const offline = createWsClient(server.url, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  offline.subscribe('x').unsubscribe()
  offline.close()
})

t.test('junk from the server is ignored: binary, bad JSON, unknown types, answers to nothing', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket) => {
    socket.send(Buffer.from('binary'))
    for (const junk of ['not json', 'null', '7', '{"type":"nope"}', '{"type":"reply","id":999}', '{"type":"error"}', '{"type":"hello","data":{}}']) socket.send(junk)
    if (message.type === 'odd') socket.send(JSON.stringify({ type: 'error', id: message.id }))
    else socket.send(JSON.stringify({ type: 'reply', id: message.id, data: 'fine' }))
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  t.equal(await rt.request('x', null), 'fine')
  const error = await rt.request('odd', null).catch((err: RealtimeClientError) => err) as RealtimeClientError
  t.equal(error.name, 'RealtimeClientError')
  t.equal(rt.state, 'open')
})

t.test('app-level ping: answered, the connection stays; unanswered, it is dropped and reconnected', async (t) => {
  const answering = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket) => {
    if (message.type === 'realtime.ping') socket.send(JSON.stringify({ type: 'reply', id: message.id, data: {} }))
  })
  const alive = createWsClient(answering.url, { WebSocket: NodeWebSocket, pingIntervalMs: 10 })
  t.teardown(() => alive.close())
  await until(() => answering.connections[0]?.received.length >= 5, 5000, 'five pings')
  t.equal(answering.connections.length, 1)

  const silent = await peer(t, (socket, index, { hello }) => hello(socket))
  const dead = createWsClient(silent.url, { WebSocket: NodeWebSocket, pingIntervalMs: 10, backoff: FAST })
  t.teardown(() => dead.close())
  const changes = states(dead)
  await until(() => silent.connections.length >= 2, 5000, 'a reconnect')
  t.equal(changes[1].state, 'reconnecting')
  t.equal(changes[1].code, 1006)
})

t.test('a server that selected realtime.v1 but sends no hello: the attempt times out and backs off', async (t) => {
  const server = await peer(t, () => {})
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, connectTimeoutMs: 30, backoff: FAST })
  t.teardown(() => rt.close())
  await until(() => server.connections.length >= 2, 5000, 'a second attempt')
  t.equal(rt.state === 'open', false)
})

t.test('a subscription in flight when the connection drops is sent again, and becomes ready once', async (t) => {
  const server = await peer(t, (socket, index, { hello }) => hello(socket), (message, socket, index) => {
    if (message.type !== 'realtime.subscribe') return
    if (index === 0) socket.close(1011)
    else socket.send(JSON.stringify({ type: 'reply', id: message.id, data: { topic: 'lobby', position: '3-0', resumed: false } }))
  })
  const rt = createWsClient(server.url, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const lobby = rt.subscribe('lobby')
  t.same(await lobby.ready, { resumed: false })
  t.equal(server.connections.length, 2)
  t.equal(lobby.lastId, '3-0')
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
