// Real servers for the client's tests: an app listening on a loopback port that can be closed and
// started again on the same port (a deploy), and counters of what the server saw.
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import WebSocket, { WebSocketServer } from 'ws'
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
  /** One broker for every app, or a factory: a broker per app (another instance on the same log). */
  broker?: Broker | (() => Broker)
  ws?: FastifyWsOptions | false
}

/** An app with both plugins, set up by `setup`, listening on 127.0.0.1; closed when the test ends. */
export async function serve (t: Test, setup: (app: FastifyInstance) => void | Promise<void>, options: ServeOptions = {}): Promise<Served> {
  const seen: Seen = { upgrades: 0, requests: 0 }
  async function make (): Promise<FastifyInstance> {
    const app = Fastify({ logger: false })
    const broker = typeof options.broker === 'function' ? options.broker() : options.broker
    if (broker !== undefined && broker !== options.broker) app.addHook('onClose', () => broker.close())
    await app.register(fastifySse, { heartbeat: 0, broker })
    if (options.ws !== false) {
      await app.register(fastifyWs, { heartbeat: 0, broker, authenticate: () => ({ name: 'ann' }), ...options.ws })
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

/** A scripted WebSocket server (a real socket, driven frame by frame), for what a correct server never sends. */
export interface Peer {
  url: string
  /** Every connection so far, newest last, with the messages it received (parsed). */
  connections: Array<{ socket: WebSocket, received: any[] }>
  /** Sends `hello` on a connection. */
  hello: (socket: WebSocket, maxPayload?: number) => void
}

/**
 * A `ws` server on a loopback port: `onMessage` gets each parsed message of each connection;
 * `selectProtocol` false refuses realtime.v1 (a server that sends no hello).
 */
export async function peer (
  t: Test,
  onConnection: (socket: WebSocket, index: number, peer: Peer) => void,
  onMessage: (message: any, socket: WebSocket, index: number) => void = () => {},
  selectProtocol = true
): Promise<Peer> {
  const server = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    handleProtocols: (protocols) => selectProtocol && protocols.has('realtime.v1') ? 'realtime.v1' : false
  })
  await new Promise((resolve) => server.once('listening', resolve))
  const result: Peer = {
    url: `ws://127.0.0.1:${(server.address() as { port: number }).port}/`,
    connections: [],
    hello (socket, maxPayload = 65536) {
      socket.send(JSON.stringify({ type: 'hello', data: { connectionId: 'c', heartbeatMs: 0, maxPayload, expiresAt: null } }))
    }
  }
  server.on('connection', (socket) => {
    const index = result.connections.length
    const connection = { socket, received: [] as any[] }
    result.connections.push(connection)
    socket.on('message', (data) => {
      const message = JSON.parse(String(data))
      connection.received.push(message)
      onMessage(message, socket, index)
    })
    onConnection(socket, index, result)
  })
  t.teardown(() => new Promise<void>((resolve) => {
    for (const client of server.clients) client.terminate()
    server.close(() => resolve())
  }))
  return result
}
