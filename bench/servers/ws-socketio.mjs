// @ts-check
// socket.io on node:http, its defaults (permessage-deflate off, ping every 25 s; clients here open
// the websocket transport directly). Fan-out: `io.emit('tick', event)` to every socket; echo: an
// `add` handler with an acknowledgement, checking the data with the same TypeCompiler check as the
// other implementations and acknowledging `{ sum, text }` (or `{ error }`). Engine.IO queues packets
// per client while the previous write is in flight: that queue counts as the client's backlog.

import http from 'node:http'
import { Server } from 'socket.io'
import { EVENT, addReply, closeHttp, listenHttp, serve } from './harness.mjs'
import { checkAdd } from './schemas.mjs'

const EVENT_BYTES = 215

await serve(async () => {
  const server = http.createServer()
  const io = new Server(server, { serveClient: false })
  io.on('connection', (socket) => {
    socket.on('add', (data, ack) => {
      if (typeof ack !== 'function') return
      ack(checkAdd.Check(data) ? addReply(data) : { error: { code: 'VALIDATION', message: 'The data of "add" does not match its schema.' } })
    })
  })
  /** @type {Record<string, { writeBuffer: unknown[] }>} */
  const engineClients = /** @type {any} */ (io.engine).clients
  return {
    server,
    listen: () => listenHttp(server),
    subscribers: () => io.of('/').sockets.size,
    publish (event) {
      io.emit(EVENT, event)
    },
    queued () {
      let max = 0
      for (const id in engineClients) {
        const length = engineClients[id]?.writeBuffer.length ?? 0
        if (length > max) max = length
      }
      return max * EVENT_BYTES
    },
    async close () {
      io.close()
      await closeHttp(server)
    }
  }
})
