// @ts-check
// A chat: sign in with a name, join rooms, talk. Each room is a topic, so a message is published
// once and reaches every member's WebSocket and every read-only SSE view of the room, with the
// same id, typed and validated by one contract for both transports.
// - POST /chat/login {"name"} -> {"token","name"}: tokens live in memory (a restart signs everyone out;
//   examples/cluster.js keeps them, and who is in which room, in Redis for several instances).
// - GET /chat/ws: the socket. Messages `join` {room, after?}, `leave` {room}, `say` {room, text};
//   events `message` and `presence` (who is in the room, published on every join and leave).
//   The token travels as a subprotocol next to realtime.v1 (a browser cannot set headers on a
//   WebSocket, and a token in the query string ends up in logs); no valid token, no upgrade: 401.
// - GET /chat/rooms/:room/events: the room as SSE, read-only and public; resumes by Last-Event-ID.
// - GET /chat and /chat/view?room=lobby: the pages.
//
// Run:  npm start   (then open http://127.0.0.1:3000/chat in two windows, and a read-only view)
// Poke: curl -N http://127.0.0.1:3000/chat/rooms/lobby/events
//       TOKEN=$(curl -s -H 'content-type: application/json' -d '{"name":"ann"}' http://127.0.0.1:3000/chat/login \
//         | node -p 'JSON.parse(require("fs").readFileSync(0)).token')
//       node -e "
//         const socket = new (require('ws'))('ws://127.0.0.1:3000/chat/ws', ['realtime.v1', 'bearer.$TOKEN'])
//         socket.on('message', (frame) => console.log(String(frame)))
//         socket.on('open', () => {
//           socket.send(JSON.stringify({ type: 'join', id: 1, data: { room: 'lobby' } }))
//           socket.send(JSON.stringify({ type: 'say', id: 2, data: { room: 'lobby', text: 'hi from node' } }))
//         })"
//       (the curl above sees ann's presence and message; without a token the upgrade gets a 401)

import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { bearerToken, defineContract, fastifySse, fastifyWs, publicError } from 'fastify-realtime'
import { HTML, page } from './page.js'

const Room = Type.String({ pattern: '^[a-z0-9-]{1,32}$' })
const Name = Type.String({ pattern: '^[A-Za-z0-9_-]{1,24}$' })
const Members = Type.Array(Name)

export const chatContract = defineContract({
  events: {
    message: Type.Object({ room: Room, user: Name, text: Type.String() }),
    presence: Type.Object({ room: Room, members: Members })
  },
  messages: {
    // `after`: the last event id seen in the room, to replay what was missed while disconnected.
    join: Type.Object({ room: Room, after: Type.Optional(Type.String({ maxLength: 64 })) }),
    leave: Type.Object({ room: Room }),
    say: Type.Object({ room: Room, text: Type.String({ minLength: 1, maxLength: 2000 }) })
  },
  replies: {
    join: Type.Object({ room: Room, members: Members }),
    say: Type.Object({ id: Type.String() })
  }
})

/** @typedef {{ name: string }} ChatUser */
/** @typedef {import('fastify-realtime').Connection<typeof chatContract>} ChatConnection */

/**
 * Who is signed in: `create` issues a token for a name, `verify` answers the user of a token or null.
 * @typedef {object} ChatSessions
 * @property {(name: string) => Promise<string>} create
 * @property {(token: string) => Promise<ChatUser | null>} verify
 */

/**
 * Who is in which room, by connection: each call answers the room's member names afterwards,
 * sorted, each name once however many tabs it has open.
 * @typedef {object} ChatPresence
 * @property {(room: string, connectionId: string, name: string) => Promise<string[]>} add
 * @property {(room: string, connectionId: string) => Promise<string[]>} remove
 * @property {(room: string) => Promise<string[]>} members
 */

/**
 * @typedef {object} ChatOptions
 * @property {ChatSessions} [sessions] default: {@link memorySessions}
 * @property {ChatPresence} [presence] default: {@link memoryPresence}
 */

