// @ts-check
// SSE on a plain Fastify route, no plugin: `reply.hijack()`, then the raw response as in sse-raw.mjs.
// What a hand-written Fastify SSE route costs (idle-memory).

import Fastify from 'fastify'
import { EVENT, listenFastify, serve } from './harness.mjs'

await serve(async () => {
  /** @type {Set<import('node:http').ServerResponse>} */
  const clients = new Set()
  const app = Fastify({ logger: false })
  app.get('/events', (request, reply) => {
    reply.hijack()
    const response = reply.raw
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
    response.flushHeaders()
    clients.add(response)
    response.on('close', () => clients.delete(response))
  })
  await app.ready()
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => clients.size,
    publish (event) {
      const frame = `event: ${EVENT}\ndata: ${JSON.stringify(event)}\n\n`
      for (const response of clients) response.write(frame)
    },
    close: () => app.close()
  }
})
