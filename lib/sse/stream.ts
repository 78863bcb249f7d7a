import { randomUUID } from 'node:crypto'
import { ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Http2ServerResponse } from 'node:http2'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import {
  serializeJson,
  type AnyContract,
  type CompiledContract,
  type EventData,
  type EventName
} from '../contract.js'
import { FRT_ERR_INVALID_OPTION } from '../errors.js'
import { chunkedSocketOf, queuedBytesOf, requestSignalController } from '../internals.js'
import { heartbeatOption, maxBufferedBytesOption, retryOption, stallTimeoutOption } from '../options.js'
import { CloseCode } from '../protocol/close-codes.js'
import { newerEventId } from '../protocol/event-id.js'
import { ReservedEvent } from '../protocol/names.js'
import { POSITION_EVENT_DATA, resetEventData } from '../protocol/reserved-events.js'
import { channels, type ConnectionInfo } from '../diagnostics.js'
import { kStreamOwner } from '../symbols.js'
import { isTopic, topicNames, type AnyTopic, type Encoder, type Hub } from '../hub/hub.js'
import { Lane, corkForTick, flushLargeCork, joinRun, takeRun, type Corkable } from '../transport/cork.js'
import { Subscription, type Sink } from '../hub/subscription.js'
import { clientError } from '../public-error.js'
import { chunk, chunkBody, encodeSseEvent } from './chunk.js'
import { assertField, frameComment, frameEvent, frameRetry } from './framing.js'
import type { Heartbeats } from './heartbeats.js'
import type { StallMember, Stalls } from './stalls.js'
import { readLastEventId } from './last-event-id.js'

/** Options of one `send()`. */
export interface SendOptions {
  /** The event's `id:` field (`''` resets the client's last id). No CR, LF or NUL. */
  id?: string
  /** A `retry:` field sent with the event: the client's reconnection delay in ms. */
  retry?: number
}

/** `send` of a stream: typed by the stream's contract, untyped without one. */
export type SendFunction<C extends AnyContract | undefined> = [C] extends [AnyContract]
  ? <K extends EventName<C>>(event: K, data: EventData<C, K>, options?: SendOptions) => boolean
  : (event: string, data: unknown, options?: SendOptions) => boolean

/** An item of an async-iterable source: typed by the contract, untyped without one. */
export type SseItem<C extends AnyContract | undefined> = [C] extends [AnyContract]
  ? { [K in EventName<C>]: { event: K, data: EventData<C, K>, id?: string, retry?: number } }[EventName<C>]
  : { event?: string, data: unknown, id?: string, retry?: number }

/** Options of `reply.sse()`. */
export interface SseOptions<C extends AnyContract | undefined = undefined> {
  /** Types and validates every event; data goes out as JSON. Without it, strings go out as they are. */
  contract?: C
  /** Sent first as a `retry:` line: the client's reconnection delay in ms. */
  retry?: number
  /** Heartbeat comment interval in ms for this stream; `0` or `false` turns it off. Default: the plugin's. */
  heartbeat?: number | false
  /** Unsent bytes at which this stream is closed as a slow consumer. Default: the plugin's. */
  maxBufferedBytes?: number
  /** Time (ms) this stream's socket may hold unsent bytes without sending any before it is closed. Default: the plugin's. */
  stallTimeout?: number
}

/** A Server-Sent Events stream, returned by `reply.sse()`. */
export interface SseStream<C extends AnyContract | undefined = undefined> {
  /**
   * Frames and writes one event. Validates the data first when the stream has a contract (throws
   * `FRT_ERR_UNKNOWN_EVENT` / `FRT_ERR_VALIDATION`). Returns true when written or queued,
   * false once the stream is closed; never throws after close.
   */
  readonly send: SendFunction<C>
  /** Writes a comment (split on line breaks, so it cannot forge a field). False once closed. */
  comment (text: string): boolean
  /**
   * Subscribes to one topic or several: replays the events after the request's `Last-Event-ID` that
   * belong to them (merged in id order), then goes live, with no gap and no duplicate. An id that
   * cannot be resumed sends one `realtime.reset` event first. Resolves once the replay is written
   * and the subscription is live; never rejects (a broker failure closes the stream so the client
   * reconnects and resumes).
   */
  subscribe (topics: AnyTopic | readonly AnyTopic[]): Promise<void>
  /** Ends the stream. Idempotent. */
  close (): void
  /** Aborted when the stream ends: client gone, `close()`, slow-consumer cut-off or server closing. */
  readonly signal: AbortSignal
  /** Resolves (never rejects) when the stream has ended, for any reason. */
  readonly closed: Promise<void>
  /** The request's `Last-Event-ID` (or `?lastEventId=`), undefined when absent or over 256 chars. */
  readonly lastEventId: string | undefined
}

