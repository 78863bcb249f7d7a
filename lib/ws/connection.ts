import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type WebSocket from 'ws'
import {
  serializeEventData,
  serializeJson,
  type AnyContract,
  type CompiledContract,
  type EventData,
  type EventName,
  type ValidationDetail
} from '../contract.js'
import { FRT_ERR_INVALID_OPTION } from '../errors.js'
import type { TopicRules } from '../options.js'
import { isTopic, topicNames, type AnyTopic, type Encoder, type Hub } from '../hub/hub.js'
import { CORK_LIMIT, Lane, corkForTick, flushLargeCork, joinRun, takeRun, type Corkable } from '../transport/cork.js'
import { Subscription, type OnLive, type Sink } from '../hub/subscription.js'
import { clientError } from '../public-error.js'
import type { Authenticated } from './auth.js'
import { closeCodeOfWsError, tcpSocketOf } from '../internals.js'
import { CloseCode, isSendableCloseCode } from '../protocol/close-codes.js'
import {
  ErrorCode,
  errorMessage,
  eventMessage,
  helloMessage,
  replyMessage,
  resetMessage,
  type MessageId,
  type WsErrorCode
} from '../protocol/messages.js'
import { ReservedMessage, SUBPROTOCOL } from '../protocol/names.js'
import { kConnection } from '../symbols.js'
import type { WsRouteEntry } from '../asyncapi/registry.js'
import { channels, traceHandler, type ConnectionInfo } from '../diagnostics.js'
import { encodeWsEvent, framePayload } from './frame.js'
import type { PendingUpgrades } from './pending-upgrades.js'
import type { RealtimeSocket, SocketOwner } from './socket.js'
import { ProtocolError, parseMessage, type InboundMessage } from './inbound.js'
import { clientSubscribe, clientUnsubscribe } from './topics.js'

/** Augment to type `conn.user`: `declare module 'fastify-realtime' { interface RealtimeTypes { user: { name: string } } }`. */
export interface RealtimeTypes {}

/** The type of `conn.user`: `RealtimeTypes['user']` when declared, else unknown. */
export type RealtimeUser = RealtimeTypes extends { user: infer U } ? U : unknown

/** `send` of a connection: typed by the route's contract, untyped without one. */
export type ConnectionSend<C extends AnyContract | undefined> = [C] extends [AnyContract]
  ? <K extends EventName<C>>(event: K, data: EventData<C, K>) => boolean
  : (event: string, data: unknown) => boolean

/** Options of `conn.subscribe()`. */
export interface ConnectionSubscribeOptions {
  /** An event id to resume after: the events of the topic after it are replayed first. */
  after?: string
}

/** One WebSocket connection of an `app.ws()` route. */
export interface Connection<C extends AnyContract | undefined = AnyContract | undefined> {
  /** A random id, unique per connection. */
  readonly id: string
  /** What `authenticate` returned (its `user` when it returned `{ user, expiresAt }`). */
  readonly user: RealtimeUser
  /** The upgrade request. */
  readonly request: FastifyRequest
  /** The request's logger. */
  readonly log: FastifyBaseLogger
  /**
   * Validates (against the contract's events) and sends one event. Returns false, and never throws,
   * once the connection is closed; throws `FRT_ERR_UNKNOWN_EVENT` / `FRT_ERR_VALIDATION` while open.
   */
  readonly send: ConnectionSend<C>
  /**
   * Subscribes to a topic: replays its events after `after` (or sends `{"type":"reset"}` when that id
   * cannot be resumed), then delivers live. Resolves once the replay is queued; never rejects.
   */
  subscribe (topic: AnyTopic, options?: ConnectionSubscribeOptions): Promise<void>
  /** Stops delivering a topic's events. */
  unsubscribe (topic: AnyTopic): void
  /** Closes the connection (default 1000). Idempotent. */
  close (code?: number, reason?: string): void
  /** Aborted when the connection ends, for any reason. */
  readonly signal: AbortSignal
}

/** A message handler: gets the validated data, returns the reply data. */
export type MessageHandler = (data: any, conn: Connection<any>) => unknown

