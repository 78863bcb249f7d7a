// @ts-check
// fastify-realtime (the built package): fastifySse with its defaults (maxBufferedBytes 1 MiB,
// heartbeat 15 s); GET /events opens `reply.sse({ contract })` and subscribes it to the topic
// `bench`; publishing is `topic.publish('tick', event)` (validated and serialized once, through the
// memory broker, framed once for every stream).

import Fastify from 'fastify'
import { fastifySse } from './library.mjs'
import { listenFastify, serve } from './harness.mjs'
import { TOPIC, tickContract } from './contracts.mjs'

await serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(fastifySse)
  const topic = app.realtime.topic(TOPIC, { contract: tickContract })
  app.get('/events', (request, reply) => {
    reply.sse({ contract: tickContract }).subscribe(topic)
    return reply
  })
  // The hub's own count of the topic's subscribers (not public API): counting them here, with a
  // `stream.closed` handler per stream, would add to each connection's memory.
  const hub = /** @type {{ subscriberCount (topic: string): number }} */ (/** @type {unknown} */ (app.realtime))
  await app.ready()
  /** @param {unknown} err */
  const fail = (err) => { throw err }
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => hub.subscriberCount(TOPIC),
    publish (event) {
      topic.publish('tick', event).catch(fail)
    },
    close: () => app.close()
  }
})