/** A stream's bounds (heartbeat interval, maxBufferedBytes, stallTimeout). @internal */
export interface SseLimits {
  readonly heartbeat: number
  readonly maxBufferedBytes: number
  readonly stallTimeout: number
}

/** Plugin-wide settings, normalized once at registration. @internal */
export interface SseSettings {
  readonly retry: number | undefined
  /** Shared, frozen, by every stream that keeps the plugin's bounds. */
  readonly limits: SseLimits
}

/** What all streams of one plugin registration share. @internal */
export interface SseHost {
  readonly settings: SseSettings
  readonly hub: Hub
  readonly open: Set<SseStreamImpl>
  readonly heartbeats: Heartbeats
  readonly stalls: Stalls
  closing: boolean
}

const HEARTBEAT_CHUNK = chunk(':\n\n')
const SOURCE_ERROR_MESSAGE = 'The event source failed.'
const SOURCE_YIELD_EVERY = 64
// The shared chunks of topic events written in this tick, which each stream's run is a slice of.
const lane = new Lane()

/** A request or response that knows its stream. */
interface Owned { [kStreamOwner]: SseStreamImpl }

function onGone (this: Owned): void {
  this[kStreamOwner].gone()
}

/**
 * What only some streams need, made on first need: most streams never wait for a drain, never read
 * `signal` or `closed`, and have no iterable source.
 */
class StreamExtras {
  onDrain: (() => void) | undefined
  // Bytes written while congested, read by the stall watch to tell progress from new backlog.
  writtenWhileCongested = 0
  drainWaiters: (() => void)[] | undefined
  controller: AbortController | undefined
  closedPromise: Promise<void> | undefined
  resolveClosed: (() => void) | undefined
  source: AsyncIterator<unknown> | Iterator<unknown> | undefined
  sourceStopped = false
  // The stream's id, made when the diagnostics channels first need it.
  connectionId: string | undefined
  // Fastify's controller of `request.signal`, read before reply.sse(): reply.hijack() detached it
  // from the request's close, so the stream aborts it when it ends, and `reply.sse(generate(request.signal))` stops.
  requestSignal: AbortController | undefined
}

/** The plugin's bounds, or a stream's own where reply.sse() set any of them. */
function limitsOf (plugin: SseLimits, options: SseOptions<any>): SseLimits {
  const heartbeat = heartbeatOption(options.heartbeat)
  const maxBufferedBytes = maxBufferedBytesOption(options.maxBufferedBytes)
  const stallTimeout = stallTimeoutOption(options.stallTimeout)
  if (heartbeat === undefined && maxBufferedBytes === undefined && stallTimeout === undefined) return plugin
  return Object.freeze({
    heartbeat: heartbeat ?? plugin.heartbeat,
    maxBufferedBytes: maxBufferedBytes ?? plugin.maxBufferedBytes,
    stallTimeout: stallTimeout ?? plugin.stallTimeout
  })
}

/** @internal */
export class SseStreamImpl implements Sink, Corkable, StallMember {
  readonly lastEventId: string | undefined
  // The stream's bounds: the plugin's own frozen object unless reply.sse() set any of them.
  private readonly limits: SseLimits
  private readonly raw: ServerResponse | Http2ServerResponse
  private readonly log: FastifyBaseLogger
  private readonly host: SseHost
  private readonly compiled: CompiledContract | undefined
  isOpen = true
  congested = false
  corked = false
  runStart = 0
  runEnd = 0
  // Set when frames go straight to the socket as pre-built HTTP/1.1 chunks, bypassing res.write().
  private socket: Socket | undefined
  // One subscription, or several (most streams have one: no array for them).
  private subscriptions: Subscription | Subscription[] | undefined
  private extras: StreamExtras | undefined
  // The route's URL pattern, for the diagnostics channels and nothing else.
  private readonly route: string
  private readonly openedAt = performance.now()