/** Per-route settings, normalized once at registration. @internal */
export interface WsRouteSettings {
  readonly compiled: CompiledContract | undefined
  readonly handlers: ReadonlyMap<string, MessageHandler>
  readonly onOpen: ((conn: Connection<any>) => unknown) | undefined
  readonly onClose: ((conn: Connection<any>, code: number, reason: string) => unknown) | undefined
  readonly maxPayload: number
  /** The plugin's ping interval (0: off), told to clients in the hello. */
  readonly heartbeat: number
  readonly rateLimit: { readonly messages: number, readonly intervalMs: number } | false
  readonly maxBufferedBytes: number
  /** The route as the AsyncAPI document and the diagnostics channels know it (its URL pattern). */
  readonly entry: WsRouteEntry
  /** What clients may subscribe to; undefined: nothing. */
  readonly topics: TopicRules | undefined
  readonly maxSubscriptions: number
}

/** What all connections of one plugin registration share. @internal */
export interface WsHost {
  readonly hub: Hub
  /** Sockets of upgrade requests not yet connections (still in Fastify's hooks). */
  readonly upgrading: PendingUpgrades
}

const BAD_MESSAGES_BEFORE_CLOSE = 10

/**
 * A random UUID as a flat string: randomUUID() returns a rope of a dozen pieces, over 400 bytes
 * for as long as the connection lives, where a flat copy takes 56.
 */
function flatId (): string {
  return Buffer.from(randomUUID(), 'latin1').toString('latin1')
}
const MAX_TIMER = 2 ** 31 - 1
// The shared frames of topic events written in this tick, which each connection's run is a slice of.
const lane = new Lane()
const HANDLER_ERROR_MESSAGE = 'The handler failed.'

/** Close codes and reasons an application may send (RFC 6455 sections 5.5.1 and 7.4). */
function assertCloseCode (code: unknown, reason: unknown): void {
  if (!isSendableCloseCode(code)) throw new FRT_ERR_INVALID_OPTION('code', `expected a close code of 1000-1014 (not 1004-1006) or 3000-4999, got ${String(code)}`)
  if (typeof reason !== 'string' || Buffer.byteLength(reason) > 123) {
    throw new FRT_ERR_INVALID_OPTION('reason', 'expected a string of at most 123 bytes')
  }
}

function pauseSocket (socket: Socket): void {
  socket.pause()
}

function isPromise (value: unknown): value is Promise<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<unknown>).then === 'function'
}

/**
 * What only some connections need, made on first need: a connection that only receives topic
 * events never sends a message, never waits for a drain, and ends once.
 */
class ConnectionState {
  // Messages waiting for the one in progress, as [data, rateLimited] pairs: answers keep arrival order.
  readonly queue: Array<Buffer | boolean> = []
  queuedBytes = 0
  busy = false
  badInARow = 0
  windowStart = 0
  windowCount = 0
  serverCode: number | undefined
  serverReason = ''
  expiresAt: number | undefined
  expiryTimer: NodeJS.Timeout | undefined
  drainWaiters: (() => void)[] | undefined
  onDrain: (() => void) | undefined
  controller: AbortController | undefined
}

/** @internal */
export class ConnectionImpl implements Sink, Corkable, SocketOwner {
  readonly user: RealtimeUser
  readonly request: FastifyRequest
  isOpen = true
  corked = false
  runStart = 0
  runEnd = 0
  /** Cleared at each heartbeat ping, set by any pong or message. @internal */
  alive = true
  private readonly socket: WebSocket
  private readonly tcp: Socket
  // No extension negotiated: pre-built frames may go straight to the socket, in order with ws's own.
  private readonly plain: boolean
  private readonly route: WsRouteSettings
  private readonly host: WsHost
  // One subscription, or one per topic in an array sized to fit (a Map would cost 250 bytes for one).
  private subscriptions: Subscription | Subscription[] | undefined
  // Whole ms of the process's clock: a small integer kept in the object, where a fraction would
  // take a number of its own (16 bytes) per connection.
  private readonly openedAt = Math.trunc(performance.now())
  // Made when first read (most connections never are): the id's string costs 56 bytes.
  private idValue: string | undefined
  private state: ConnectionState | undefined

