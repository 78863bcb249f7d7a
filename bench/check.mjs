// @ts-check
// Protocol checks with real clients, run once per implementation before it is measured (the load
// generator counts markers and would not notice a malformed stream): SSE through eventsource-parser
// over node:http, WebSocket through the `ws` client, socket.io by parsing its Engine.IO / Socket.IO
// packets from the `ws` client. Each check fails with a message saying what was wrong.

import http from 'node:http'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { createParser } from 'eventsource-parser'
import WebSocket from 'ws'
import { SOCKET_IO_PATH, waitSubscribers, within } from './common.mjs'
import { Tick } from './servers/schemas.mjs'

const checkTick = TypeCompiler.Compile(Tick)
const EVENTS = 5
const TIMEOUT_MS = 10000

/**
 * @typedef {object} CheckClient
 * @property {unknown[]} events the `tick` payloads received, parsed
 * @property {string[]} problems what did not look right
 * @property {() => void} close
 */

/**
 * An SSE client: a GET with eventsource-parser on the body.
 * @param {number} port
 * @param {string} path
 * @returns {Promise<CheckClient>}
 */
function sseClient (port, path) {
  return new Promise((resolve, reject) => {
    /** @type {CheckClient} */
    const client = { events: [], problems: [], close: () => request.destroy() }
    const parser = createParser({
      onEvent (event) {
        // fastify-realtime tells a stream where it went live (a resume point with no data).
        if (event.event === 'realtime.position' && event.data === '{}' && event.id !== undefined) return
        if (event.event !== 'tick') return client.problems.push(`an event named ${JSON.stringify(event.event)}`)
        try {
          client.events.push(JSON.parse(event.data))
        } catch {
          client.problems.push(`data that is not JSON: ${event.data.slice(0, 80)}`)
        }
      }
    })
    const request = http.get({ host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream' } }, (response) => {
      const type = String(response.headers['content-type'])
      if (response.statusCode !== 200 || !type.startsWith('text/event-stream')) {
        reject(new Error(`GET ${path}: ${response.statusCode} ${type}`))
        return
      }
      response.setEncoding('utf8')
      response.on('data', (text) => parser.feed(text))
      response.on('error', () => {})
      resolve(client)
    })
    request.on('error', (err) => reject(err))
  })
}

/**
 * A WebSocket client (ws) expecting `{"type":"event","event":"tick","data":…}` messages.
 * @param {number} port
 * @param {string} path
 * @returns {Promise<CheckClient>}
 */
function wsClient (port, path) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`)
    /** @type {CheckClient} */
    const client = { events: [], problems: [], close: () => socket.terminate() }
    socket.on('message', (data, isBinary) => {
      try {
        const message = JSON.parse(String(data))
        if (isBinary || message.type !== 'event' || message.event !== 'tick') client.problems.push(`a message ${String(data).slice(0, 80)}`)
        else client.events.push(message.data)
      } catch {
        client.problems.push(`a message that is not JSON: ${String(data).slice(0, 80)}`)
      }
    })
    socket.on('open', () => resolve(client))
    socket.on('error', reject)
  })
}

/**
 * A socket.io client over the websocket transport, speaking Engine.IO v4 / Socket.IO v5 by hand.
 * @param {number} port
 * @returns {Promise<CheckClient & { socket: WebSocket, acks: Map<number, unknown> }>}
 */
function socketIoClient (port) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}${SOCKET_IO_PATH}`)
    /** @type {CheckClient & { socket: WebSocket, acks: Map<number, unknown> }} */
    const client = { events: [], problems: [], close: () => socket.terminate(), socket, acks: new Map() }
    socket.on('message', (data) => {
      const text = String(data)
      if (text.startsWith('0{')) socket.send('40')
      else if (text.startsWith('40{')) resolve(client)
      else if (text === '2') socket.send('3')
      else if (text.startsWith('42')) {
        const [name, payload] = JSON.parse(text.slice(2))
        if (name !== 'tick') client.problems.push(`an event named ${JSON.stringify(name)}`)
        else client.events.push(payload)
      } else if (text.startsWith('43')) {
        const match = /^43(\d+)(.*)$/.exec(text)
        if (match === null) client.problems.push(`an ack without an id: ${text.slice(0, 80)}`)
        else client.acks.set(Number(match[1]), JSON.parse(match[2] ?? '[]')[0])
      } else client.problems.push(`a packet ${text.slice(0, 80)}`)
    })
    socket.on('error', reject)
  })
}

