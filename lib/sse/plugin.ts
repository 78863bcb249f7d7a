import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { serveDocument } from '../asyncapi/route.js'
import { compiledOf, type AnyContract } from '../contract.js'
import { channels } from '../diagnostics.js'
import { FRT_ERR_INVALID_OPTION, FRT_ERR_SSE_ALREADY_SENT, FRT_ERR_SSE_CONFLICT } from '../errors.js'
import {
  asyncapiOption,
  heartbeatOption,
  maxBufferedBytesOption,
  retryOption,
  stallTimeoutOption,
  sseRouteOption,
  type AsyncApiRouteOptions,
  type SseRouteOption
} from '../options.js'
import { kReplyStream, kSseRoute } from '../symbols.js'
import type { Broker } from '../brokers/broker.js'
import { attachHub } from '../hub/attach.js'
import type { Hub, Realtime } from '../hub/hub.js'
import { Heartbeats } from './heartbeats.js'
import { Stalls } from './stalls.js'
import {
  SseStreamImpl,
  type SseHost,
  type SseItem,
  type SseOptions,
  type SseSettings,
  type SseStream
} from './stream.js'

/** Options of the `fastifySse` plugin. */
export interface FastifySseOptions {
  /**
   * Interval (ms) of the heartbeat comment that keeps proxies from closing idle streams; `0` or `false` turns it off.
   * @default 15000
   */
  heartbeat?: number | false
  /** Sent first on every stream as a `retry:` line (the client's reconnection delay in ms). Unset: none. */
  retry?: number
  /**
   * Unsent bytes at which a stream is closed as a slow consumer (the client reconnects and resumes).
   * @default 1048576
   */
  maxBufferedBytes?: number
  /**
   * Time (ms) a stream's socket may hold unsent bytes without sending any before the stream is
   * closed as a slow consumer (the client reconnects and resumes); iterable sources and replays
   * included, whose iterator's `return()` then runs.
   * @default 30000
   */
  stallTimeout?: number
  /**
   * The broker behind `fastify.realtime`, shared with `fastifyWs`.
   * @default memoryBroker()
   */
  broker?: Broker
  /**
   * Serves `fastify.realtime.asyncapi({ info, servers })` as JSON at `path` (a GET route hidden from
   * @fastify/swagger), built once when the app is ready. Unset: not served. Set it on one plugin only.
   */
  asyncapi?: AsyncApiRouteOptions
}

/** `reply.sse`: a push stream, or a stream fed from an (async) iterable. */
export interface ReplySse {
  /** Opens a push stream: status and headers are written at once; returns the stream. */
  <C extends AnyContract | undefined = undefined>(options?: SseOptions<C>): SseStream<C>
  /**
   * Streams an (async) iterable of `{ event, data, id?, retry? }`, one item at a time with backpressure;
   * calls its `return()` when the client leaves. Returns the reply, so `return reply.sse(gen())` works.
   */
  <C extends AnyContract | undefined = undefined>(
    source: AsyncIterable<SseItem<NoInfer<C>>> | Iterable<SseItem<NoInfer<C>>>,
    options?: SseOptions<C>
  ): FastifyReply
}

declare module 'fastify' {
  interface RouteShorthandOptions {
    /**
     * Declares an SSE route: `reply.sse()` on it defaults to this contract, and
     * `fastify.realtime.asyncapi()` describes it. `true` declares a route without a contract.
     */
    sse?: SseRouteOption
  }
  interface FastifyInstance {
    /** The realtime hub: topics shared by SSE streams and WebSocket connections. */
    realtime: Realtime
  }
  interface FastifyReply {
    /** Opens a Server-Sent Events stream on this reply. */
    sse: ReplySse
  }
}

const DEFAULT_HEARTBEAT = 15000
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
const DEFAULT_STALL_TIMEOUT = 30000

function settingsOf (options: FastifySseOptions): SseSettings {
  return Object.freeze({
    retry: retryOption(options.retry),
    limits: Object.freeze({
      heartbeat: heartbeatOption(options.heartbeat) ?? DEFAULT_HEARTBEAT,
      maxBufferedBytes: maxBufferedBytesOption(options.maxBufferedBytes, DEFAULT_MAX_BUFFERED_BYTES),
      stallTimeout: stallTimeoutOption(options.stallTimeout, DEFAULT_STALL_TIMEOUT)
    })
  })
}

