// Real servers for the client's tests: an app listening on a loopback port that can be closed and
// started again on the same port (a deploy), and counters of what the server saw.
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import WebSocket from 'ws'
import { fastifySse, fastifyWs, type Broker, type FastifyWsOptions } from '../../lib/index.js'
import type { ClientState, StateChange } from '../../lib/client/index.js'

export { until, within, sleep } from './ws.js'

/** The `ws` WebSocket, as Node 20 passes it to the client. */
export const NodeWebSocket = WebSocket

/** Fast reconnects for tests: bounded counts, never a timed assertion. */
export const FAST = { initialMs: 5, maxMs: 20, factor: 2 }

/** What a test server saw. */
export interface Seen {
  /** WebSocket upgrade requests. */
  upgrades: number
  /** HTTP requests (SSE attempts). */
  requests: number
}

export interface Served {
  app: FastifyInstance
  url: string
  port: number
  seen: Seen
  /** Closes the app (1001 to every socket, every stream ended), keeping the port for {@link restart}. */
  stop: () => Promise<void>
  /** A new app on the same port with the same broker; `beforeListen` runs between its setup and listen. */
  restart: (beforeListen?: (app: FastifyInstance) => Promise<void>) => Promise<FastifyInstance>
}

export interface ServeOptions {
  broker?: Broker
  ws?: FastifyWsOptions | false
}

/** An app with both plugins, set up by `setup`, listening on 127.0.0.1; closed when the test ends. */
export async function serve (t: Test, setup: (app: FastifyInstance) => void | Promise<void>, options: ServeOptions = {}): Promise<Served> {
  const seen: Seen = { upgrades: 0, requests: 0 }
  async function make (): Promise<FastifyInstance> {
    const app = Fastify({ logger: false })
    await app.register(fastifySse, { heartbeat: 0, broker: options.broker })
    if (options.ws !== false) {
      await app.register(fastifyWs, { heartbeat: 0, broker: options.broker, authenticate: () => ({ name: 'ann' }), ...options.ws })
    }
    app.server.on('upgrade', () => { seen.upgrades++ })
    app.addHook('onRequest', async (request) => { if (request.headers.upgrade === undefined) seen.requests++ })
    await setup(app)
    t.teardown(() => app.close())
    return app
  }
  const served: Served = {
    app: await make(),
    url: '',
    port: 0,
    seen,
    stop: () => served.app.close(),
    async restart (beforeListen) {
      const app = await make()
      await beforeListen?.(app)
      await app.listen({ port: served.port, host: '127.0.0.1' })
      served.app = app
      return app
    }
  }
  served.url = await served.app.listen({ port: 0, host: '127.0.0.1' })
  served.port = Number(new URL(served.url).port)
  return served
}

/** Every state a client goes through, in order. */
export function states (client: { onState: (listener: (change: StateChange) => void) => () => void }): StateChange[] & { names: () => ClientState[] } {
  const changes = [] as unknown as StateChange[] & { names: () => ClientState[] }
  changes.names = () => changes.map((change) => change.state)
  client.onState((change) => { changes.push(change) })
  return changes
}