/**
 * Sessions in this process's memory: a random token per sign-in, forgotten on restart.
 * @returns {ChatSessions}
 */
export function memorySessions () {
  /** @type {Map<string, ChatUser>} by token */
  const users = new Map()
  return {
    async create (name) {
      const token = randomBytes(16).toString('hex')
      users.set(token, { name })
      return token
    },
    async verify (token) {
      return users.get(token) ?? null
    }
  }
}

/**
 * Presence in this process's memory: right for one instance, which sees every connection.
 * @returns {ChatPresence}
 */
export function memoryPresence () {
  /** @type {Map<string, Map<string, string>>} room -> connection id -> name */
  const rooms = new Map()
  /** @param {string} room */
  const membersOf = (room) => [...new Set(rooms.get(room)?.values())].sort()
  return {
    async add (room, connectionId, name) {
      const present = rooms.get(room) ?? new Map()
      rooms.set(room, present.set(connectionId, name))
      return membersOf(room)
    },
    async remove (room, connectionId) {
      const present = rooms.get(room)
      if (present?.delete(connectionId) === true && present.size === 0) rooms.delete(room)
      return membersOf(room)
    },
    async members (room) {
      return membersOf(room)
    }
  }
}

/**
 * Routes: POST /chat/login; GET /chat, /chat/view, /chat/ws, /chat/rooms/:room/events.
 * Needs `fastifySse` and `fastifyWs` registered on a parent (sharing one `fastify.realtime`).
 * @param {import('fastify').FastifyInstance} fastify
 * @param {ChatOptions} options
 */
export default async function chat (fastify, { sessions = memorySessions(), presence = memoryPresence() } = {}) {
  /** @type {Map<string, Set<string>>} connection id -> the rooms it joined; a connection lives on this instance */
  const joined = new Map()
  /** @type {Set<Promise<void>>} departures still being published: app.close() waits for them */
  const leaving = new Set()

  /** @param {string} room */
  const roomTopic = (room) => fastify.realtime.topic(`room:${room}`, { contract: chatContract })
  /** @param {ChatConnection} conn */
  const nameOf = (conn) => /** @type {ChatUser} */ (conn.user).name

  /**
   * @param {ChatConnection} conn
   * @param {string} room
   */
  async function removeMember (conn, room) {
    const rooms = joined.get(conn.id)
    if (rooms === undefined || !rooms.delete(room)) return
    if (rooms.size === 0) joined.delete(conn.id)
    const members = await presence.remove(room, conn.id)
    await roomTopic(room).publish('presence', { room, members })
  }

  // onClose hooks run in reverse order: this one before those of the parent that registered the
  // chat, which may close the broker, so the departures of the sockets app.close() ended still go out.
  fastify.addHook('onClose', async () => { await Promise.allSettled(leaving) })

  fastify.post('/chat/login', {
    schema: {
      body: Type.Object({ name: Name }),
      response: { 200: Type.Object({ token: Type.String(), name: Name }) }
    }
  }, async (request) => {
    const { name } = /** @type {ChatUser} */ (request.body)
    return { token: await sessions.create(name), name }
  })

  fastify.ws('/chat/ws', {
    contract: chatContract,
    authenticate: async (request) => {
      const token = bearerToken(request)
      return token === undefined ? null : sessions.verify(token)
    },
    handlers: {
      async join ({ room, after }, conn) {
        const topic = roomTopic(room)
        // Subscribed first, so the joiner gets its own presence event, and replayed from `after`.
        await conn.subscribe(topic, { after })
        // Closed meanwhile: onClose has run, so a member added now would never be removed.
        if (conn.signal.aborted) return { room, members: await presence.members(room) }
        joined.set(conn.id, (joined.get(conn.id) ?? new Set()).add(room))
        const members = await presence.add(room, conn.id, nameOf(conn))
        await topic.publish('presence', { room, members })
        return { room, members }
      },
      async leave ({ room }, conn) {
        conn.unsubscribe(roomTopic(room))
        await removeMember(conn, room)
      },
      async say ({ room, text }, conn) {
        if (joined.get(conn.id)?.has(room) !== true) throw publicError('NOT_IN_ROOM', `Join "${room}" before speaking there.`)
        return { id: await roomTopic(room).publish('message', { room, user: nameOf(conn), text }) }
      }
    },
    onClose (conn) {
      for (const room of [...joined.get(conn.id) ?? []]) {
        const departure = removeMember(conn, room)
          .catch((err) => conn.log.warn({ err, room }, 'chat: cannot publish the presence of a closed connection'))
          .finally(() => leaving.delete(departure))
        leaving.add(departure)
      }
    }
  })

  fastify.get('/chat/rooms/:room/events', {
    sse: { contract: chatContract },
    schema: { params: Type.Object({ room: Room }) }
  }, async (request, reply) => {
    const { room } = /** @type {{ room: string }} */ (request.params)
    const stream = reply.sse({ retry: 1000 })
    // Replays what came after the browser's Last-Event-ID, then goes live: no gap, no duplicate.
    await stream.subscribe(roomTopic(room))
    return reply
  })

  fastify.get('/chat', (request, reply) => reply.type(HTML).send(chatPage))
  fastify.get('/chat/view', {
    schema: { querystring: Type.Object({ room: Type.Optional(Room) }) }
  }, (request, reply) => reply.type(HTML).send(viewPage))
}