  constructor (socket: WebSocket, request: FastifyRequest, auth: Authenticated | null, route: WsRouteSettings, host: WsHost) {
    this.socket = socket
    this.tcp = tcpSocketOf(socket)
    this.plain = socket.extensions === ''
    host.upgrading.delete(this.tcp)
    this.request = request
    this.user = auth?.user as RealtimeUser
    this.route = route
    this.host = host
    // The socket hands its events to the connection (./socket.ts); the server's `clients` holds it.
    ;(socket as RealtimeSocket)[kConnection] = this
    const counters = host.hub.counters
    counters.ws++
    counters.opened++
    if (channels.connectionOpen.hasSubscribers) channels.connectionOpen.publish(this.describe())
    const expiresAt = auth?.expiresAt
    if (expiresAt !== undefined) {
      this.extra.expiresAt = expiresAt
      this.scheduleExpiry()
    }
    // The first message, before anything onOpen sends; clients of the plain wire never get it.
    if (socket.protocol === SUBPROTOCOL) {
      this.writeText(helloMessage({ connectionId: this.id, heartbeatMs: route.heartbeat, maxPayload: route.maxPayload, expiresAt: expiresAt ?? null }))
    }
    if (route.onOpen !== undefined) this.open(route.onOpen)
  }

  /** @internal */
  describe (): ConnectionInfo {
    return { transport: 'ws', route: this.route.entry.url, connectionId: this.id }
  }

  /** A random id, unique per connection. */
  get id (): string {
    this.idValue ??= flatId()
    return this.idValue
  }

  /** The request's logger. */
  get log (): FastifyBaseLogger {
    return this.request.log
  }

  /** Unsent bytes at which the connection is closed as a slow consumer. @internal */
  get maxBufferedBytes (): number {
    return this.route.maxBufferedBytes
  }

  private get extra (): ConnectionState {
    this.state ??= new ConnectionState()
    return this.state
  }

  send (event: string, data: unknown): boolean {
    if (!this.writable) return false
    this.writeText(eventMessage(event, serializeEventData(this.route.compiled, event, data)))
    return true
  }

  subscribe (topic: AnyTopic, options?: { after?: string }): Promise<void> {
    if (!isTopic(topic)) throw new FRT_ERR_INVALID_OPTION('topic', 'expected a topic from fastify.realtime.topic()')
    const after = options?.after
    if (after !== undefined && typeof after !== 'string') throw new FRT_ERR_INVALID_OPTION('after', 'expected an event id string')
    if (!this.isOpen || this.subscriptionOf(topic.name) !== undefined) return Promise.resolve()
    return this.addSubscription(topic, after, undefined).ready
  }

  unsubscribe (topic: AnyTopic): void {
    if (!isTopic(topic)) throw new FRT_ERR_INVALID_OPTION('topic', 'expected a topic from fastify.realtime.topic()')
    const subscription = this.subscriptionOf(topic.name)
    if (subscription !== undefined) this.removeSubscription(subscription)
  }

  // ---- for client subscriptions (./topics.ts) ----

  /** The hub the connection's topics live in. @internal */
  get hub (): Hub {
    return this.host.hub
  }

  /** Encodes topic events for this transport. @internal */
  get encode (): Encoder<Buffer> {
    return encodeWsEvent
  }

  /** How many topics the connection holds. @internal */
  get subscriptionCount (): number {
    const current = this.subscriptions
    return current === undefined ? 0 : Array.isArray(current) ? current.length : 1
  }

  /** The connection's subscription to a topic, if any. @internal */
  subscriptionOf (name: string): Subscription | undefined {
    const current = this.subscriptions
    if (current === undefined || !Array.isArray(current)) return current?.topics[0] === name ? current : undefined
    return current.find((subscription) => subscription.topics[0] === name)
  }

