// The library's node:diagnostics_channel channels, declared once here (as undici's
// lib/core/diagnostics.js does). Every publish sits behind `hasSubscribers`, so nothing is built
// while nobody listens. Payloads are plain objects with figures only: no request, reply, socket,
// token or message data, so a subscriber may log one as it is.
import diagnostics from 'node:diagnostics_channel'

/** The names of the channels, for `diagnostics_channel.subscribe(name, listener)`. */
export const DiagnosticsChannel = Object.freeze({
  /** {@link ConnectionOpenEvent}: a WebSocket after its 101, an SSE stream once its headers went out. */
  ConnectionOpen: 'fastify-realtime:connection:open',
  /** {@link ConnectionCloseEvent}: exactly once per opened connection. */
  ConnectionClose: 'fastify-realtime:connection:close',
  /** {@link ConnectionRejectEvent}: a WebSocket upgrade or a declared SSE route answered without opening. */
  ConnectionReject: 'fastify-realtime:connection:reject',
  /** {@link MessageInvalidEvent}: a WebSocket message answered with a bad-message error. */
  MessageInvalid: 'fastify-realtime:message:invalid',
  /** {@link TopicPublishEvent}: once per event a topic published (not once per subscriber). */
  TopicPublish: 'fastify-realtime:topic:publish',
  /** {@link SubscriptionResumeEvent}: a subscription asked to resume after an id, resumed or reset. */
  SubscriptionResume: 'fastify-realtime:subscription:resume',
  /** {@link ConsumerSlowEvent}: a connection closed because its client does not read. */
  ConsumerSlow: 'fastify-realtime:consumer:slow',
  /**
   * A `diagnostics_channel.tracingChannel()` name: `tracing:fastify-realtime.ws.handler:start`,
   * `:end`, `:asyncStart`, `:asyncEnd` and `:error` around each WebSocket message handler, with one
   * {@link WsHandlerContext} shared by the five (as Fastify's `tracing:fastify.request.handler`).
   */
  WsHandler: 'fastify-realtime.ws.handler'
} as const)

/** The transport of a connection. */
export type Transport = 'sse' | 'ws'

/** What every connection event carries. */
export interface ConnectionInfo {
  readonly transport: Transport
  /** The route's URL pattern, such as `/rooms/:room/events` (never the URL as requested). */
  readonly route: string
  /** The connection's id: `conn.id` on WebSocket, a random id per SSE stream. */
  readonly connectionId: string
}

/** Published on {@link DiagnosticsChannel.ConnectionOpen}. */
export interface ConnectionOpenEvent extends ConnectionInfo {}

/** Published on {@link DiagnosticsChannel.ConnectionClose}. */
export interface ConnectionCloseEvent extends ConnectionInfo {
  /**
   * The close code. WebSocket: the one `onClose` gets. SSE, the WebSocket code of the same meaning:
   * 1000 the server ended the stream, 1001 the server is closing, 1006 the client left,
   * 1008 slow consumer, 1011 the source or handler failed.
   */
  readonly code: number
  /** How long the connection was open, in milliseconds. */
  readonly durationMs: number
}

/** Published on {@link DiagnosticsChannel.ConnectionReject}. */
export interface ConnectionRejectEvent {
  readonly transport: Transport
  /** The route's URL pattern; null when the request was refused before routing (upgradeRateLimit, a closing server). */
  readonly route: string | null
  /** The HTTP status of the answer (401, 403, 429, 503...). */
  readonly status: number
}

/** Published on {@link DiagnosticsChannel.MessageInvalid}. */
export interface MessageInvalidEvent extends ConnectionInfo {
  /** The error code sent back: `BAD_JSON`, `BAD_FRAME`, `UNKNOWN_TYPE` or `VALIDATION`. */
  readonly code: string
}

/** Published on {@link DiagnosticsChannel.TopicPublish}. */
export interface TopicPublishEvent {
  readonly topic: string
  readonly event: string
  /** The event id the broker assigned. */
  readonly id: string
}

/** Published on {@link DiagnosticsChannel.SubscriptionResume}. */
export interface SubscriptionResumeEvent extends ConnectionInfo {
  /** The topics of the subscription. */
  readonly topics: readonly string[]
  /** True when the history was replayed; false for a reset (the id cannot be resumed). */
  readonly resumed: boolean
  /** How many events the replay sent (0 on a reset). */
  readonly replayed: number
}

/** Published on {@link DiagnosticsChannel.ConsumerSlow}. */
export interface ConsumerSlowEvent extends ConnectionInfo {
  /** The unsent bytes when the connection was closed. */
  readonly bufferedBytes: number
  readonly maxBufferedBytes: number
  /** Set when an SSE stream was closed because its socket sent none of its unsent bytes for this long (`stallTimeout`). */
  readonly stallTimeout?: number
}

/** The context of the {@link DiagnosticsChannel.WsHandler} tracing channel, shared by its five events. */
export interface WsHandlerContext extends ConnectionInfo {
  readonly transport: 'ws'
  /** The message type, i.e. the handler's name in the route's `handlers`. */
  readonly type: string
  /** True once the handler returned a promise. */
  async: boolean
  /** What the handler threw or rejected with, on `error` and the events after it. */
  error?: unknown
}

/** The channels themselves. @internal */
export const channels = Object.freeze({
  connectionOpen: diagnostics.channel(DiagnosticsChannel.ConnectionOpen),
  connectionClose: diagnostics.channel(DiagnosticsChannel.ConnectionClose),
  connectionReject: diagnostics.channel(DiagnosticsChannel.ConnectionReject),
  messageInvalid: diagnostics.channel(DiagnosticsChannel.MessageInvalid),
  topicPublish: diagnostics.channel(DiagnosticsChannel.TopicPublish),
  subscriptionResume: diagnostics.channel(DiagnosticsChannel.SubscriptionResume),
  consumerSlow: diagnostics.channel(DiagnosticsChannel.ConsumerSlow),
  wsHandler: diagnostics.tracingChannel<string, WsHandlerContext>(DiagnosticsChannel.WsHandler)
})

function isPromise (value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function'
}

/**
 * Runs a WebSocket message handler inside the tracing channel, the way Fastify traces route
 * handlers: `start` (its stores bound) and `end` around the call, `error` when it throws or
 * rejects, `asyncStart` and `asyncEnd` around the answer to a returned promise. `answer` and `fail`
 * send the reply or the error frame (and must not throw). Returns a promise, which never rejects,
 * while an async handler runs. Call it only when `channels.wsHandler.hasSubscribers`.
 * @internal
 */
export function traceHandler (
  context: WsHandlerContext,
  run: () => unknown,
  answer: (value: unknown) => void,
  fail: (err: unknown) => void
): Promise<void> | undefined {
  const tracing = channels.wsHandler
  const failed = (err: unknown): void => {
    context.error = err
    tracing.error.publish(context)
  }
  return tracing.start.runStores(context, () => {
    try {
      let result: unknown
      try {
        result = run()
      } catch (err) {
        failed(err)
        fail(err)
        return undefined
      }
      if (!isPromise(result)) {
        answer(result)
        return undefined
      }
      context.async = true
      return result.then((value) => {
        tracing.asyncStart.publish(context)
        answer(value)
        tracing.asyncEnd.publish(context)
      }, (err: unknown) => {
        // As in Fastify, `error` comes before `asyncStart`.
        failed(err)
        tracing.asyncStart.publish(context)
        fail(err)
        tracing.asyncEnd.publish(context)
      })
    } finally {
      tracing.end.publish(context)
    }
  })
}