  constructor (reply: FastifyReply, host: SseHost, compiled: CompiledContract | undefined, options: SseOptions<any>, route: string) {
    const settings = host.settings
    const retry = retryOption(options.retry) ?? settings.retry
    this.limits = limitsOf(settings.limits, options)
    const request = reply.request
    this.log = reply.log
    this.raw = reply.raw
    this.host = host
    this.compiled = compiled
    this.route = route
    this.lastEventId = readLastEventId(request)
    // The stream keeps what it needs of the request (its raw request, this controller), not the
    // request itself: whatever else the request holds is freed once the handler returns.
    const requestSignal = requestSignalController(request)
    if (requestSignal !== undefined) this.extra().requestSignal = requestSignal

    const headers = reply.getHeaders() as Record<string, string | number | string[]>
    delete headers['content-length']
    delete headers['transfer-encoding']
    headers['content-type'] = 'text/event-stream; charset=utf-8'
    headers['cache-control'] = 'no-cache, no-transform'
    headers['x-accel-buffering'] = 'no'
    // Connection-specific headers are forbidden in HTTP/2 (RFC 9113, section 8.2.2).
    if (request.raw.httpVersionMajor < 2) headers.connection = 'keep-alive'
    else delete headers.connection

    reply.hijack()
    const raw = this.raw as ServerResponse
    // Listeners shared by every stream (no closures per stream), called with the emitter.
    ;(raw as unknown as Owned)[kStreamOwner] = this
    ;(request.raw as unknown as Owned)[kStreamOwner] = this
    raw.on('close', onGone)
    raw.on('error', onGone)
    request.raw.on('error', onGone)
    raw.writeHead(200, headers)
    // Commit the status line and headers now, so the client's `open` fires before any event.
    if (retry === undefined) raw.flushHeaders()
    else raw.write(frameRetry(retry))
    // An HTTP/1.1 response whose head went out on its own socket, through Node's own write(), can
    // take the shared chunks as they are: one socket write per frame, and one chunk built per event
    // for all streams. Anything else (HTTP/2, HTTP/1.0, a response queued behind another on a
    // pipelined connection, a wrapped write) goes through res.write().
    this.socket = chunkedSocketOf(raw)
    host.open.add(this)
    if (this.limits.heartbeat > 0) host.heartbeats.add(this.limits.heartbeat, this)
    const counters = host.hub.counters
    counters.sse++
    counters.opened++
    if (channels.connectionOpen.hasSubscribers) channels.connectionOpen.publish(this.describe())
  }

  /** @internal */
  describe (): ConnectionInfo {
    const extras = this.extra()
    // Made on first need: a random id costs time and memory that most streams never use.
    extras.connectionId ??= randomUUID()
    return { transport: 'sse', route: this.route, connectionId: extras.connectionId }
  }

  /** The hub the stream's topics live in. @internal */
  get hub (): Hub {
    return this.host.hub
  }

  /** Encodes topic events for this transport. @internal */
  get encode (): Encoder<Buffer> {
    return encodeSseEvent
  }

  /** Unsent bytes at which the stream is cut as a slow consumer. @internal */
  get maxBufferedBytes (): number {
    return this.limits.maxBufferedBytes
  }

  private extra (): StreamExtras {
    this.extras ??= new StreamExtras()
    return this.extras
  }

  send (event: string, data: unknown, options?: SendOptions): boolean {
    if (!this.isOpen) return false
    let text: string
    if (this.compiled !== undefined) {
      text = this.compiled.serializeEvent(event, data)
    } else {
      assertField('event', event)
      text = typeof data === 'string' ? data : serializeJson(event, data)
    }
    return this.writeText(frameEvent(event, text, options?.id, options?.retry))
  }

  comment (text: string): boolean {
    return this.writeText(frameComment(text))
  }