  /** Subscribes to a topic the connection does not hold, and starts it; the hub holds the topic from now on. @internal */
  addSubscription (topic: AnyTopic, after: string | undefined, onLive: OnLive | undefined): Subscription {
    const subscription = new Subscription(this, topicNames([topic]))
    const current = this.subscriptions
    this.subscriptions = current === undefined ? subscription : [...(Array.isArray(current) ? current : [current]), subscription]
    subscription.start(after, onLive)
    return subscription
  }

  /** Ends a subscription of the connection. @internal */
  removeSubscription (subscription: Subscription): void {
    subscription.stop()
    const current = this.subscriptions as Subscription | Subscription[]
    const rest = Array.isArray(current) ? current.filter((other) => other !== subscription) : []
    this.subscriptions = rest.length === 0 ? undefined : rest.length === 1 ? rest[0] : rest
  }

  /** Sends an answer (a reply or an error) to a message. @internal */
  answer (text: string): void {
    this.writeText(text)
  }

  /** A well-formed message: the count of bad messages in a row starts over. @internal */
  goodMessage (): void {
    this.extra.badInARow = 0
  }

  close (code: number = CloseCode.Normal, reason = ''): void {
    assertCloseCode(code, reason)
    this.closeWith(code, reason)
  }

  get signal (): AbortSignal {
    const state = this.extra
    if (state.controller === undefined) {
      state.controller = new AbortController()
      if (!this.isOpen) state.controller.abort()
    }
    return state.controller.signal
  }

  /**
   * Open, and no close frame received: once the client's close frame arrives (ws answers it and
   * waits for the TCP end, up to its close timeout), nothing more can reach the client, and ws
   * would count dropped frames as unsent bytes.
   */
  private get writable (): boolean {
    return this.isOpen && this.socket.readyState === 1
  }

  // ---- Sink, for topic subscriptions ----

  get congested (): boolean {
    return this.tcp.writableNeedDrain
  }

  /**
   * Writes a frame made by {@link textFrame}: as it is, to the socket, when no extension is in use;
   * through ws otherwise. Closes a consumer whose unsent bytes pass maxBufferedBytes. @internal
   */
  write (frame: Buffer): void {
    if (!this.plain) return this.out(framePayload(frame))
    // The fan-out path, once per connection per event: no extension, so ws buffers nothing of its
    // own and the socket's unsent bytes are all the connection's. Joined with the tick's other
    // topic events to this socket while they stay under its high-water mark.
    if (!this.writable) return
    this.host.hub.counters.sent++
    if (joinRun(this, this.tcp, lane, frame, this.route.maxBufferedBytes)) return
    this.writeFrame(frame)
  }

  /** Writes the tick's run of topic events; dropped once nothing more can reach the client. @internal */
  flushRun (): void {
    const frame = takeRun(this, lane)
    if (this.writable) this.writeFrame(frame)
  }

  /** Writes pre-built frames straight to the socket. */
  private writeFrame (frame: Buffer): void {
    const tcp = this.tcp
    if (!this.corked) corkForTick(this, tcp)
    tcp.write(frame)
    const unsent = tcp.writableLength
    if (unsent > CORK_LIMIT) flushLargeCork(this, tcp)
    if (unsent > this.route.maxBufferedBytes) this.cutSlowConsumer()
  }

  /** Sends a text message through ws (replies, errors, conn.send). */
  private writeText (text: string): void {
    this.out(text)
  }

  /**
   * Sends a message through ws, batched with the tick's other writes; closes a consumer whose
   * unsent bytes pass maxBufferedBytes.
   */
  private out (data: Buffer | string): void {
    if (!this.writable) return
    if (this.runEnd !== 0) this.flushRun()
    this.host.hub.counters.sent++
    const tcp = this.tcp
    corkForTick(this, tcp)
    this.socket.send(data, { binary: false })
    flushLargeCork(this, tcp)
    if (this.socket.bufferedAmount > this.maxBufferedBytes) this.cutSlowConsumer()
  }

