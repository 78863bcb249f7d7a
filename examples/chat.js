// @ts-check
// A chat: sign in with a name, enter rooms, talk. Each room is the topic `room:<name>`, so a
// message is published once and reaches every member's WebSocket and every read-only SSE view of
// the room, with the same id, typed and validated by one contract for both transports. The pages
// use fastify-realtime/client (served by ./browser-client.js): no hand-written frames, no reconnect
// loop, and every message exactly once across dropped connections and server restarts.
// - POST /chat/login {"name"} -> {"token","name"}: tokens live in memory (a restart signs everyone
//   out, and the page signs in again by itself; examples/cluster.js keeps them, and who is in which
//   room, in Redis for several instances).
// - GET /chat/ws: the socket. A client reads a room by subscribing to its topic itself
//   (`rt.subscribe('room:lobby', { after })`, the route's `topics` option says who may), and resumes
//   it after every reconnect from the last id it saw. Messages `join` {room} and `leave` {room} say
//   who is present (the `presence` event lists the room's members), `say` {room, text} talks.
//   The token travels as a subprotocol next to realtime.v1 (a browser cannot set headers on a
//   WebSocket, and a token in the query string ends up in logs); no valid token, no upgrade: 401.
// - GET /chat/rooms/:room/events: the room as SSE, read-only and public; resumes by Last-Event-ID.
// - GET /chat and /chat/view?room=lobby: the pages.
//
// Run:  npm start   (then open http://127.0.0.1:3000/chat in two windows, and a read-only view;
//       stop and start the server while they are open: they come back and miss nothing)
// Poke: curl -N http://127.0.0.1:3000/chat/rooms/lobby/events
//       TOKEN=$(curl -s -H 'content-type: application/json' -d '{"name":"ann"}' http://127.0.0.1:3000/chat/login \
//         | node -p 'JSON.parse(require("fs").readFileSync(0)).token')
//       node --input-type=module -e "
//         import WebSocket from 'ws'
//         import { createWsClient } from 'fastify-realtime/client'
//         const rt = createWsClient('ws://127.0.0.1:3000/chat/ws', { WebSocket, token: () => '$TOKEN' })
//         rt.subscribe('room:lobby').on('message', (data, { id }) => console.log(id, data))
//         console.log(await rt.request('join', { room: 'lobby' }))
//         console.log(await rt.request('say', { room: 'lobby', text: 'hi from node' }))"
//       (the curl above sees ann's presence and message; Ctrl-C, and it sees her leave; without a
//        token the upgrade gets a 401, and rt.subscribe('secret') is refused with FORBIDDEN)

import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { bearerToken, defineContract, fastifySse, fastifyWs, publicError } from 'fastify-realtime'
import browserClient, { CLIENT_URL } from './browser-client.js'
import { HTML, page } from './page.js'

const Room = Type.String({ pattern: '^[a-z0-9-]{1,32}$' })
const Name = Type.String({ pattern: '^[A-Za-z0-9_-]{1,24}$' })
const Members = Type.Array(Name)

/** The topics that are rooms (`room:` and a valid room name): what a client may subscribe to. */
const ROOM_TOPIC = /^room:[a-z0-9-]{1,32}$/