/**
 * Two real clients receive EVENTS events from the server: every one a valid `tick`, in order, none missing.
 * @param {import('./util.mjs').ServerProcess} server
 * @param {'sse' | 'ws' | 'socket.io'} protocol
 * @param {string} path
 */
export async function checkFanout (server, protocol, path) {
  /** @type {CheckClient[]} */
  const clients = []
  try {
    for (let i = 0; i < 2; i++) {
      const open = protocol === 'sse' ? sseClient(server.port, path) : protocol === 'ws' ? wsClient(server.port, path) : socketIoClient(server.port)
      clients.push(await within(open, TIMEOUT_MS, 'connecting a checking client'))
    }
    await waitSubscribers(server, clients.length)
    await server.request({ cmd: 'publish', from: 0, count: EVENTS })
    const deadline = Date.now() + TIMEOUT_MS
    while (clients.some((client) => client.events.length < EVENTS) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    await server.request({ cmd: 'stop' })
    for (const [index, client] of clients.entries()) {
      const problems = [...client.problems]
      if (client.events.length !== EVENTS) problems.push(`${client.events.length} events instead of ${EVENTS}`)
      client.events.forEach((event, seq) => {
        if (!checkTick.Check(event)) problems.push(`event ${seq} does not match the tick schema: ${JSON.stringify(event)}`)
        else if (event.seq !== seq) problems.push(`event ${seq} has seq ${event.seq}`)
      })
      if (problems.length > 0) throw new Error(`client ${index + 1}: ${problems.join('; ')}`)
    }
  } finally {
    for (const client of clients) client.close()
  }
}

/**
 * One valid `add` request gets `{ sum, text }`; one invalid request gets no sum (an error).
 * @param {import('./util.mjs').ServerProcess} server
 * @param {'ws' | 'socket.io'} protocol
 */
export async function checkEcho (server, protocol) {
  const valid = { a: 2, b: 40, text: 'check' }
  const invalid = { a: 'two', b: 40, text: 'check' }
  if (protocol === 'ws') {
    const socket = new WebSocket(`ws://127.0.0.1:${server.port}/echo`)
    try {
      await within(new Promise((resolve, reject) => { socket.on('open', resolve); socket.on('error', reject) }), TIMEOUT_MS, 'connecting to /echo')
      /** @type {Map<number, unknown>} */
      const replies = new Map()
      socket.on('message', (data) => {
        const message = JSON.parse(String(data))
        replies.set(message.id, message)
      })
      socket.send(JSON.stringify({ type: 'add', id: 1, data: valid }))
      socket.send(JSON.stringify({ type: 'add', id: 2, data: invalid }))
      const deadline = Date.now() + TIMEOUT_MS
      while (replies.size < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
      const [good, bad] = /** @type {any[]} */ ([replies.get(1), replies.get(2)])
      if (good?.type !== 'reply' || good.data?.sum !== 42 || good.data?.text !== 'check') throw new Error(`a valid request got ${JSON.stringify(good)}`)
      if (bad?.type !== 'error' || bad.data !== undefined) throw new Error(`an invalid request got ${JSON.stringify(bad)}`)
    } finally {
      socket.terminate()
    }
  } else {
    const client = await within(socketIoClient(server.port), TIMEOUT_MS, 'connecting to socket.io')
    try {
      client.socket.send(`421${JSON.stringify(['add', valid])}`)
      client.socket.send(`422${JSON.stringify(['add', invalid])}`)
      const deadline = Date.now() + TIMEOUT_MS
      while (client.acks.size < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
      const [good, bad] = /** @type {any[]} */ ([client.acks.get(1), client.acks.get(2)])
      if (good?.sum !== 42 || good.text !== 'check') throw new Error(`a valid request got ${JSON.stringify(good)}`)
      if (bad?.error === undefined || bad.sum !== undefined) throw new Error(`an invalid request got ${JSON.stringify(bad)}`)
      if (client.problems.length > 0) throw new Error(client.problems.join('; '))
    } finally {
      client.close()
    }
  }
}