/**
 * A standalone app serving this example, for tests and embedding.
 * @param {{ logger?: import('fastify').FastifyServerOptions['logger'] }} [options]
 */
export async function build ({ logger = false } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifySse)
  await app.register(fastifyWs)
  await app.register(chat)
  return app
}

const chatPage = page('Chat: rooms over WebSocket', `
<p>Sign in, join a room, talk; open a second window to talk to yourself. Rooms are topics: the
<a id="view" href="/chat/view?room=lobby">read-only view</a> of a room gets the same events over SSE.</p>
<form id="login">
  <input id="name" required pattern="[A-Za-z0-9_\\-]{1,24}" placeholder="your name" aria-label="Name" autocomplete="off">
  <button id="sign-in" type="submit">Sign in</button>
</form>
<form id="join" hidden>
  <input id="room" list="rooms" value="lobby" required pattern="[a-z0-9\\-]{1,32}" aria-label="Room">
  <datalist id="rooms"><option value="lobby"><option value="random"><option value="help"></datalist>
  <button id="join-room" type="submit">Join</button>
</form>
<p>Status: <output id="status">signed out</output></p>
<p>In the room: <output id="members"></output></p>
<ol id="messages"></ol>
<form id="say" hidden>
  <input id="input" required maxlength="2000" size="40" autocomplete="off" aria-label="Message">
  <button id="send" type="submit">Send</button>
</form>
<script>
  const $ = (id) => document.getElementById(id)
  const pending = new Map()
  let name, token, socket, room, lastId
  let nextId = 0

  function show (text) {
    const item = document.createElement('li')
    item.textContent = text
    $('messages').append(item)
    $('messages').scrollTop = $('messages').scrollHeight
  }
  const status = (text) => { $('status').textContent = text }

  function request (type, data) {
    const id = ++nextId
    socket.send(JSON.stringify({ type, id, data }))
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }))
  }

  function connect () {
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
    // The token rides as a second subprotocol; the server selects realtime.v1 and never echoes the token.
    socket = new WebSocket(scheme + location.host + '/chat/ws', ['realtime.v1', 'bearer.' + token])
    let opened = false
    socket.onopen = () => {
      opened = true
      status('connected as ' + name)
      if (room) enter(room)
    }
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data)
      if (frame.type === 'reply' || frame.type === 'error') {
        const waiter = pending.get(frame.id)
        pending.delete(frame.id)
        if (frame.type === 'reply') waiter.resolve(frame.data)
        else waiter.reject(frame.error)
      } else if (frame.type === 'reset') {
        show('(the history since you left is gone: live from here)')
      } else if (frame.type === 'event' && frame.topic === 'room:' + room) {
        lastId = frame.id
        if (frame.event === 'message') show(frame.data.user + ': ' + frame.data.text)
        else if (frame.event === 'presence') $('members').textContent = frame.data.members.join(', ')
      }
    }
    socket.onclose = (event) => {
      for (const waiter of pending.values()) waiter.reject({ code: 'CLOSED', message: 'the connection closed' })
      pending.clear()
      if (!opened) {
        // The upgrade was refused: the server forgot the token (a restart), or it is down.
        status('not connected: sign in again')
        $('login').hidden = false
        $('join').hidden = $('say').hidden = true
        return
      }
      status('disconnected (' + event.code + '), reconnecting…')
      // The room is joined again with the last id seen: what was said meanwhile is replayed.
      setTimeout(connect, 1000)
    }
  }

  async function enter (next) {
    if (room !== next) {
      if (room) request('leave', { room }).catch(() => {})
      room = next
      lastId = undefined
      $('messages').replaceChildren()
      $('view').href = '/chat/view?room=' + encodeURIComponent(room)
    }
    try {
      const joined = await request('join', lastId === undefined ? { room } : { room, after: lastId })
      $('members').textContent = joined.members.join(', ')
      status('connected as ' + name + ', in ' + room)
    } catch (error) {
      show('cannot join: ' + error.message)
    }
  }

  $('login').onsubmit = async (submit) => {
    submit.preventDefault()
    const response = await fetch('/chat/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: $('name').value })
    })
    const body = await response.json()
    if (!response.ok) return status('sign-in refused: ' + body.message)
    ;({ name, token } = body)
    $('login').hidden = true
    $('join').hidden = false
    $('say').hidden = false
    status('connecting…')
    connect()
  }
  $('join').onsubmit = (submit) => {
    submit.preventDefault()
    enter($('room').value)
  }
  $('say').onsubmit = (submit) => {
    submit.preventDefault()
    request('say', { room, text: $('input').value })
      .then(() => { $('input').value = '' }, (error) => show('not sent: ' + error.message))
  }
</script>`)

