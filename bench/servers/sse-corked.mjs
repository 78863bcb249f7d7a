// @ts-check
// The hand-optimised SSE ceiling on node:http: what fastify-realtime does, written by hand for one
// route. Each event carries what fastify-realtime's does on the wire: an id (`<ms>-<n>`, as its
// memory broker makes them) and the event name. GET /events answers 200 with the event-stream headers at once (chunked, as Node sends an
// HTTP/1.1 response of unknown length) and joins the set of clients. Publishing frames the event
// once, as the whole HTTP/1.1 chunk (`<size hex>\r\n<frame>\r\n`, RFC 9112 section 7.1), and writes
// that one buffer to every client's socket directly, past the response; the first publish of a tick
// corks every socket, and one process.nextTick uncorks them all, so the events of a tick leave in
// one writev per socket.

import http from 'node:http'
import { EVENT, closeHttp, listenHttp, serve } from './harness.mjs'

/** @param {string} frame */
function chunk (frame) {
  const size = Buffer.byteLength(frame)
  return Buffer.from(`${size.toString(16)}\r\n${frame}\r\n`)
}

await serve(async () => {
  let published = 0
  /** @type {Set<import('node:net').Socket>} */
  const clients = new Set()
  let corked = false
  const uncork = () => {
    corked = false
    for (const socket of clients) socket.uncork()
  }
  const server = http.createServer((request, response) => {
    if (request.url !== '/events') {
      response.writeHead(404).end()
      return
    }
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
    response.flushHeaders()
    const socket = response.socket
    if (socket === null) return
    clients.add(socket)
    socket.on('close', () => clients.delete(socket))
  })
  return {
    server,
    listen: () => listenHttp(server),
    subscribers: () => clients.size,
    publish (event) {
      const bytes = chunk(`id: ${Date.now()}-${published++}\nevent: ${EVENT}\ndata: ${JSON.stringify(event)}\n\n`)
      if (!corked) {
        corked = true
        for (const socket of clients) socket.cork()
        process.nextTick(uncork)
      }
      for (const socket of clients) socket.write(bytes)
    },
    close: () => closeHttp(server)
  }
})