  drained (): Promise<void> {
    if (!this.isOpen) return Promise.resolve()
    const state = this.extra
    return new Promise((resolve) => {
      if (state.drainWaiters === undefined) {
        state.drainWaiters = []
        state.onDrain ??= () => { this.releaseDrainWaiters() }
        this.tcp.once('drain', state.onDrain)
      }
      state.drainWaiters.push(resolve)
    })
  }

  /** @internal */
  cutSlowConsumer (): void {
    this.log.warn({ maxBufferedBytes: this.maxBufferedBytes }, 'fastify-realtime: WebSocket client is not reading; closed as a slow consumer')
    this.host.hub.counters.slowConsumers++
    if (channels.consumerSlow.hasSubscribers) {
      channels.consumerSlow.publish({ ...this.describe(), bufferedBytes: this.socket.bufferedAmount, maxBufferedBytes: this.maxBufferedBytes })
    }
    // It will not read the close frame behind its backlog: ws destroys the socket after closeTimeout.
    this.closeWith(CloseCode.SlowConsumer, 'slow consumer')
  }

  reset (topics: readonly string[]): void {
    for (const topic of topics) this.writeText(resetMessage(topic))
  }

  historyFailed (err: unknown): void {
    this.log.error({ err }, 'fastify-realtime: cannot read the history to resume a WebSocket subscription; the connection was closed')
    this.closeWith(CloseCode.InternalError, 'history unavailable')
  }

  // ---- lifecycle ----

  /** Closes with the server's own code, which onClose reports. @internal */
  closeWith (code: number, reason: string): void {
    if (!this.isOpen) return
    // The topic events before the close frame.
    if (this.runEnd !== 0) this.flushRun()
    this.isOpen = false
    const state = this.extra
    state.serverCode = code
    state.serverReason = reason
    this.socket.close(code, reason)
    if (code === CloseCode.RateLimited || code === CloseCode.TooManyBadMessages) this.stopReading()
    // The app sees the end now (signal, no more topic events), not when the close handshake ends.
    this.release()
  }

  /**
   * Reads nothing more from a peer that broke the protocol or abused the connection. ws would read
   * (and discard) whatever it sends until the close handshake ends or times out: a peer that keeps
   * writing would cost the server that second of reading at full speed. Paused, TCP holds it back.
   */
  private stopReading (): void {
    // After ws's own resume(), which it schedules on the next tick when its parser fails.
    process.nextTick(pauseSocket, this.tcp)
  }

  /** Stops everything the connection holds besides its socket; safe to run twice. */
  private release (): void {
    const subscriptions = this.subscriptions
    if (subscriptions !== undefined) {
      this.subscriptions = undefined
      if (Array.isArray(subscriptions)) for (const subscription of subscriptions) subscription.stop()
      else subscriptions.stop()
    }
    const state = this.state
    if (state === undefined) return
    clearTimeout(state.expiryTimer)
    state.queue.length = 0
    state.queuedBytes = 0
    this.releaseDrainWaiters()
    state.controller?.abort()
  }

  /** A heartbeat tick: terminate a peer that did not answer the last ping, else ping it. @internal */
  heartbeat (): void {
    if (!this.alive) {
      this.socket.terminate()
      return
    }
    this.alive = false
    this.socket.ping()
  }

  private open (onOpen: (conn: Connection<any>) => unknown): void {
    let result: unknown
    try {
      result = onOpen(this as unknown as Connection<any>)
    } catch (err) {
      this.openFailed(err)
      return
    }
    if (!isPromise(result)) return
    // Messages that arrive while onOpen runs wait in the queue, in order.
    this.extra.busy = true
    result.then(() => this.drain(), (err: unknown) => this.openFailed(err))
  }

  private openFailed (err: unknown): void {
    this.log.error({ err }, 'fastify-realtime: onOpen failed; the connection was closed')
    this.closeWith(CloseCode.InternalError, 'server error')
  }

