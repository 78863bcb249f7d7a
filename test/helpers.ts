import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import { fastifySse, type FastifySseOptions } from '../lib/index.js'

/** An app with fastifySse registered, closed when the test ends. */
export async function build (t: Test, options: FastifySseOptions = {}, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, ...serverOptions })
  await app.register(fastifySse, { heartbeat: 0, ...options })
  t.teardown(() => app.close())
  return app
}
