// What the Redis tests share: one Fastify instance per broker with an SSE route and a WS route on
// the `lobby` topic, clients of either transport seen through one interface, and a redis-server of
// a test's own.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs, type Broker, type Topic } from '../../lib/index.js'
import { redisBroker, type RedisBrokerOptions } from '../../lib/brokers/redis/index.js'
import { connectWS, injectSSE, type ConnectedWS, type InjectedSSE } from '../../lib/testing/index.js'
import { freePort } from './index.js'
import { sleep, until, within } from './ws.js'

export { until }

export const chat = defineContract({
  events: { message: Type.Object({ n: Type.Number(), from: Type.String() }) }
})

/** A topic event or a reset, as either transport's client saw it. */
export type Received =
  | { type: 'event', id: string, event: string, data: string }
  | { type: 'reset' }

/** A subscribed client of either transport. */
export interface Client {
  next (): Promise<Received>
  /** Leaves like a client that goes away; returns what had arrived but was not read yet. */
  leave (): Promise<Received[]>
  /** True once the server ended the connection. */
  readonly ended: boolean
}

export interface Instance {
  app: FastifyInstance
  broker: Broker
  lobby: Topic<typeof chat>
  other: Topic<typeof chat>
  sseSubscribed: Promise<void>[]
  wsSubscribed: Promise<void>[]
  /** app.close(), then broker.close(); idempotent, bounded by a hang detector. */
  close (): Promise<void>
}

export function idOf (received: Received): string {
  if (received.type !== 'event') throw new Error('expected a topic event, got a reset')
  return received.id
}

/**
 * Registers fastifySse and fastifyWs with one redisBroker (passed in, so the test closes it):
 * GET /sse subscribes to `lobby` (resuming after Last-Event-ID), WS /ws subscribes to `lobby` in
 * onOpen, resuming after the `after` query parameter when there is one. `source`: a Redis URL, or
 * the broker options that say where Redis is (`{ cluster }`, `{ client }`).
 */
export async function instance (t: Test, source: string | RedisBrokerOptions, ns: string, options: Partial<RedisBrokerOptions> = {}): Promise<Instance> {
  const broker = redisBroker({ ...(typeof source === 'string' ? { url: source } : source), namespace: ns, ...options })
  const app = Fastify({ logger: false })
  await app.register(fastifySse, { heartbeat: 0, broker })
  await app.register(fastifyWs, { heartbeat: 0, broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  const other = app.realtime.topic('other', { contract: chat })
  const sseSubscribed: Promise<void>[] = []
  const wsSubscribed: Promise<void>[] = []
  app.get('/sse', (request, reply) => { sseSubscribed.push(reply.sse().subscribe(lobby)) })
  app.ws('/ws', {
    contract: chat,
    authenticate: false,
    onOpen (conn) {
      const { after } = conn.request.query as { after?: string }
      wsSubscribed.push(conn.subscribe(lobby, after === undefined ? undefined : { after }))
    }
  })
  await app.ready()
  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= within((async () => {
      await app.close()
      await broker.close()
    })(), 5000, 'app.close() and broker.close()')
    return closing
  }
  t.teardown(close)
  return { app, broker, lobby, other, sseSubscribed, wsSubscribed, close }
}

export function sseClient (sse: InjectedSSE): Client {
  let ended = false
  sse.ended.then(() => { ended = true }, () => {})
  const toReceived = (event: { event: string, data: string, id: string | undefined }): Received =>
    event.event === 'realtime.reset'
      ? { type: 'reset' }
      : { type: 'event', id: event.id as string, event: event.event, data: event.data }
  // A subscription's realtime.position is no topic event: the tests follow the events' own ids.
  const nextOf = async (): Promise<Received> => {
    for (;;) {
      const event = await sse.next()
      if (event.event !== 'realtime.position') return toReceived(event)
    }
  }
  return {
    next: nextOf,
    async leave () {
      await sse.close()
      const rest: Received[] = []
      for (;;) {
        try { rest.push(await nextOf()) } catch { return rest }
      }
    },
    get ended () { return ended }
  }
}

export function wsClient (ws: ConnectedWS): Client {
  let ended = false
  ws.closed.then(() => { ended = true }, () => {})
  const toReceived = (frame: Record<string, unknown>): Received =>
    frame.type === 'reset'
      ? { type: 'reset' }
      : { type: 'event', id: frame.id as string, event: frame.event as string, data: JSON.stringify(frame.data) }
  return {
    async next () {
      for (;;) {
        const frame = await ws.nextFrame()
        if (frame.type === 'event' || frame.type === 'reset') return toReceived(frame)
      }
    },
    async leave () {
      await within(ws.close(), 3000, 'the WebSocket close')
      const rest: Received[] = []
      for (;;) {
        try { rest.push(toReceived(await ws.nextFrame())) } catch { return rest }
      }
    },
    get ended () { return ended }
  }
}

/** `timeout`: how long each read may wait (a hang detector). */
export async function openSse (inst: Instance, lastEventId?: string, timeout = 5000): Promise<Client> {
  const index = inst.sseSubscribed.length
  const sse = await injectSSE(inst.app, { url: '/sse', lastEventId, timeout })
  await until(() => inst.sseSubscribed.length > index, 3000, 'the SSE subscription')
  await within(inst.sseSubscribed[index] as Promise<void>, 3000, 'stream.subscribe()')
  return sseClient(sse)
}

export async function openWs (inst: Instance, after?: string, timeout = 5000): Promise<Client> {
  const index = inst.wsSubscribed.length
  const ws = await connectWS(inst.app, after === undefined ? '/ws' : `/ws?after=${encodeURIComponent(after)}`, { timeout })
  await until(() => inst.wsSubscribed.length > index, 3000, 'the WebSocket subscription')
  await within(inst.wsSubscribed[index] as Promise<void>, 3000, 'conn.subscribe()')
  return wsClient(ws)
}

export const transports = { sse: openSse, ws: openWs } as const

/** Reads topic events until the one with id `last` (a reset fails); every read has the client's timeout. */
export async function readEventsUntil (client: Client, last: string, max: number): Promise<Array<{ id: string, data: string }>> {
  const events: Array<{ id: string, data: string }> = []
  while (events.at(-1)?.id !== last) {
    if (events.length > max) throw new Error(`read ${events.length} events without seeing ${last}`)
    const received = await client.next()
    events.push({ id: idOf(received), data: (received as { data: string }).data })
  }
  return events
}

export async function readUntil (client: Client, last: string, max: number): Promise<string[]> {
  return (await readEventsUntil(client, last, max)).map((event) => event.id)
}

// ---- a redis-server of our own, for the tests that pause, kill and restart it ----

const children = new Set<ChildProcess>()
// Should the process die without its teardowns, leave no server behind.
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid as number, 'SIGCONT') } catch {}
    try { process.kill(child.pid as number, 'SIGKILL') } catch {}
  }
})

