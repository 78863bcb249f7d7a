// @ts-check
// @fastify/websocket (its defaults: ws without permessage-deflate, no heartbeat): GET /ws is a
// fan-out client, publishing loops `socket.send(message)` over `fastify.websocketServer.clients`; GET /echo answers
// each `add` request exactly as ws-raw.mjs does (TypeCompiler check, fastify-realtime's envelope).

import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import { EVENT, listenFastify, serve } from './harness.mjs'
import { answerAdd } from './schemas.mjs'

await serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(fastifyWebsocket)
  app.get('/ws', { websocket: true }, () => {})
  app.get('/echo', { websocket: true }, (socket) => {
    socket.on('message', (data) => socket.send(answerAdd(data)))
  })
  await app.ready()
  // The clients ws tracks itself (the plugin's `websocketServer.clients`, its README's broadcast);
  // the fan-out and echo suites never connect both kinds at once.
  const clients = app.websocketServer.clients
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => clients.size,
    publish (event) {
      const message = JSON.stringify({ type: 'event', event: EVENT, data: event })
      for (const socket of clients) socket.send(message)
    },
    close: () => app.close()
  }
})