  /** A message from the peer. @internal */
  message (data: Buffer, isBinary: boolean): void {
    if (!this.isOpen) return
    this.host.hub.counters.received++
    this.alive = true
    if (isBinary) return this.closeWith(CloseCode.UnsupportedData, 'binary frames are not accepted')
    if (data.length > this.route.maxPayload) return this.closeWith(CloseCode.MessageTooBig, 'message too big')
    const limited = this.countForRateLimit()
    if (limited === undefined) return
    const state = this.extra
    if (state.busy) {
      // Messages waiting behind a slow handler are bounded like outbound bytes are.
      state.queuedBytes += data.length
      if (state.queuedBytes > this.maxBufferedBytes) return this.closeWith(CloseCode.RateLimited, 'too many pending messages')
      state.queue.push(data, limited)
      return
    }
    this.process(data, limited)
  }

  /** A ping (counted as a message by the rate limit) or a pong from the peer. @internal */
  control (ping: boolean): void {
    this.alive = true
    if (ping) this.countForRateLimit()
  }

  /** Counts one message: false when allowed, true when over the limit, undefined when the connection was closed for abuse. */
  private countForRateLimit (): boolean | undefined {
    const limit = this.route.rateLimit
    if (limit === false) return false
    const state = this.extra
    const now = Date.now()
    if (now - state.windowStart >= limit.intervalMs) {
      state.windowStart = now
      state.windowCount = 0
    }
    state.windowCount++
    if (state.windowCount <= limit.messages) return false
    if (state.windowCount > limit.messages * 2) {
      this.closeWith(CloseCode.RateLimited, 'rate limit exceeded')
      return undefined
    }
    return true
  }

  private process (data: Buffer, limited: boolean): void {
    const pending = this.handle(data, limited)
    if (pending === undefined) return
    this.extra.busy = true
    pending.then(() => this.drain())
  }

  private drain (): void {
    const state = this.extra
    while (state.queue.length > 0 && this.isOpen) {
      const data = state.queue.shift() as Buffer
      const limited = state.queue.shift() as boolean
      state.queuedBytes -= data.length
      const pending = this.handle(data, limited)
      if (pending !== undefined) {
        pending.then(() => this.drain())
        return
      }
    }
    state.busy = false
  }

  /** Handles one message; returns a promise while an async handler runs, which never rejects. */
  private handle (data: Buffer, limited: boolean): Promise<void> | undefined {
    const message = parseMessage(data.toString())
    if (limited) {
      const limit = this.route.rateLimit as { messages: number, intervalMs: number }
      this.writeText(errorMessage(message.id, ErrorCode.RateLimited, `Too many messages: at most ${limit.messages} per ${limit.intervalMs} ms.`))
      return undefined
    }
    if (message instanceof ProtocolError) return this.badMessage(message.id, message.code, message.message)
    switch (message.type) {
      case ReservedMessage.Subscribe: return clientSubscribe(this, this.route, message)
      case ReservedMessage.Unsubscribe: return clientUnsubscribe(this, message)
      case ReservedMessage.Ping:
        this.extra.badInARow = 0
        if (message.id !== undefined) this.writeText(replyMessage(message.id, '{}'))
        return undefined
    }
    const handler = this.route.handlers.get(message.type)
    if (handler === undefined) return this.badMessage(message.id, ErrorCode.UnknownType, 'Unknown message type.')
    const failure = (this.route.compiled as CompiledContract).messages.get(message.type)?.check(message.data)
    if (failure !== undefined) {
      return this.badMessage(message.id, ErrorCode.Validation, `The data of "${message.type}" does not match its schema.`, [failure])
    }
    this.extra.badInARow = 0
    if (channels.wsHandler.hasSubscribers) return this.traced(handler, message)
    let result: unknown
    try {
      result = handler(message.data, this as unknown as Connection<any>)
    } catch (err) {
      this.handlerFailed(message, err)
      return undefined
    }
    if (!isPromise(result)) {
      this.reply(message, result)
      return undefined
    }
    return result.then((value) => this.reply(message, value), (err: unknown) => this.handlerFailed(message, err))
  }