/** Resolves once something on `port` answers PING with PONG. */
function ping (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let reply = ''
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok) }
    socket.setTimeout(500, () => done(false))
    socket.on('error', () => done(false))
    socket.on('connect', () => socket.write('PING\r\n'))
    socket.on('data', (chunk) => {
      reply += chunk.toString()
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'))
    })
  })
}

/** A private redis-server (no persistence) that a test can pause, stop and restart. */
export class RedisServer {
  readonly port: number
  private readonly dir: string
  private readonly args: string[]
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private paused = false

  private constructor (port: number, dir: string, args: string[]) {
    this.port = port
    this.dir = dir
    this.args = args
  }

  /**
   * Starts a server on a free port; `onEnd` receives its cleanup (kill it, remove its directory),
   * e.g. `(cleanup) => t.teardown(cleanup)`. `args`: more redis-server options, e.g.
   * `['--replicaof', '127.0.0.1', String(port)]` for a replica.
   */
  static async start (onEnd: (cleanup: () => Promise<void>) => void, args: string[] = []): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), mkdtempSync(path.join(tmpdir(), 'frt-faults-')), args)
    onEnd(() => server.destroy())
    await server.start()
    return server
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** (Re)starts the server on the same port with an empty dataset; resolves on PONG. */
  async start (): Promise<void> {
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.args
    ], { stdio: 'ignore' })
    this.child = child
    children.add(child)
    this.exited = new Promise((resolve) => child.once('exit', () => {
      children.delete(child)
      resolve()
    }))
    child.on('error', () => {})
    await within((async () => {
      while (!(await ping(this.port))) {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`)
        await sleep(20)
      }
    })(), 5000, 'redis-server answering PING')
  }

  /** kill -STOP: the process stops, its sockets stay open, the kernel still accepts connections. */
  pause (): void {
    process.kill((this.child as ChildProcess).pid as number, 'SIGSTOP')
    this.paused = true
  }

  /** kill -CONT */
  resume (): void {
    process.kill((this.child as ChildProcess).pid as number, 'SIGCONT')
    this.paused = false
  }

  /** Stops the server (its data is gone: no persistence) and waits for it to exit. */
  async stop (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (this.paused) this.resume()
    this.child?.kill(signal)
    await within(this.exited, 5000, `redis-server to exit on ${signal}`)
  }

  async destroy (): Promise<void> {
    const child = this.child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid as number, 'SIGCONT') } catch {}
      child.kill('SIGKILL')
      await within(this.exited, 5000, 'redis-server to exit')
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/**
 * Runs `suite` on the Redis of REDIS_URL. Without one the file plans nothing, except in CI, where
 * the Redis tests must run and never be skipped (.ci/run starts a redis-server and exports REDIS_URL).
 */
export function withRedisUrl (t: Test, suite: (url: string) => void): void {
  const url = process.env.REDIS_URL
  if (url !== undefined && url !== '') suite(url)
  else if (process.env.CI) t.fail('REDIS_URL is not set: in CI the Redis tests must run, never be skipped (.ci/run starts a redis-server and exports REDIS_URL)')
  else t.plan(0, 'REDIS_URL is not set: run `scripts/redis-test-server.sh`, then `REDIS_URL=... npm test`')
}
