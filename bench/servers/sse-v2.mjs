// @ts-check
// fastify-sse-v2: each client's route calls `reply.sse(source)` with an async iterable of its own
// (a Feed: the plugin pulls from it, through it-to-stream, piped into the response). Publishing
// serializes the event once (the plugin takes string data) and pushes `{ event: 'tick', data }` to
// every feed. What waits in a feed counts as the client's backlog. retryDelay: the default (a
// `retry: 3000` line first, which also sends the headers).

import Fastify from 'fastify'
import { EVENT, Feed, listenFastify, serve } from './harness.mjs'

// Loaded by a name the type checker does not follow: fastify-sse-v2's types declare `reply.sse`, as
// fastify-realtime's do, and the two declarations cannot live in one program.
const PLUGIN = 'fastify-sse-v2'
const { FastifySSEPlugin } = await import(PLUGIN)

const EVENT_BYTES = 220

await serve(async () => {
  /** @type {Set<Feed<{ event: string, data: string }>>} */
  const clients = new Set()
  const app = Fastify({ logger: false })
  await app.register(FastifySSEPlugin)
  app.get('/events', (request, /** @type {any} */ reply) => {
    /** @type {Feed<{ event: string, data: string }>} */
    const feed = new Feed()
    clients.add(feed)
    request.raw.socket.on('close', () => {
      clients.delete(feed)
      feed.end()
    })
    reply.sse(feed)
  })
  await app.ready()
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => clients.size,
    publish (event) {
      const item = { event: EVENT, data: JSON.stringify(event) }
      for (const feed of clients) feed.push(item)
    },
    queued () {
      let max = 0
      for (const feed of clients) if (feed.length > max) max = feed.length
      return max * EVENT_BYTES
    },
    close: () => app.close()
  }
})
