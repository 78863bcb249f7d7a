// @ts-check
// @fastify/sse: an `sse: 'only'` route that keeps the connection (`reply.sse.keepAlive()`) and joins
// the set of clients; publishing calls `reply.sse.send({ event: 'tick', data })` on every client
// (the plugin serializes the data with its default JSON.stringify, per client). The plugin commits
// the headers with writeHead() but sends them with the first event; the route flushes them at once
// (`reply.raw.flushHeaders()`) so that a client knows it is connected, as with the other servers.
// Heartbeat: the plugin's default (30 s).

import Fastify from 'fastify'
import { EVENT, listenFastify, serve } from './harness.mjs'

// Loaded by a name the type checker does not follow: @fastify/sse's types declare `reply.sse`, as
// fastify-realtime's do, and the two declarations cannot live in one program.
const PLUGIN = '@fastify/sse'
const { default: fastifySSE } = await import(PLUGIN)

await serve(async () => {
  /** @type {Set<any>} */
  const clients = new Set()
  const app = Fastify({ logger: false })
  await app.register(fastifySSE)
  /** @type {any} */
  const options = { sse: 'only' }
  app.get('/events', options, async (request, /** @type {any} */ reply) => {
    const sse = reply.sse
    sse.keepAlive()
    sse.sendHeaders()
    reply.raw.flushHeaders()
    clients.add(sse)
    sse.onClose(() => clients.delete(sse))
  })
  await app.ready()
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => clients.size,
    publish (event) {
      for (const sse of clients) sse.send({ event: EVENT, data: event })
    },
    close: () => app.close()
  }
})
