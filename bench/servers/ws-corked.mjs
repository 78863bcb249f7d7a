// @ts-check
// The hand-optimised WebSocket ceiling on ws: what fastify-realtime does, written by hand. Every
// connection joins ws's `clients`; publishing serializes the message fastify-realtime sends for a
// topic event, `{"type":"event","topic":"bench","id":"<ms>-<n>","event":"tick","data":…}`, once, frames it once (FIN + text opcode, the payload length, no mask: RFC 6455 section 5.2), and
// writes those bytes to every connection's socket (`ws._socket`), past ws's sender (no extension is
// negotiated, and nothing else is sent, so frames cannot interleave); the first publish of a tick
// corks every socket, and one process.nextTick uncorks them all, so the events of a tick leave in
// one writev per socket. ws defaults: no permessage-deflate, no heartbeat.

import http from 'node:http'
import { WebSocketServer } from 'ws'
import { EVENT, closeHttp, listenHttp, serve } from './harness.mjs'

// The topic fastify-realtime's bench server publishes to (contracts.mjs, which loads the library).
const TOPIC = 'bench'

/** @param {string} text */
function textFrame (text) {
  const payload = Buffer.from(text)
  const size = payload.length
  const head = size < 126 ? 2 : size < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(head + size)
  frame[0] = 0x81
  if (size < 126) {
    frame[1] = size
  } else if (size < 65536) {
    frame[1] = 126
    frame.writeUInt16BE(size, 2)
  } else {
    frame[1] = 127
    frame.writeBigUInt64BE(BigInt(size), 2)
  }
  payload.copy(frame, head)
  return frame
}

await serve(async () => {
  let published = 0
  const server = http.createServer((request, response) => { response.writeHead(404).end() })
  const wss = new WebSocketServer({ server })
  // The clients ws tracks itself (wss.clients), each with its TCP socket.
  const clients = /** @type {Set<{ _socket: import('node:net').Socket }>} */ (/** @type {unknown} */ (wss.clients))
  let corked = false
  const uncork = () => {
    corked = false
    for (const client of clients) client._socket.uncork()
  }
  return {
    server,
    listen: () => listenHttp(server),
    subscribers: () => clients.size,
    publish (event) {
      const frame = textFrame(JSON.stringify({ type: 'event', topic: TOPIC, id: `${Date.now()}-${published++}`, event: EVENT, data: event }))
      if (!corked) {
        corked = true
        for (const client of clients) client._socket.cork()
        process.nextTick(uncork)
      }
      for (const client of clients) client._socket.write(frame)
    },
    async close () {
      wss.close()
      await closeHttp(server)
    }
  }
})
