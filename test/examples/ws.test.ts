// The WebSocket examples, driven through the builders they export. They import the built package
// (dist/), so `npm run build` must run first (npm test does).
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createWsClient } from 'fastify-realtime/client'
import { CLIENT_URL } from '../../examples/browser-client.js'
import { build as buildChat, type chatContract } from '../../examples/chat.js'
import { build as buildEcho, WELCOME } from '../../examples/echo-secure.js'
import { connectWS, injectSSE, type ConnectWSOptions, type ConnectedWS } from '../../lib/testing/index.js'
import { nextPosition } from '../helpers/index.js'

type App = Parameters<typeof connectWS>[0]

/**
 * Readies an app, closes it after the test, and connects `connectWS` clients to it. Clients still
 * open at the end are dropped before the app closes: over injectWS, a graceful close only ends
 * when ws's close timeout (1 s) passes, since the in-memory stream never emits 'close'.
 */
async function harness (t: Test, app: App) {
  const clients: ConnectedWS[] = []
  t.teardown(async () => {
    for (const client of clients) client.socket.terminate()
    await app.close()
  })
  await app.ready()
  return {
    app,
    async connect (url: string, options?: ConnectWSOptions): Promise<ConnectedWS> {
      const ws = await connectWS(app, url, options)
      clients.push(ws)
      return ws
    }
  }
}

/** The promise's rejection reason, or undefined when it resolves: for asserting on error frames. */
function rejection (promise: Promise<unknown>): Promise<any> {
  return promise.then(() => undefined, (err: unknown) => err)
}

/** A log destination whose `line(msg)` resolves once a line with that `msg` is written. */
function logWatcher () {
  const lines: Array<Record<string, any>> = []
  const waiters: Array<{ msg: string, resolve: (line: Record<string, any>) => void }> = []
  return {
    stream: {
      write (text: string) {
        const line = JSON.parse(text)
        lines.push(line)
        for (const waiter of waiters.filter((candidate) => candidate.msg === line.msg)) {
          waiters.splice(waiters.indexOf(waiter), 1)
          waiter.resolve(line)
        }
      }
    },
    line (msg: string): Promise<Record<string, any>> {
      const seen = lines.find((line) => line.msg === msg)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve) => waiters.push({ msg, resolve }))
    }
  }
}

/** A real `ws` client's frames, parsed, in order; a wait rejects once the socket has closed. */
function framesOf (socket: WebSocket): () => Promise<any> {
  const frames: any[] = []
  const waiters: Array<{ resolve: (frame: any) => void, reject: (err: Error) => void }> = []
  let closed = false
  socket.on('message', (data) => {
    const frame = JSON.parse(String(data))
    const waiter = waiters.shift()
    if (waiter === undefined) frames.push(frame)
    else waiter.resolve(frame)
  })
  socket.on('close', () => {
    closed = true
    for (const waiter of waiters.splice(0)) waiter.reject(new Error('the socket closed'))
  })
  return () => {
    if (frames.length > 0) return Promise.resolve(frames.shift())
    if (closed) return Promise.reject(new Error('the socket closed'))
    return new Promise((resolve, reject) => waiters.push({ resolve, reject }))
  }
}

t.test('echo: a client is welcomed on connect', async (t) => {
  const { app } = await harness(t, await buildEcho())
  // connectWS attaches its listeners once the upgrade has resolved, too late for a frame sent in
  // onOpen: read from the first frame with injectWS's onInit instead.
  let resolveFirst!: (frame: unknown) => void
  const first = new Promise((resolve) => { resolveFirst = resolve })
  const socket = await app.injectWS('/echo', {}, {
    onInit (ws) { ws.once('message', (data) => resolveFirst(JSON.parse(String(data)))) }
  })
  t.same(await first, { type: 'event', event: 'welcome', data: { text: WELCOME } })
  socket.terminate()
})

t.test('echo: every message comes back as "Server received: <text>"', async (t) => {
  const { connect } = await harness(t, await buildEcho())
  const ws = await connect('/echo', { protocols: ['realtime.v1'] })
  t.same(await ws.request('echo', { text: 'hi' }), { text: 'Server received: hi' })
  t.same(await ws.request('echo', { text: '' }), { text: 'Server received: ' })
  t.same(await ws.request('echo', { text: 'ünïcødé ✓' }), { text: 'Server received: ünïcødé ✓' })
})