  subscribe (topics: AnyTopic | readonly AnyTopic[]): Promise<void> {
    const list = Array.isArray(topics) ? topics : [topics]
    if (list.length === 0 || !list.every(isTopic)) {
      throw new FRT_ERR_INVALID_OPTION('topics', 'expected a topic from fastify.realtime.topic(), or an array of them')
    }
    if (!this.isOpen) return Promise.resolve()
    const subscription = new Subscription(this, topicNames(list))
    const current = this.subscriptions
    this.subscriptions = current === undefined ? subscription : [...(Array.isArray(current) ? current : [current]), subscription]
    return subscription.start(this.lastEventId, (position) => this.positioned(position))
  }

  /**
   * A subscription went live: its position goes out as the stream's last event id, so a client that
   * has had no event of its topics yet still resumes from there. Never older than an event that
   * another subscription of this stream wrote already, which the client would then get twice.
   */
  private positioned (position: string | undefined): void {
    const subscriptions = this.subscriptions
    if (Array.isArray(subscriptions)) for (const subscription of subscriptions) position = newerEventId(position, subscription.lastWritten)
    if (position !== undefined) this.writeText(frameEvent(ReservedEvent.Position, POSITION_EVENT_DATA, position))
  }

  close (): void {
    this.end(CloseCode.Normal)
  }

  /** Ends the response; `code` says why, for the diagnostics channels. */
  private end (code: number): void {
    if (!this.isOpen) return
    // The topic events before the end.
    if (this.runEnd !== 0) this.flushRun()
    this.raw.end()
    this.finish(code)
  }

  get signal (): AbortSignal {
    const extras = this.extra()
    if (extras.controller === undefined) {
      extras.controller = new AbortController()
      if (!this.isOpen) extras.controller.abort()
    }
    return extras.controller.signal
  }

  get closed (): Promise<void> {
    const extras = this.extra()
    if (extras.closedPromise === undefined) {
      extras.closedPromise = this.isOpen
        ? new Promise((resolve) => { extras.resolveClosed = resolve })
        : Promise.resolve()
    }
    return extras.closedPromise
  }

  /**
   * Writes a topic event's chunk made by {@link chunk}, counted as sent: joined with the tick's other
   * topic events to this socket while they stay under its high-water mark. @internal
   */
  write (frame: Buffer): boolean {
    if (!this.isOpen) return false
    this.host.hub.counters.sent++
    const socket = this.socket
    if (socket !== undefined && !this.congested && joinRun(this, socket, lane, frame, this.maxBufferedBytes)) return true
    return this.push(frame)
  }

  /** Writes the tick's run of topic events; dropped once the stream has ended. @internal */
  flushRun (): void {
    const frame = takeRun(this, lane)
    if (this.isOpen) this.push(frame)
  }

  /** Writes a chunk, after the run before it, tracking unsent bytes; cuts the stream past maxBufferedBytes. */
  private push (frame: Buffer): boolean {
    if (this.runEnd !== 0) this.flushRun()
    const socket = this.socket
    let flushed: boolean
    if (socket !== undefined) {
      corkForTick(this, socket)
      flushed = socket.write(frame)
      flushLargeCork(this, socket)
    } else {
      flushed = (this.raw as ServerResponse).write(chunkBody(frame))
    }
    if (!flushed || this.congested) {
      if (!this.congested) {
        this.congested = true
        // Made on first need: most streams never wait for a drain.
        const extras = this.extra()
        extras.onDrain ??= () => {
          this.congested = false
          this.host.stalls.unwatch(this.limits.stallTimeout, this)
          this.releaseDrainWaiters()
        }
        ;(socket ?? this.raw).once('drain', extras.onDrain)
        this.host.stalls.watch(this.limits.stallTimeout, this)
      } else {
        (this.extras as StreamExtras).writtenWhileCongested += frame.length
      }
      // What is still unsent, not what was written since the congestion began: a client that reads
      // steadily, slower than the server writes, keeps the socket above its high-water mark (so no
      // 'drain') while it takes everything.
      if ((socket ?? this.raw).writableLength > this.maxBufferedBytes) this.cutSlowConsumer()
    }
    return true
  }