const viewPage = page('Chat: read-only view over SSE', `
<p>An <code>EventSource</code> on <code id="url"></code>: the same room, the same events and ids as
its WebSocket members get. When the connection drops, the browser resumes with
<code>Last-Event-ID</code> and misses nothing.</p>
<p>Status: <output id="status">connecting…</output></p>
<p>In the room: <output id="members">(known at the next join or leave)</output></p>
<ol id="messages"></ol>
<script>
  const $ = (id) => document.getElementById(id)
  const room = new URLSearchParams(location.search).get('room') || 'lobby'
  const url = '/chat/rooms/' + encodeURIComponent(room) + '/events'
  $('url').textContent = url
  document.title = room + ' · ' + document.title

  function show (text) {
    const item = document.createElement('li')
    item.textContent = text
    $('messages').append(item)
    $('messages').scrollTop = $('messages').scrollHeight
  }

  const source = new EventSource(url)
  let opened = false
  source.onopen = () => {
    $('status').textContent = 'open'
    if (opened) show('(reconnected: anything said meanwhile is replayed)')
    opened = true
  }
  source.onerror = () => {
    $('status').textContent = source.readyState === EventSource.CONNECTING ? 'reconnecting…' : 'closed'
  }
  source.addEventListener('message', (event) => {
    const { user, text } = JSON.parse(event.data)
    show(user + ': ' + text)
  })
  source.addEventListener('presence', (event) => {
    $('members').textContent = JSON.parse(event.data).members.join(', ')
  })
  source.addEventListener('realtime.reset', () => show('(the history since you left is gone: live from here)'))
</script>`)