t.test('echo: the contract bounds a message to 1000 characters', async (t) => {
  const { connect } = await harness(t, await buildEcho())
  const ws = await connect('/echo')
  t.same(await ws.request('echo', { text: 'x'.repeat(1000) }), { text: `Server received: ${'x'.repeat(1000)}` })
  t.match(await rejection(ws.request('echo', { text: 'x'.repeat(1001) })), { code: 'VALIDATION', details: [{ path: '/text' }] })
  t.match(await rejection(ws.request('shout', { text: 'hi' })), { code: 'UNKNOWN_TYPE' })
})

t.test('echo: connects and disconnects are logged with the request', async (t) => {
  const logs = logWatcher()
  const { connect } = await harness(t, await buildEcho({ logger: { level: 'info', stream: logs.stream } }))
  const ws = await connect('/echo')
  const connected = await logs.line('echo: client connected')
  t.type(connected.reqId, 'string', 'logged with the request logger')
  await ws.close(1000)
  const disconnected = await logs.line('echo: client disconnected')
  t.equal(disconnected.connection, connected.connection)
  t.equal(disconnected.code, 1000, 'with the code the client closed with')
})

t.test('echo: public, yet a page of another site is refused by the default origin policy', async (t) => {
  const { connect } = await harness(t, await buildEcho())
  t.match(await rejection(connect('/echo', { headers: { origin: 'https://elsewhere.example' } })), { statusCode: 403 })
  const ws = await connect('/echo', { headers: { host: '127.0.0.1:3002', origin: 'https://127.0.0.1:3002' } })
  t.same(await ws.request('echo', { text: 'hi' }), { text: 'Server received: hi' }, 'a page of the same host is fine')
})

t.test('echo: over a real wss:// connection, verified against the shipped certificate', async (t) => {
  const app = await buildEcho({ https: true })
  t.teardown(() => app.close())
  const address = await app.listen({ port: 0, host: '127.0.0.1' })
  t.match(address, /^https:\/\/127\.0\.0\.1:\d+$/)
  const ca = readFileSync(new URL('../../examples/certs/test-only-cert.pem', import.meta.url))
  const socket = new WebSocket(`${address.replace('https:', 'wss:')}/echo`, 'realtime.v1', { ca })
  const next = framesOf(socket)
  await new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('error', reject)
  })
  t.equal(socket.protocol, 'realtime.v1')
  t.match(await next(), { type: 'hello', data: { connectionId: String, heartbeatMs: 30000, maxPayload: Number, expiresAt: null } }, 'realtime.v1: the hello first')
  t.same(await next(), { type: 'event', event: 'welcome', data: { text: WELCOME } })
  socket.send(JSON.stringify({ type: 'echo', id: 7, data: { text: 'hi' } }))
  t.same(await next(), { type: 'reply', id: 7, data: { text: 'Server received: hi' } })
  const closed = new Promise((resolve) => socket.once('close', resolve))
  socket.close(1000)
  t.equal(await closed, 1000)
})

t.test('echo: the page opens wss://<its host>/echo with realtime.v1', async (t) => {
  const { app } = await harness(t, await buildEcho())
  const response = await app.inject('/')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/html/)
  t.match(response.body, "new WebSocket('wss://' + location.host + '/echo', 'realtime.v1')")
  for (const id of ['input', 'send', 'messages', 'status']) t.match(response.body, `id="${id}"`, id)
})

async function login (app: App, name: string): Promise<string> {
  const response = await app.inject({ method: 'POST', url: '/chat/login', payload: { name } })
  if (response.statusCode !== 200) throw new Error(`login of ${name}: ${response.statusCode} ${response.body}`)
  return response.json().token
}

/**
 * Enters a room as the chat page does: subscribes to the room's topic (resuming after `after`),
 * then says it is present. Resolves with the join's reply.
 */
async function enter (ws: ConnectedWS, room: string, after?: string): Promise<unknown> {
  await ws.request('realtime.subscribe', after === undefined ? { topic: `room:${room}` } : { topic: `room:${room}`, after })
  return ws.request('join', { room })
}

/** A chat app for one test: `join(token)` opens a socket as a browser does, `signIn(name)` logs in first. */
async function chatHarness (t: Test) {
  const { app, connect } = await harness(t, await buildChat())
  const join = (token: string): Promise<ConnectedWS> => connect('/chat/ws', { protocols: ['realtime.v1', `bearer.${token}`] })
  return { app, connect, join, signIn: async (name: string) => join(await login(app, name)) }
}