  /** @internal */
  get unsentBytes (): number {
    return (this.socket ?? this.raw).writableLength
  }

  /** @internal */
  get writtenBytes (): number {
    return (this.extras as StreamExtras).writtenWhileCongested
  }

  /** @internal */
  get queuedBytes (): number {
    return queuedBytesOf(this.socket ?? this.raw.socket as Socket | null)
  }

  /** Writes a frame given as text. */
  private writeText (frame: string): boolean {
    if (!this.isOpen) return false
    this.host.hub.counters.sent++
    return this.push(chunk(frame))
  }

  /** @internal */
  heartbeat (): void {
    // A congested stream already has bytes in flight; a heartbeat would only add to them.
    if (!this.congested) this.push(HEARTBEAT_CHUNK)
  }

  /** Closes a consumer that does not read: destroying the socket frees its buffer at once. @internal */
  cutSlowConsumer (): void {
    // Callers hold an open stream: write() checks, and a closed stream has no subscriptions left.
    this.log.warn({ maxBufferedBytes: this.maxBufferedBytes }, 'fastify-realtime: SSE client is not reading; closed as a slow consumer')
    this.cut(undefined)
  }

  /** Closes a stream whose socket sent nothing for stallTimeout: its client stopped reading. @internal */
  cutStalled (): void {
    this.log.warn({ stallTimeout: this.limits.stallTimeout }, 'fastify-realtime: SSE client has not read for stallTimeout ms; closed as a slow consumer')
    this.cut(this.limits.stallTimeout)
  }

  /** Counts and reports a slow consumer, then closes it: destroying the socket frees its buffer at once. */
  private cut (stallTimeout: number | undefined): void {
    this.host.hub.counters.slowConsumers++
    if (channels.consumerSlow.hasSubscribers) {
      const bufferedBytes = (this.socket ?? this.raw as ServerResponse).writableLength
      channels.consumerSlow.publish({ ...this.describe(), bufferedBytes, maxBufferedBytes: this.maxBufferedBytes, ...(stallTimeout === undefined ? {} : { stallTimeout }) })
    }
    this.finish(CloseCode.SlowConsumer)
    this.raw.destroy()
  }

  /** Ends the stream after a source or handler error: logged, a sanitized `realtime.error`, then the end. @internal */
  fail (err: unknown): void {
    // A source or handler that rejects because the client left (an aborted signal) is no failure.
    if (!this.isOpen) return
    this.log.error({ err }, 'fastify-realtime: SSE source failed; the stream was ended')
    const { code, message } = clientError(err, 'SOURCE_ERROR', SOURCE_ERROR_MESSAGE)
    this.writeText(frameEvent(ReservedEvent.Error, JSON.stringify({ code, message })))
    this.end(CloseCode.InternalError)
  }

  /** Ends the stream because the server is closing; the client reconnects elsewhere or later. @internal */
  shutdown (): void {
    // Only open streams are shut down: the preClose loop walks host.open, reply.sse() a new stream.
    this.end(CloseCode.GoingAway)
    // Nothing else will use this connection: release it now rather than leave it idle.
    const request = this.raw.req as any
    if (request.httpVersionMajor >= 2) request.stream?.session?.close()
    else (this.raw as ServerResponse).once('finish', () => request.socket?.end?.())
  }

