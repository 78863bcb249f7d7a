// @ts-check
// fastify-realtime (the built package): fastifyWs with its defaults (maxBufferedBytes 1 MiB,
// heartbeat 30 s, rate limit 100 messages/s). GET /ws (`authenticate: false`) subscribes each
// connection to the topic `bench` in onOpen; publishing is `topic.publish('tick', event)`.
// GET /echo handles `add` against the contract (request validated, reply validated) and returns
// `{ sum, text }`; it sets `rateLimit: false`, since each client keeps 16 requests in flight, far
// over the default 100 messages per second.

import Fastify from 'fastify'
import { fastifyWs } from './library.mjs'
import { addReply, listenFastify, serve } from './harness.mjs'
import { TOPIC, addContract, tickContract } from './contracts.mjs'

await serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(fastifyWs)
  const topic = app.realtime.topic(TOPIC, { contract: tickContract })
  let subscribers = 0
  app.ws('/ws', {
    authenticate: false,
    contract: tickContract,
    onOpen (conn) {
      conn.subscribe(topic)
      subscribers++
    },
    onClose () { subscribers-- },
    handlers: {}
  })
  app.ws('/echo', {
    authenticate: false,
    contract: addContract,
    rateLimit: false,
    handlers: { add: (data) => addReply(data) }
  })
  await app.ready()
  /** @param {unknown} err */
  const fail = (err) => { throw err }
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => subscribers,
    publish (event) {
      topic.publish('tick', event).catch(fail)
    },
    close: () => app.close()
  }
})