function isSource (value: unknown): value is AsyncIterable<unknown> | Iterable<unknown> {
  return value !== null && typeof value === 'object' &&
    (typeof (value as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function' ||
      typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function')
}

function assertNoOtherSsePlugin (fastify: FastifyInstance): void {
  if (fastify.hasPlugin('@fastify/sse')) throw new FRT_ERR_SSE_CONFLICT(' by @fastify/sse')
  if (fastify.hasReplyDecorator('sse')) throw new FRT_ERR_SSE_CONFLICT(' (is fastifySse registered twice?)')
}

// A handler that throws after its stream opened would leave the stream hanging (Fastify only logs
// "reply already sent"): the error ends the stream with a sanitized `realtime.error` instead.
function endStreamOnError (reply: FastifyReply, err: unknown): undefined {
  const stream = (reply as any)[kReplyStream] as SseStreamImpl | null
  if (stream === null) throw err
  stream.fail(err)
  return undefined
}

/** A declared SSE route answered without opening its stream (a refusal, or an error before reply.sse()). */
function rejectionHook (hub: Hub, url: string) {
  return function countRejection (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: HookHandlerDoneFunction & ((err: Error | null, payload?: unknown) => void)): void {
    hub.counters.rejected++
    if (channels.connectionReject.hasSubscribers) channels.connectionReject.publish({ transport: 'sse', route: url, status: reply.statusCode })
    done(null, payload)
  }
}

/** Records a route declared with the route option `sse`: its default contract, the document, the rejection count. */
function declareRoute (hub: Hub, routeOptions: RouteOptions & { sse?: unknown }): void {
  const declared = sseRouteOption(routeOptions.sse)
  if (declared === undefined) return
  routeOptions.config = { ...routeOptions.config, [kSseRoute]: declared } as typeof routeOptions.config
  const onSend = routeOptions.onSend
  routeOptions.onSend = [rejectionHook(hub, routeOptions.url), ...(onSend === undefined ? [] : Array.isArray(onSend) ? onSend : [onSend])] as any
  for (const method of [routeOptions.method].flat()) {
    if (method === 'HEAD') continue
    hub.registry.add({ transport: 'sse', url: routeOptions.url, method, contract: declared.contract, querystring: (routeOptions.schema as { querystring?: unknown } | undefined)?.querystring })
  }
}

function wrapHandler (routeOptions: RouteOptions & { websocket?: boolean }): void {
  const handler = routeOptions.handler
  routeOptions.handler = function sseAwareHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    let result: unknown
    try {
      result = handler.call(this, request, reply)
    } catch (err) {
      return endStreamOnError(reply, err)
    }
    // A returned reply is not a promise, though it has a then(): `return reply` after reply.sse(source)
    // in a sync handler means "already handled" (and Fastify would warn on sending it again).
    if (result === reply) return (reply as any)[kReplyStream] === null ? result : undefined
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      return (result as Promise<unknown>).then(undefined, (err: unknown) => endStreamOnError(reply, err))
    }
    return result
  }
}

async function fastifySsePlugin (fastify: FastifyInstance, options: FastifySseOptions): Promise<void> {
  assertNoOtherSsePlugin(fastify)
  const asyncapi = asyncapiOption(options.asyncapi)
  const hub = attachHub(fastify, options.broker)
  const host: SseHost = {
    settings: settingsOf(options),
    hub,
    open: new Set(),
    heartbeats: new Heartbeats(),
    stalls: new Stalls(),
    closing: false
  }

  fastify.decorateReply(kReplyStream, null)
  fastify.decorateReply('sse', function sse (this: FastifyReply, first?: unknown, second?: unknown): any {
    const source = isSource(first) ? first : undefined
    const options = (source === undefined ? first : second) ?? {}
    if (typeof options !== 'object' || options === null) {
      throw new FRT_ERR_INVALID_OPTION('reply.sse() options', 'expected an object such as { contract, retry, heartbeat, maxBufferedBytes, stallTimeout }')
    }
    if ((this as any)[kReplyStream] !== null || this.sent) throw new FRT_ERR_SSE_ALREADY_SENT()
    const sseOptions = options as SseOptions<AnyContract | undefined>
    const config = this.request.routeOptions.config as { url?: string, [kSseRoute]?: { contract: AnyContract | undefined } }
    // A declared route's contract is the default; `contract` in the options overrides it.
    const contract = sseOptions.contract ?? config[kSseRoute]?.contract
    const compiled = contract === undefined ? undefined : compiledOf(contract)
    const stream = new SseStreamImpl(this, host, compiled, sseOptions, config.url ?? '')
    ;(this as any)[kReplyStream] = stream
    // A stream opened while the server closes (a handler that awaited past preClose) ends at once.
    if (host.closing) stream.shutdown()
    if (source === undefined) return stream
    stream.pump(source)
    return this
  })

  fastify.addHook('onRoute', function onRoute (routeOptions: RouteOptions & { websocket?: boolean }) {
    // A WebSocket route's handler takes (socket, request): it has no reply to stream on.
    if (routeOptions.websocket === true) return
    declareRoute(hub, routeOptions)
    wrapHandler(routeOptions)
  })
  serveDocument(fastify, hub, asyncapi)
  // @fastify/sse registered after this plugin assigns its own reply.sse per request: refuse to start.
  fastify.addHook('onReady', async () => {
    if (fastify.hasPlugin('@fastify/sse')) throw new FRT_ERR_SSE_CONFLICT(' by @fastify/sse')
  })
  fastify.addHook('preClose', (done) => {
    host.closing = true
    for (const stream of host.open) stream.shutdown()
    done()
  })
}

/**
 * Server-Sent Events for Fastify: decorates replies with `reply.sse()` and the instance with
 * `fastify.realtime` (shared with `fastifyWs`).
 */
export const fastifySse = fp(fastifySsePlugin, {
  fastify: '5.x',
  name: 'fastify-realtime-sse'
})