  /** Runs a handler inside the tracing channel, answering as {@link handle} does. */
  private traced (handler: MessageHandler, message: InboundMessage): Promise<void> | undefined {
    return traceHandler(
      { ...this.describe(), transport: 'ws', type: message.type, async: false },
      () => handler(message.data, this as unknown as Connection<any>),
      (value) => this.reply(message, value),
      (err) => this.handlerFailed(message, err)
    )
  }

  /** Answers a bad message; the 10th in a row closes the connection. @internal */
  badMessage (id: MessageId | undefined, code: WsErrorCode, message: string, details?: ValidationDetail[]): undefined {
    this.host.hub.counters.invalid++
    if (channels.messageInvalid.hasSubscribers) channels.messageInvalid.publish({ ...this.describe(), code })
    this.writeText(errorMessage(id, code, message, details))
    if (++this.extra.badInARow >= BAD_MESSAGES_BEFORE_CLOSE) this.closeWith(CloseCode.TooManyBadMessages, 'too many bad messages')
    return undefined
  }

  private reply (message: InboundMessage, value: unknown): void {
    if (message.id === undefined) return
    const failure = this.route.compiled?.replies.get(message.type)?.check(value)
    let json: string | undefined
    try {
      if (failure !== undefined) throw Object.assign(new Error(`The reply of "${message.type}" does not match its schema at "${failure.path || '/'}": ${failure.message}`), { details: [failure] })
      // No value (a void handler, or one its schema allows, such as Type.Unknown()): a reply without data.
      json = value === undefined ? undefined : serializeJson(message.type, value)
    } catch (err) {
      return this.handlerFailed(message, err)
    }
    this.writeText(replyMessage(message.id, json))
  }

  private handlerFailed (message: InboundMessage, err: unknown): void {
    this.log.error({ err, messageType: message.type }, 'fastify-realtime: a WebSocket message handler failed')
    const { code, message: text } = clientError(err, ErrorCode.HandlerError, HANDLER_ERROR_MESSAGE)
    this.writeText(errorMessage(message.id, code, text))
  }

  private scheduleExpiry (): void {
    const expiresAt = (this.state as ConnectionState).expiresAt as number
    const delay = expiresAt - Date.now()
    const state = this.extra
    state.expiryTimer = setTimeout(() => {
      // Timers cap at about 24.8 days: a later expiry takes several hops.
      if (Date.now() < expiresAt) this.scheduleExpiry()
      else this.closeWith(CloseCode.AuthExpired, 'authentication expired')
    }, Math.min(Math.max(delay, 0), MAX_TIMER))
    state.expiryTimer.unref()
  }

  /** An error of the socket. @internal */
  socketError (err: Error): void {
    // ws closes the socket itself after a protocol error (1002, 1007, 1009): report that code.
    this.extra.serverCode ??= closeCodeOfWsError(err)
    this.log.debug({ err }, 'fastify-realtime: WebSocket error')
    this.stopReading()
  }

  private releaseDrainWaiters (): void {
    const state = this.state as ConnectionState
    const waiters = state.drainWaiters
    if (waiters === undefined) return
    state.drainWaiters = undefined
    this.tcp.removeListener('drain', state.onDrain as () => void)
    for (const resolve of waiters) resolve()
  }

  /** The socket closed. @internal */
  closed (code: number, reason: Buffer): void {
    this.isOpen = false
    this.release()
    const serverCode = this.state?.serverCode
    const finalCode = serverCode ?? code
    const counters = this.host.hub.counters
    counters.ws--
    counters.closed++
    if (channels.connectionClose.hasSubscribers) {
      channels.connectionClose.publish({ ...this.describe(), code: finalCode, durationMs: performance.now() - this.openedAt })
    }
    const onClose = this.route.onClose
    if (onClose === undefined) return
    try {
      const result = onClose(this as unknown as Connection<any>, finalCode, serverCode === undefined ? reason.toString() : (this.state as ConnectionState).serverReason)
      if (isPromise(result)) result.then(undefined, (err: unknown) => this.onCloseFailed(err))
    } catch (err) {
      this.onCloseFailed(err)
    }
  }

  private onCloseFailed (err: unknown): void {
    this.log.error({ err }, 'fastify-realtime: onClose failed')
  }
}