export const chatContract = defineContract({
  events: {
    message: Type.Object({ room: Room, user: Name, text: Type.String() }),
    presence: Type.Object({ room: Room, members: Members })
  },
  messages: {
    // Presence only: reading a room is a subscription to its topic, which the client resumes itself.
    join: Type.Object({ room: Room }),
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
 * Needs `fastifySse` and `fastifyWs` registered on a parent (sharing one `fastify.realtime`), and
 * ./browser-client.js registered once on the server for the pages.
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
    // The rooms a client may subscribe to (realtime.subscribe): any signed-in user reads any room
    // with a valid name. Any other topic, like a refusal, is answered FORBIDDEN.
    topics: {
      'room:*': { authorize: (conn, topic) => ROOM_TOPIC.test(topic) }
    },
    handlers: {
      async join ({ room }, conn) {
        // Closed meanwhile: onClose has run, so a member added now would never be removed.
        if (conn.signal.aborted) return { room, members: await presence.members(room) }
        joined.set(conn.id, (joined.get(conn.id) ?? new Set()).add(room))
        const members = await presence.add(room, conn.id, nameOf(conn))
        await roomTopic(room).publish('presence', { room, members })
        return { room, members }
      },
      async leave ({ room }, conn) {
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
  await app.register(browserClient)
  await app.register(chat)
  return app
}

const chatPage = page('Chat: rooms over WebSocket', `
<p>Sign in, enter a room, talk; open a second window to talk to yourself. Rooms are topics: the
page subscribes to <code>room:&lt;name&gt;</code> with <code>createWsClient</code>, which resumes
each room after a dropped connection or a server restart from the last id it saw, and the
<a id="view" href="/chat/view?room=lobby">read-only view</a> of a room gets the same events over SSE.</p>
<form id="login">
  <input id="name" required pattern="[A-Za-z0-9_\\-]{1,24}" placeholder="your name" aria-label="Name" autocomplete="off">
  <button id="sign-in" type="submit">Sign in</button>
</form>
<form id="join" hidden>
  <input id="room" list="rooms" value="lobby" required pattern="[a-z0-9\\-]{1,32}" aria-label="Room">
  <datalist id="rooms"><option value="lobby"><option value="random"><option value="help"></datalist>
  <button id="join-room" type="submit">Enter</button>
</form>
<p>Status: <output id="status">signed out</output></p>
<p>In the room: <output id="members"></output></p>
<ol id="messages"></ol>
<form id="say" hidden>
  <input id="input" required maxlength="2000" size="40" autocomplete="off" aria-label="Message">
  <button id="send" type="submit">Send</button>
</form>
<script type="module">
  import { createWsClient } from '${CLIENT_URL}'
  const $ = (id) => document.getElementById(id)
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://'
  /** What each room left showed, and the last id seen there: coming back replays what was said meanwhile. */
  const left = new Map()
  let name, token, rt, room, subscription

  function show (text, note = false) {
    const item = document.createElement('li')
    item.textContent = text
    if (note) item.className = 'note'
    $('messages').append(item)
    $('messages').scrollTop = $('messages').scrollHeight
  }
  const status = (text) => { $('status').textContent = text }

  async function signIn () {
    const response = await fetch('/chat/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name })
    })
    const body = await response.json()
    if (!response.ok) throw new Error('sign-in refused: ' + body.message)
    token = body.token
  }

  function connect () {
    rt = createWsClient(scheme + location.host + '/chat/ws', {
      // Asked before every attempt; sent as the bearer.<token> subprotocol. A browser cannot tell
      // a refused upgrade from a server that is down ('rejected' means either): sign in again, as
      // a restarted server has forgotten the token.
      async token ({ reason }) {
        if (reason === 'rejected') await signIn()
        return token
      }
    })
    window.rt = rt // for the curious, in the console: rt.state
    let opened = false
    rt.onState(({ state, code, retryInMs, error }) => {
      if (state === 'open') {
        // The client has resubscribed to the room, after the last id seen; presence is the
        // connection's, so it is said again.
        if (opened && room) show('(reconnected: what was said meanwhile follows)', true)
        opened = true
        status('connected as ' + name)
        if (room) announce()
      } else if (state === 'reconnecting') {
        status('disconnected' + (code ? ' (' + code + ')' : '') + ', reconnecting in ' + Math.round(retryInMs) + ' ms')
      } else if (state === 'closed') {
        status('closed' + (error ? ': ' + error.message : ''))
        $('login').hidden = false
        $('join').hidden = $('say').hidden = true
      }
    })
  }

  /** Tells the room this connection is in it: its reply lists the members. */
  async function announce () {
    try {
      const { members } = await rt.request('join', { room })
      $('members').textContent = members.join(', ')
      status('connected as ' + name + ', in ' + room)
    } catch (error) {
      show('cannot join: ' + error.message, true)
    }
  }

  async function enter (next) {
    if (next === room) return
    if (room) {
      left.set(room, { items: [...$('messages').children], lastId: subscription.lastId })
      subscription.unsubscribe()
      rt.send('leave', { room })
    }
    room = next
    const before = left.get(room)
    $('messages').replaceChildren(...(before?.items ?? []))
    $('members').textContent = ''
    $('view').href = '/chat/view?room=' + encodeURIComponent(room)
    if (before) show('(back in ' + room + ': what was said since you left follows)', true)
    subscription = rt.subscribe('room:' + room, { after: before?.lastId })
    subscription.on('message', ({ user, text }) => show(user + ': ' + text))
    subscription.on('presence', ({ members }) => { $('members').textContent = members.join(', ') })
    subscription.onReset(() => show('(the history since you left is gone: live from here)', true))
    try {
      await subscription.ready
    } catch (error) {
      show('cannot enter ' + next + ': ' + error.message, true)
      if (room === next) room = subscription = undefined
      return
    }
    // While disconnected, the reconnect announces it.
    if (rt.state === 'open' && room === next) announce()
  }

  $('login').onsubmit = async (submit) => {
    submit.preventDefault()
    name = $('name').value
    try {
      await signIn()
    } catch (error) {
      return status(error.message)
    }
    $('login').hidden = true
    $('join').hidden = false
    $('say').hidden = false
    status('connecting…')
    rt?.close()
    room = subscription = undefined
    connect()
  }
  $('join').onsubmit = (submit) => {
    submit.preventDefault()
    enter($('room').value)
  }
  $('say').onsubmit = (submit) => {
    submit.preventDefault()
    rt.request('say', { room, text: $('input').value })
      .then(() => { $('input').value = '' }, (error) => show('not sent: ' + error.message, true))
  }
</script>`)

const viewPage = page('Chat: read-only view over SSE', `
<p><code>createSseClient</code> on <code id="url"></code>: the same room, the same events and ids
as its WebSocket members get. When the connection drops, or the server restarts, the client
resumes with <code>Last-Event-ID</code> and misses nothing.</p>
<p>Status: <output id="status">connecting…</output></p>
<p>In the room: <output id="members">(known at the next join or leave)</output></p>
<ol id="messages"></ol>
<script type="module">
  import { createSseClient } from '${CLIENT_URL}'
  const $ = (id) => document.getElementById(id)
  const room = new URLSearchParams(location.search).get('room') || 'lobby'
  const url = '/chat/rooms/' + encodeURIComponent(room) + '/events'
  $('url').textContent = url
  document.title = room + ' · ' + document.title

  function show (text, note = false) {
    const item = document.createElement('li')
    item.textContent = text
    if (note) item.className = 'note'
    $('messages').append(item)
    $('messages').scrollTop = $('messages').scrollHeight
  }

  const feed = createSseClient(url)
  window.feed = feed // for the curious, in the console: feed.state, feed.lastEventId
  let opened = false
  feed.onState(({ state, status, retryInMs }) => {
    if (state === 'open' && opened) show('(reconnected: anything said meanwhile follows)', true)
    if (state === 'open') opened = true
    $('status').textContent = state === 'reconnecting'
      ? 'reconnecting in ' + Math.round(retryInMs) + ' ms' + (status === undefined ? '' : ' (HTTP ' + status + ')')
      : state
  })
  feed.on('message', ({ user, text }) => show(user + ': ' + text))
  feed.on('presence', ({ members }) => { $('members').textContent = members.join(', ') })
  feed.onReset(() => show('(the history since you left is gone: live from here)', true))
</script>`)
