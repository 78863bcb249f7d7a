// The example servers as the browser tests drive them: composed as examples/demo.js composes them,
// recording what reaches the server (requests, upgrades, sockets), and the chat page's own gestures.
// They import the built package (dist/), so `npm run build` must run first (npm test does).
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import type { Test } from 'tap'
import { fastifySse, fastifyWs, type Broker } from 'fastify-realtime'
import browserClient from '../../examples/browser-client.js'
import chat, { chatContract, type ChatSessions } from '../../examples/chat.js'
import { textsOf, waitForText } from './browser.js'

/** Every request's path and headers, in arrival order, recorded before any route runs. */
export type Seen = Array<{ url: string, origin?: string, cookie?: string, lastEventId?: string }>

/**
 * An app composed as examples/demo.js composes it: fastifySse at the root, then the example.
 * `seen` records the requests it gets.
 */
export async function serveSse (plugin: (app: FastifyInstance) => unknown, { port = 0, broker }: { port?: number, broker?: Broker } = {}) {
  const app = Fastify()
  const seen: Seen = []
  app.addHook('onRequest', async (request) => {
    const { origin, cookie } = request.headers
    const lastEventId = request.headers['last-event-id'] as string | undefined
    seen.push({ url: request.url, origin, cookie, lastEventId })
  })
  await app.register(fastifySse, broker === undefined ? {} : { broker })
  await app.register(browserClient)
  await plugin(app)
  const url = await app.listen({ host: '127.0.0.1', port })
  return { app, url, seen }
}

/** An upgrade request to the chat socket, as the server saw it, and the status of a refusal. */
export interface Upgrade { origin?: string, protocols?: string, refusedWith?: number }

/** How {@link serveChat} serves the chat. */
export interface ChatServerOptions {
  /** Listen on this port (a restart), else any free one. */
  port?: number
  /** The broker, shared by the lives of a restarted server. */
  broker?: Broker
  sessions?: ChatSessions
}

/**
 * The chat composed as examples/demo.js composes it (fastifySse and fastifyWs at the root, the
 * default origin policy, the built client served), recording the upgrade requests it gets and the
 * TCP sockets it accepts. Closed when the test ends.
 */
export async function serveChat (t: Test, { port = 0, broker, sessions }: ChatServerOptions = {}) {
  const app = Fastify()
  t.teardown(() => app.close())
  const upgrades: Upgrade[] = []
  const streams: string[] = []
  const seen = new WeakMap<object, Upgrade>()
  app.addHook('onRequest', async (request) => {
    if (request.url.endsWith('/events')) streams.push(request.headers['last-event-id'] as string)
    if (request.url !== '/chat/ws') return
    const upgrade = { origin: request.headers.origin, protocols: request.headers['sec-websocket-protocol'] }
    upgrades.push(upgrade)
    seen.set(request, upgrade)
  })
  // A refused upgrade is answered over HTTP; an accepted one never gets an HTTP response.
  app.addHook('onResponse', async (request, reply) => {
    const upgrade = seen.get(request)
    if (upgrade !== undefined) upgrade.refusedWith = reply.statusCode
  })
  const sockets = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await app.register(fastifySse, broker === undefined ? {} : { broker })
  await app.register(fastifyWs, broker === undefined ? {} : { broker })
  await app.register(browserClient)
  await app.register(chat, sessions === undefined ? {} : { sessions })
  const url = await app.listen({ host: '127.0.0.1', port })
  const login = async (name: string): Promise<string> => {
    const response = await fetch(`${url}/chat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })
    return ((await response.json()) as { token: string }).token
  }
  return {
    app,
    url,
    upgrades,
    /** The Last-Event-ID of every SSE request, in arrival order. */
    streams,
    login,
    /** Says `text` in `room` as `user`, from the server. */
    say: (room: string, user: string, text: string) => app.realtime.topic(`room:${room}`, { contract: chatContract }).publish('message', { room, user, text }),
    /** What a network that went away does to every open connection: gone, with no close frame. */
    cut: () => { for (const socket of sockets) socket.destroy() }
  }
}

/** Signs in on the chat page and enters `room`: the page's own forms, as a person would use them. */
export async function signInAndEnter (chatPage: Page, url: string, name: string, room = 'lobby'): Promise<void> {
  await chatPage.goto(`${url}/chat`)
  await chatPage.fill('#name', name)
  await chatPage.click('#sign-in')
  await waitForText(chatPage, '#status', `connected as ${name}`)
  await chatPage.fill('#room', room)
  await chatPage.click('#join-room')
  await waitForText(chatPage, '#status', `connected as ${name}, in ${room}`)
}

export async function say (chatPage: Page, text: string): Promise<void> {
  await chatPage.fill('#input', text)
  await chatPage.click('#send')
  // The page clears the input once the server replied to the say message.
  await chatPage.waitForFunction(() => (document.querySelector('#input') as HTMLInputElement).value === '')
}

/** The messages a page shows, without its notes about the connection. */
export function messagesOn (chatPage: Page): Promise<string[]> {
  return textsOf(chatPage, '#messages li:not(.note)')
}