  /** Pulls an iterable one item at a time, waiting for `drain` between writes. @internal */
  async pump (iterable: AsyncIterable<unknown> | Iterable<unknown>): Promise<void> {
    let iterator: AsyncIterator<unknown> | Iterator<unknown>
    try {
      iterator = typeof (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function'
        ? (iterable as AsyncIterable<unknown>)[Symbol.asyncIterator]()
        : (iterable as Iterable<unknown>)[Symbol.iterator]()
      const extras = this.extra()
      extras.source = iterator
      let sinceYield = 0
      while (this.isOpen) {
        const result = await iterator.next()
        if (result.done === true) {
          extras.sourceStopped = true
          break
        }
        if (!this.isOpen) break
        this.sendItem(result.value)
        if (this.congested) {
          sinceYield = 0
          await this.drained()
        } else if (++sinceYield === SOURCE_YIELD_EVERY) {
          // A source that never waits, read by a client that keeps up, would otherwise hold the
          // event loop in microtasks forever: give other connections and timers their turn.
          sinceYield = 0
          await new Promise(setImmediate)
        }
      }
      this.close()
    } catch (err) {
      this.extra().sourceStopped = true
      this.fail(err)
    }
  }

  private sendItem (item: unknown): void {
    if (item === null || typeof item !== 'object') {
      throw new FRT_ERR_INVALID_OPTION('source item', 'expected { event, data, id?, retry? }')
    }
    const { event, data, id, retry } = item as { event?: string, data: unknown, id?: string, retry?: number }
    if (this.compiled === undefined && event === undefined) {
      this.writeText(frameEvent(undefined, typeof data === 'string' ? data : serializeJson('message', data), id, retry))
      return
    }
    this.send(event as string, data, { id, retry })
  }

  /** Resolves on `drain`, or at once when the stream ends: the wait never outlives the client. @internal */
  drained (): Promise<void> {
    if (!this.isOpen) return Promise.resolve()
    const extras = this.extra()
    return new Promise((resolve) => {
      extras.drainWaiters ??= []
      extras.drainWaiters.push(resolve)
    })
  }

  /** @internal */
  reset (topics: string[]): void {
    this.writeText(frameEvent(ReservedEvent.Reset, resetEventData(topics)))
  }

  /** Resume cannot be answered now; closing lets the client come back with the same Last-Event-ID. @internal */
  historyFailed (err: unknown): void {
    this.log.error({ err }, 'fastify-realtime: cannot read the history to resume an SSE stream; it was closed')
    this.end(CloseCode.InternalError)
  }

  /** The client is gone. @internal */
  gone (): void {
    // A request 'error' is the client leaving mid-upload, or an aborted inject(); a response
    // 'close' or 'error' is the connection ending. Either way the stream is over.
    if (!this.isOpen) return
    this.finish(CloseCode.Abnormal)
    if (!this.raw.destroyed) this.raw.destroy()
  }

  private releaseDrainWaiters (): void {
    const extras = this.extras as StreamExtras
    const waiters = extras.drainWaiters
    if (waiters === undefined) return
    extras.drainWaiters = undefined
    for (const resolve of waiters) resolve()
  }

  /** Releases everything the stream holds; runs exactly once. `code` says why, for the diagnostics channels. */
  private finish (code: number): void {
    this.isOpen = false
    const counters = this.host.hub.counters
    counters.sse--
    counters.closed++
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ ...this.describe(), code, durationMs: performance.now() - this.openedAt })
    }
    const raw = this.raw as ServerResponse
    raw.req.removeListener('error', onGone)
    this.host.open.delete(this)
    const { heartbeat, stallTimeout } = this.limits
    if (heartbeat > 0) this.host.heartbeats.remove(heartbeat, this)
    if (this.congested) this.host.stalls.unwatch(stallTimeout, this)
    const subscriptions = this.subscriptions
    if (subscriptions !== undefined) {
      this.subscriptions = undefined
      if (Array.isArray(subscriptions)) for (const subscription of subscriptions) subscription.stop()
      else subscriptions.stop()
    }
    const extras = this.extras
    if (extras === undefined) return
    if (extras.onDrain !== undefined) (this.socket ?? raw).removeListener('drain', extras.onDrain)
    this.releaseDrainWaiters()
    this.stopSource(extras)
    extras.controller?.abort()
    const requestSignal = extras.requestSignal
    if (requestSignal !== undefined && !requestSignal.signal.aborted) requestSignal.abort()
    extras.resolveClosed?.()
  }

  private stopSource (extras: StreamExtras): void {
    const source = extras.source
    if (source === undefined || extras.sourceStopped) return
    extras.sourceStopped = true
    if (typeof source.return !== 'function') return
    try {
      const result = source.return()
      if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
        (result as Promise<unknown>).then(undefined, (err: unknown) => this.logReturnError(err))
      }
    } catch (err) {
      this.logReturnError(err)
    }
  }

  private logReturnError (err: unknown): void {
    this.log.error({ err }, 'fastify-realtime: the SSE source threw while being stopped')
  }
}
