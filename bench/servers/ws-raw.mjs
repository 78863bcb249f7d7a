// @ts-check
// WebSocket baseline: ws on node:http, no framework. /echo answers each `add` request (JSON.parse,
// the TypeCompiler check, JSON.stringify of the reply in fastify-realtime's envelope); any other
// path is a fan-out client, and publishing serializes `{"type":"event","event":"tick","data":…}`
// once and loops `socket.send(message)` over `wss.clients` (the broadcast of ws's README).
// ws defaults: no permessage-deflate, no heartbeat.

import http from 'node:http'
import { WebSocketServer } from 'ws'
import { EVENT, closeHttp, listenHttp, serve } from './harness.mjs'
import { answerAdd } from './schemas.mjs'

await serve(async () => {
  const server = http.createServer((request, response) => { response.writeHead(404).end() })
  const wss = new WebSocketServer({ server })
  // The clients ws tracks itself (wss.clients); the fan-out and echo suites never connect both kinds at once.
  const clients = wss.clients
  wss.on('connection', (socket, request) => {
    if (request.url === '/echo') socket.on('message', (data) => socket.send(answerAdd(data)))
  })
  return {
    server,
    listen: () => listenHttp(server),
    subscribers: () => clients.size,
    publish (event) {
      const message = JSON.stringify({ type: 'event', event: EVENT, data: event })
      for (const socket of clients) socket.send(message)
    },
    async close () {
      wss.close()
      await closeHttp(server)
    }
  }
})
