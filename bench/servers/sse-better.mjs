// @ts-check
// better-sse on Fastify: the route hijacks the reply, makes a session of the raw request and
// response (`createSession`) and registers it on one Channel; publishing is
// `channel.broadcast(event, 'tick')` (the library serializes per session and adds one id per
// broadcast). Session defaults: `retry: 2000` first, keep-alive comments every 10 s.

import { createChannel, createSession } from 'better-sse'
import Fastify from 'fastify'
import { EVENT, listenFastify, serve } from './harness.mjs'

await serve(async () => {
  const channel = createChannel()
  const app = Fastify({ logger: false })
  app.get('/events', async (request, reply) => {
    reply.hijack()
    const session = await createSession(request.raw, reply.raw)
    channel.register(session)
  })
  await app.ready()
  return {
    server: app.server,
    listen: () => listenFastify(app),
    subscribers: () => channel.sessionCount,
    publish (event) {
      channel.broadcast(event, EVENT)
    },
    close: () => app.close()
  }
})