/** The members in the next presence event a client gets. */
async function membersSeenBy (ws: ConnectedWS): Promise<string[]> {
  return ((await ws.nextEvent('presence')).data as { members: string[] }).members
}

// A client that vanishes (code 1006) goes through onClose like one that says goodbye, without
// waiting out ws's close timeout under injectWS.
const disconnect = (ws: ConnectedWS): void => ws.socket.terminate()

t.test('chat: login returns a fresh token for a valid name', async (t) => {
  const { app } = await chatHarness(t)
  const response = await app.inject({ method: 'POST', url: '/chat/login', payload: { name: 'ann' } })
  t.equal(response.statusCode, 200)
  const { token, name } = response.json()
  t.match(token, /^[0-9a-f]{32}$/)
  t.equal(name, 'ann')
  t.not(await login(app, 'ann'), token, 'each sign-in gets its own token')
  for (const bad of ['', 'a b', 'x'.repeat(25), '<script>']) {
    const refused = await app.inject({ method: 'POST', url: '/chat/login', payload: { name: bad } })
    t.equal(refused.statusCode, 400, JSON.stringify(bad))
  }
})

t.test('chat: no token, an unknown one, or one in the query string gets 401 before the upgrade', async (t) => {
  const { app, connect } = await chatHarness(t)
  const token = await login(app, 'ann')
  t.match(await rejection(connect('/chat/ws')), { statusCode: 401 })
  t.match(await rejection(connect('/chat/ws', { protocols: ['realtime.v1', 'bearer.0123'] })), { statusCode: 401 })
  t.match(await rejection(connect(`/chat/ws?token=${token}`)), { statusCode: 401 })
  t.match(await rejection(connect(`/chat/ws?access_token=${token}`, { protocols: ['realtime.v1'] })), { statusCode: 401 })
  const ws = await connect('/chat/ws', { headers: { authorization: `Bearer ${token}` } })
  t.same(await ws.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann'] }, 'Authorization: Bearer works too')
})

t.test('chat: members of a room get each other\'s messages and presence', async (t) => {
  const { signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  const bob = await signIn('bob')

  t.same(await enter(ann, 'lobby'), { room: 'lobby', members: ['ann'] })
  t.match(await ann.nextEvent('presence'), { data: { room: 'lobby', members: ['ann'] }, topic: 'room:lobby', id: /^\d+-\d+$/ })
  t.same(await enter(bob, 'lobby'), { room: 'lobby', members: ['ann', 'bob'] })
  t.same((await ann.nextEvent('presence')).data, { room: 'lobby', members: ['ann', 'bob'] })
  t.same((await bob.nextEvent('presence')).data, { room: 'lobby', members: ['ann', 'bob'] })

  const { id } = await bob.request('say', { room: 'lobby', text: 'hi ann' }) as { id: string }
  t.match(id, /^\d+-\d+$/, 'say replies with the event id')
  const expected = { event: 'message', data: { room: 'lobby', user: 'bob', text: 'hi ann' }, topic: 'room:lobby', id }
  t.same(await ann.nextEvent('message'), expected)
  t.same(await bob.nextEvent('message'), expected, 'the speaker gets it too')
})

t.test('chat: rooms are separate topics', async (t) => {
  const { signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  const bob = await signIn('bob')
  await enter(ann, 'lobby')
  await enter(bob, 'help')
  await bob.request('say', { room: 'help', text: 'anyone?' })
  const { id } = await ann.request('say', { room: 'lobby', text: 'only lobby' }) as { id: string }
  t.match(await ann.nextEvent('message'), { id, topic: 'room:lobby' }, 'the first message ann gets is her own, not help\'s')
  t.match(await bob.nextEvent('message'), { topic: 'room:help', data: { text: 'anyone?' } })
})

t.test('chat: say needs a joined room, and room names are validated', async (t) => {
  const { signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  t.match(await rejection(ann.request('say', { room: 'lobby', text: 'hello?' })), { code: 'NOT_IN_ROOM', message: 'Join "lobby" before speaking there.' })
  t.match(await rejection(ann.request('join', { room: 'Not A Room' })), { code: 'VALIDATION', details: [{ path: '/room' }] })
  await enter(ann, 'lobby')
  t.match(await rejection(ann.request('say', { room: 'lobby', text: '' })), { code: 'VALIDATION', details: [{ path: '/text' }] })
})

t.test('chat: leaving, or disconnecting, updates presence', async (t) => {
  const { signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  const bob = await signIn('bob')
  await enter(ann, 'lobby')
  await enter(bob, 'lobby')
  t.same(await membersSeenBy(ann), ['ann'])
  t.same(await membersSeenBy(ann), ['ann', 'bob'])

  t.equal(await bob.request('leave', { room: 'lobby' }), undefined, 'leave replies without data')
  t.same((await ann.nextEvent('presence')).data, { room: 'lobby', members: ['ann'] }, 'bob left')
  t.match(await rejection(bob.request('say', { room: 'lobby', text: 'still here?' })), { code: 'NOT_IN_ROOM' })

  await enter(bob, 'lobby')
  t.same(await membersSeenBy(ann), ['ann', 'bob'])
  disconnect(bob)
  t.same((await ann.nextEvent('presence')).data, { room: 'lobby', members: ['ann'] }, 'bob disconnected')
})

t.test('chat: a name in two tabs is listed once, until its last tab leaves', async (t) => {
  const { app, join, signIn } = await chatHarness(t)
  const token = await login(app, 'ann')
  const tab1 = await join(token)
  const tab2 = await join(token)
  const bob = await signIn('bob')
  await enter(tab1, 'lobby')
  await enter(tab2, 'lobby')
  t.same(await enter(bob, 'lobby'), { room: 'lobby', members: ['ann', 'bob'] })
  t.same(await membersSeenBy(bob), ['ann', 'bob'], 'bob\'s own arrival')
  disconnect(tab1)
  t.same(await membersSeenBy(bob), ['ann', 'bob'], 'the first tab closed: ann is still there')
  disconnect(tab2)
  t.same(await membersSeenBy(bob), ['bob'])
})

t.test('chat: a room subscribed with `after` replays what was said while disconnected, then the reply, then live', async (t) => {
  const { app, join, signIn } = await chatHarness(t)
  const token = await login(app, 'ann')
  const bob = await signIn('bob')
  await enter(bob, 'lobby')
  const ann = await join(token)
  await enter(ann, 'lobby')
  const lastSeen = await ann.nextEvent('presence')
  disconnect(ann)
  t.same(await membersSeenBy(bob), ['bob'], 'bob\'s own arrival')
  t.same(await membersSeenBy(bob), ['ann', 'bob'])
  t.same(await membersSeenBy(bob), ['bob'], 'ann has left')
  const { id } = await bob.request('say', { room: 'lobby', text: 'you missed this' }) as { id: string }

  const back = await join(token)
  await back.nextFrame('hello')
  back.sendRaw(JSON.stringify({ type: 'realtime.subscribe', id: 1, data: { topic: 'room:lobby', after: lastSeen.id } }))
  t.match(await back.nextFrame(), { type: 'event', event: 'presence', data: { members: ['bob'] } }, 'first, replayed: ann\'s own departure')
  t.same(await back.nextFrame(), {
    type: 'event', event: 'message', data: { room: 'lobby', user: 'bob', text: 'you missed this' }, topic: 'room:lobby', id
  }, 'then the message, with its id')
  t.same(await back.nextFrame(), { type: 'reply', id: 1, data: { topic: 'room:lobby', position: id, resumed: true } }, 'then the reply')
  t.same(await back.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann', 'bob'] }, 'then ann says she is back')
  t.match(await back.nextEvent('presence'), { data: { members: ['ann', 'bob'] } }, 'live')
})

t.test('chat: a client may subscribe to rooms only; any other topic, or a bad room name, is FORBIDDEN', async (t) => {
  const { signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  t.match(await ann.request('realtime.subscribe', { topic: 'room:lobby' }), { topic: 'room:lobby', resumed: false, position: /^\d+-\d+$/ })
  for (const topic of ['secret', 'ticks', 'room:', 'room:Not-A-Room', `room:${'x'.repeat(33)}`, 'room:lobby:extra']) {
    t.match(await rejection(ann.request('realtime.subscribe', { topic })), { code: 'FORBIDDEN' }, topic)
  }
  t.match(await rejection(ann.request('realtime.subscribe', { topic: 'room:Not A Room' })), { code: 'VALIDATION' }, 'not a topic name at all')
})

t.test('chat: the client of the header\'s poke, from Node over a real socket', async (t) => {
  const app = await buildChat()
  t.teardown(() => app.close())
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const token = await login(app, 'ann')
  const rt = createWsClient<typeof chatContract>(`${url.replace('http:', 'ws:')}/chat/ws`, { WebSocket, token: () => token })
  t.teardown(() => rt.close())
  const lobby = rt.subscribe('room:lobby')
  const message = new Promise<{ id?: string, text: string }>((resolve) => lobby.on('message', ({ text }, { id }) => resolve({ id, text })))
  t.same(await rt.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann'] })
  const { id } = await rt.request('say', { room: 'lobby', text: 'hi from node' })
  t.same(await lobby.ready, { resumed: false })
  t.same(await message, { id, text: 'hi from node' })
  t.match(await rt.subscribe('secret').ready.catch((error: unknown) => error), { code: 'FORBIDDEN' })
  rt.close()
  t.match(await rt.closed, { code: 1000 })
})

t.test('chat: the SSE view of a room sees the same events, with the same ids, and resumes', async (t) => {
  const { app, signIn } = await chatHarness(t)
  const ann = await signIn('ann')
  await enter(ann, 'lobby')
  const joined = await ann.nextEvent('presence')
  const said = await ann.request('say', { room: 'lobby', text: 'hello, readers' }) as { id: string }
  const message = await ann.nextEvent('message')
  t.same(message, { event: 'message', data: { room: 'lobby', user: 'ann', text: 'hello, readers' }, topic: 'room:lobby', id: said.id })

  // From the presence event on: the view replays what came after it, then goes live.
  const view = await injectSSE(app, { url: '/chat/rooms/lobby/events', lastEventId: joined.id })
  t.equal(view.statusCode, 200)
  t.equal(view.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.same(await view.next(), { event: 'message', data: JSON.stringify(message.data), id: said.id }, 'replayed: the WebSocket event, as SSE')
  t.equal(await nextPosition(view), said.id, 'then the position')
  const live = await ann.request('say', { room: 'lobby', text: 'live' }) as { id: string }
  t.same(await view.next(), { event: 'message', data: JSON.stringify((await ann.nextEvent('message')).data), id: live.id }, 'live')
  await view.close()

  const missed = await ann.request('say', { room: 'lobby', text: 'while the view was away' }) as { id: string }
  const resumed = await injectSSE(app, { url: '/chat/rooms/lobby/events', lastEventId: view.lastEventId })
  t.match(await resumed.next(), { event: 'message', id: missed.id }, 'resumed after the Last-Event-ID, no gap')
  t.equal(await nextPosition(resumed), missed.id)
  await resumed.close()
})

t.test('chat: the SSE view validates the room name', async (t) => {
  const { app } = await chatHarness(t)
  t.equal((await app.inject('/chat/rooms/Not%20A%20Room/events')).statusCode, 400)
  t.equal((await app.inject(`/chat/rooms/${'x'.repeat(33)}/events`)).statusCode, 400)
})

t.test('chat: the pages', async (t) => {
  const { app } = await chatHarness(t)
  const chat = await app.inject('/chat')
  t.equal(chat.statusCode, 200)
  t.match(chat.headers['content-type'], /^text\/html/)
  t.match(chat.body, `import { createWsClient } from '${CLIENT_URL}'`)
  t.match(chat.body, "rt = createWsClient(scheme + location.host + '/chat/ws', {")
  t.match(chat.body, "rt.subscribe('room:' + room, { after: before?.lastId })")
  t.notMatch(chat.body, /new WebSocket|JSON\.parse|setTimeout|pending/, 'no hand-written frames, pending requests or reconnect timer')
  t.notMatch(chat.body, /[?&]token=/, 'never a token in a URL')
  const view = await app.inject('/chat/view?room=help')
  t.equal(view.statusCode, 200)
  t.match(view.body, `import { createSseClient } from '${CLIENT_URL}'`)
  t.match(view.body, 'createSseClient(url)')
  t.notMatch(view.body, 'new EventSource')
  t.equal((await app.inject(CLIENT_URL)).statusCode, 200, 'the client they import is served')
  t.equal((await app.inject('/chat/view?room=Not%20A%20Room')).statusCode, 400)
})
