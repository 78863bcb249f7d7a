// The plugin option `asyncapi: { path }`: the document served as JSON, hidden from @fastify/swagger.
import type { FastifyInstance } from 'fastify'
import type { Hub } from '../hub/hub.js'
import type { AsyncApiRouteOptions } from '../options.js'

/** Serves the document at `options.path`, built and serialized once when the app is ready. @internal */
export function serveDocument (fastify: FastifyInstance, hub: Hub, options: AsyncApiRouteOptions | undefined): void {
  if (options === undefined) return
  let json = ''
  // Built at ready, not on the first request: a schema that cannot go in the document fails app.ready().
  fastify.addHook('onReady', async () => {
    json = JSON.stringify(hub.asyncapi(options))
  })
  fastify.get(options.path, { schema: { hide: true } } as object, (_request, reply) => {
    reply.type('application/json; charset=utf-8').send(json)
  })
}
