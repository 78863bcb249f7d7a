import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  RouteOptions,
  RouteShorthandOptions
} from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fastifyWebsocket from '@fastify/websocket'
import fp from 'fastify-plugin'
import type WebSocket from 'ws'
import type { PerMessageDeflateOptions } from 'ws'
import { compiledOf, type AnyContract, type MessageData, type MessageName, type ReplyData } from '../contract.js'
import {
  FRT_ERR_INVALID_OPTION,
  FRT_ERR_WS_AUTH_REQUIRED,
  FRT_ERR_WS_CONFLICT,
  FRT_ERR_WS_FORBIDDEN_ORIGIN,
  FRT_ERR_WS_MISSING_HANDLER,
  FRT_ERR_WS_UNAUTHORIZED
} from '../errors.js'
import type { Broker } from '../hub/broker.js'
import { attachHub } from '../hub/attach.js'
import { positiveInteger } from '../options.js'
import {
  authenticated,
  originAllowed,
  originPolicyOption,
  selectProtocol,
  type Authenticated,
  type OriginPolicy
} from './auth.js'
import {
  ConnectionImpl,
  statusCodeOf,
  type Connection,
  type MessageHandler,
  type WsHost,
  type WsRouteSettings
} from './connection.js'

/** Decides who may open a socket: returns the user, `{ user, expiresAt }`, or null/undefined (401). */
export type Authenticate = (request: FastifyRequest) => unknown

/** A per-connection message budget. */
export interface RateLimitOptions {
  /** Messages allowed per interval; each extra one gets a RATE_LIMITED error frame, over twice as many close with 4429. */
  messages: number
  /** The interval, in ms. */
  intervalMs: number
}

/** A per-address budget of upgrade requests. */
export interface UpgradeRateLimitOptions {
  /** Upgrade requests allowed per remote address per interval; more get HTTP 429 with Retry-After, before any WebSocket work. */
  upgrades: number
  /** The interval, in ms. */
  intervalMs: number
}

/** Options of the `fastifyWs` plugin. All optional, all with safe defaults. */
export interface FastifyWsOptions {
  /**
   * Runs before the upgrade: return the user (or `{ user, expiresAt }`), or null/undefined for HTTP 401;
   * throw an error with `statusCode` for another status. A route may override it, or opt out with `false`.
   */
  authenticate?: Authenticate
  /**
   * Origins allowed to open a socket: exact origins, or a predicate. Default: the `Origin`'s host and
   * port must equal the `Host` header. Requests with no `Origin` (non-browser clients) are allowed.
   */
  origins?: OriginPolicy
  /**
   * permessage-deflate; `maxPayload` applies after inflating.
   * @default false
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /**
   * Largest message in bytes; a larger one closes the connection with 1009.
   * @default 65536
   */
  maxPayload?: number
  /**
   * Ping interval in ms; a peer that has not answered the previous ping is terminated. `0`/`false`: off.
   * @default 30000
   */
  heartbeat?: number | false
  /**
   * Per-connection message budget (pings count); `false` turns it off.
   * @default { messages: 100, intervalMs: 1000 }
   */
  rateLimit?: RateLimitOptions | false
  /**
   * A budget of upgrade requests per remote address (the TCP peer's address, not X-Forwarded-For:
   * behind a proxy, its clients share one budget); over it, HTTP 429 with `Retry-After` before any
   * routing, hook or handshake. Off by default, since clients behind one proxy or NAT share an address.
   * @default false
   */
  upgradeRateLimit?: UpgradeRateLimitOptions | false
  /**
   * Unsent bytes at which a connection is closed with 1008 as a slow consumer.
   * @default 1048576
   */
  maxBufferedBytes?: number
  /**
   * The broker behind `fastify.realtime`, shared with `fastifySse`.
   * @default memoryBroker()
   */
  broker?: Broker
}

/** The message handlers of a route: one per message of its contract, typed by it. */
export type WsHandlers<C extends AnyContract | undefined> = [C] extends [AnyContract]
  ? { [K in MessageName<C>]: (data: MessageData<C, K>, conn: Connection<C>) => ReplyData<C, K> | Promise<ReplyData<C, K>> }
  : Record<string, never>

/** Options of `app.ws(url, options)`: the route's contract and handlers, overrides, and Fastify route options. */
export interface WsRouteOptions<C extends AnyContract | undefined = undefined> extends Omit<RouteShorthandOptions, 'websocket'> {
  /** Types and validates messages (in), their replies and events (out). */
  contract?: C
  /** One handler per message of the contract. */
  handlers?: WsHandlers<C>
  /** Runs when a connection opens; messages wait until it settles. A throw closes with 1011. */
  onOpen?: (conn: Connection<C>) => void | Promise<void>
  /** Runs exactly once per connection, with the code it ended with. */
  onClose?: (conn: Connection<C>, code: number, reason: string) => void | Promise<void>
  /** Overrides the plugin's; `false` makes the route public. */
  authenticate?: Authenticate | false
  /** Overrides the plugin's. */
  origins?: OriginPolicy
  /** Overrides the plugin's. */
  rateLimit?: RateLimitOptions | false
  /** Overrides the plugin's. */
  maxBufferedBytes?: number
  /** Lowers (never raises) the plugin's. */
  maxPayload?: number
}

/** `app.ws`: registers an authenticated, validated WebSocket route. */
export interface AppWs {
  <C extends AnyContract | undefined = undefined>(url: string, options: WsRouteOptions<C>): FastifyInstance
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Registers a WebSocket route (GET) on this instance. */
    ws: AppWs
  }
}

interface WsSettings {
  readonly authenticate: Authenticate | undefined
  readonly origins: OriginPolicy | undefined
  readonly perMessageDeflate: boolean | PerMessageDeflateOptions
  readonly maxPayload: number
  readonly heartbeat: number
  readonly rateLimit: RateLimitOptions | false
  readonly upgradeRateLimit: UpgradeRateLimitOptions | false
  readonly maxBufferedBytes: number
}

const kAuth = Symbol('fastify-realtime.ws.auth')
// Marks the handlers of app.ws() routes, which bring their own origin hook.
const kRealtimeRoute = Symbol('fastify-realtime.ws.route')
// How long a closing socket may take to answer the close frame before it is destroyed.
const CLOSE_TIMEOUT = 1000
// A message may come in fragments of 1 KiB on average, and in up to 64 whatever maxPayload: a flood
// of tiny fragments (ws allows 16,384 by default) is cut after a few hundred bytes, not 100 KB.
const MIN_FRAGMENT_BYTES = 1024
const MIN_MAX_FRAGMENTS = 64

function functionOption<T> (name: string, value: unknown): T | undefined {
  if (value !== undefined && typeof value !== 'function') throw new FRT_ERR_INVALID_OPTION(name, 'expected a function')
  return value as T | undefined
}

/** A `{ <count>, intervalMs }` limit (both positive integers), or false. */
function limitOption (name: string, count: string, value: unknown): Record<string, number> | false {
  if (value === false) return false
  const fields = (value ?? {}) as Record<string, unknown>
  if (typeof value !== 'object' || fields[count] === undefined || fields.intervalMs === undefined) {
    throw new FRT_ERR_INVALID_OPTION(name, `expected { ${count}, intervalMs } (both positive integers) or false`)
  }
  return Object.freeze({
    [count]: positiveInteger(`${name}.${count}`, fields[count], undefined) as number,
    intervalMs: positiveInteger(`${name}.intervalMs`, fields.intervalMs, undefined) as number
  })
}

function rateLimitOption (value: unknown): RateLimitOptions | false {
  return limitOption('rateLimit', 'messages', value) as RateLimitOptions | false
}

function upgradeRateLimitOption (value: unknown): UpgradeRateLimitOptions | false {
  return limitOption('upgradeRateLimit', 'upgrades', value) as UpgradeRateLimitOptions | false
}

function settingsOf (options: FastifyWsOptions): WsSettings {
  const heartbeat = options.heartbeat === false ? 0 : options.heartbeat
  if (heartbeat !== undefined && heartbeat !== 0) positiveInteger('heartbeat', heartbeat, undefined)
  const deflate = options.perMessageDeflate ?? false
  if (typeof deflate !== 'boolean' && (deflate === null || typeof deflate !== 'object')) {
    throw new FRT_ERR_INVALID_OPTION('perMessageDeflate', 'expected a boolean or ws PerMessageDeflateOptions')
  }
  return Object.freeze({
    authenticate: functionOption<Authenticate>('authenticate', options.authenticate),
    origins: originPolicyOption(options.origins),
    perMessageDeflate: deflate,
    maxPayload: positiveInteger('maxPayload', options.maxPayload, 64 * 1024) as number,
    heartbeat: heartbeat ?? 30000,
    rateLimit: options.rateLimit === undefined ? Object.freeze({ messages: 100, intervalMs: 1000 }) : rateLimitOption(options.rateLimit),
    upgradeRateLimit: options.upgradeRateLimit === undefined ? false : upgradeRateLimitOption(options.upgradeRateLimit),
    maxBufferedBytes: positiveInteger('maxBufferedBytes', options.maxBufferedBytes, 1024 * 1024) as number
  })
}

function hooks<T> (first: T, rest: T | T[] | undefined): T[] {
  return rest === undefined ? [first] : [first, ...(Array.isArray(rest) ? rest : [rest])]
}

/** Refuses a forbidden `Origin` with 403 before the upgrade. */
function originHook (policy: OriginPolicy | undefined) {
  return function checkOrigin (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.ws && !originAllowed(policy, request)) return done(new FRT_ERR_WS_FORBIDDEN_ORIGIN())
    done()
  }
}

/** Runs authenticate before the upgrade: no 101, no handler, no state for a refused request. */
function authHook (authenticate: Authenticate) {
  return async function checkAuthentication (request: FastifyRequest): Promise<void> {
    if (!request.ws) return
    const auth = authenticated(await authenticate(request))
    if (auth === null || (auth.expiresAt !== undefined && auth.expiresAt <= Date.now())) throw new FRT_ERR_WS_UNAUTHORIZED()
    ;(request as any)[kAuth] = auth
  }
}

function routeSettings (url: string, options: WsRouteOptions<any>, settings: WsSettings): WsRouteSettings {
  const compiled = options.contract === undefined ? undefined : compiledOf(options.contract)
  const handlers = (options.handlers ?? {}) as Record<string, unknown>
  if (handlers === null || typeof handlers !== 'object') throw new FRT_ERR_INVALID_OPTION('handlers', 'expected an object of message handlers')
  const map = new Map<string, MessageHandler>()
  for (const name of compiled?.messages.keys() ?? []) {
    const handler = handlers[name]
    if (typeof handler !== 'function') throw new FRT_ERR_WS_MISSING_HANDLER(url, name)
    map.set(name, handler as MessageHandler)
  }
  for (const name of Object.keys(handlers)) {
    if (!map.has(name)) throw new FRT_ERR_INVALID_OPTION(`handlers.${name}`, 'the contract declares no message of that name')
  }
  const maxPayload = positiveInteger('maxPayload', options.maxPayload, settings.maxPayload) as number
  if (maxPayload > settings.maxPayload) {
    throw new FRT_ERR_INVALID_OPTION('maxPayload', `a route may lower the plugin's ${settings.maxPayload} bytes, not raise it`)
  }
  return Object.freeze({
    compiled,
    handlers: map,
    onOpen: functionOption<WsRouteSettings['onOpen']>('onOpen', options.onOpen),
    onClose: functionOption<WsRouteSettings['onClose']>('onClose', options.onClose),
    maxPayload,
    rateLimit: options.rateLimit === undefined ? settings.rateLimit : rateLimitOption(options.rateLimit),
    maxBufferedBytes: positiveInteger('maxBufferedBytes', options.maxBufferedBytes, settings.maxBufferedBytes) as number
  })
}

// Sockets of app.ws() routes: their connection handles its own errors.
const realtimeSockets = new WeakSet<WebSocket>()

/**
 * @fastify/websocket's error handler, which would terminate() the socket (the client sees 1006).
 * ws has already sent the close code of a protocol error (1002, 1007, 1009): leave it be. An error
 * thrown by a plain { websocket: true } route's handler is logged and closes with 1011.
 */
function onWebsocketError (error: Error, socket: WebSocket, request: FastifyRequest): void {
  if (realtimeSockets.has(socket) || statusCodeOf(error) !== undefined) return
  request.log.error({ err: error }, 'fastify-realtime: a WebSocket handler failed; the connection was closed')
  socket.close(1011, 'server error')
}

function registerRoute (instance: FastifyInstance, url: string, options: WsRouteOptions<any>, settings: WsSettings, host: WsHost): void {
  if (options === null || typeof options !== 'object') {
    throw new FRT_ERR_INVALID_OPTION('app.ws() options', 'expected an object such as { contract, handlers, onOpen }')
  }
  const {
    contract, handlers, onOpen, onClose, authenticate, origins, rateLimit, maxBufferedBytes, maxPayload,
    ...routeOptions
  } = options
  const route = routeSettings(url, options, settings)
  const auth = authenticate === undefined ? settings.authenticate : authenticate
  if (auth === undefined) throw new FRT_ERR_WS_AUTH_REQUIRED(url)
  if (auth !== false) functionOption('authenticate', auth)
  const policy = origins === undefined ? settings.origins : originPolicyOption(origins)

  instance.route({
    ...routeOptions,
    method: 'GET',
    url,
    websocket: true,
    onRequest: hooks(originHook(policy), routeOptions.onRequest as any),
    preHandler: auth === false ? routeOptions.preHandler : hooks(authHook(auth), routeOptions.preHandler as any),
    handler: Object.assign(function openConnection (socket: WebSocket, request: FastifyRequest) {
      // eslint-disable-next-line no-new -- the connection registers itself with its socket and the host
      new ConnectionImpl(socket, request, (request as any)[kAuth] as Authenticated | null, route, host)
      realtimeSockets.add(socket)
    }, { [kRealtimeRoute]: true })
  } as any)
}

/** An upgrade to a plain HTTP route: 404 before any 101 (not an upgrade and a close without a code). */
function refuseUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (request.ws) {
    reply.code(404).send()
    return
  }
  done()
}

/**
 * Every route gets a guard: HTTP routes refuse upgrades with 404, and plain `{ websocket: true }`
 * routes get the plugin's origin policy, so cross-site WebSocket hijacking is blocked on every socket.
 */
function guardRoute (policy: OriginPolicy | undefined) {
  const checkOrigin = originHook(policy)
  return function onRoute (routeOptions: RouteOptions & { websocket?: boolean }): void {
    if ((routeOptions.handler as any)[kRealtimeRoute] === true) return
    const guard = routeOptions.websocket === true ? checkOrigin : refuseUpgrade
    routeOptions.onRequest = hooks(guard, routeOptions.onRequest as any) as any
  }
}

/** Answers an upgrade request with a bare HTTP status and ends its socket; a peer's socket errors are ignored. */
function answerUpgrade (socket: Socket, status: string, headers = ''): void {
  socket.on('error', () => {})
  socket.end(`HTTP/1.1 ${status}\r\n${headers}Connection: close\r\nContent-Length: 0\r\n\r\n`)
}

function refuseLateUpgrade (_request: unknown, socket: Socket): void {
  answerUpgrade(socket, '503 Service Unavailable')
}

/**
 * Counts upgrade requests per remote address in fixed windows; returns 0 for an allowed request, else
 * the seconds until the window ends. Only the current window's addresses are kept.
 */
function upgradeBudget (limit: UpgradeRateLimitOptions): (address: string) => number {
  let windowStart = 0
  let counts = new Map<string, number>()
  return function spend (address: string): number {
    const now = Date.now()
    if (now - windowStart >= limit.intervalMs) {
      windowStart = now
      counts = new Map()
    }
    const count = (counts.get(address) ?? 0) + 1
    counts.set(address, count)
    return count <= limit.upgrades ? 0 : Math.max(1, Math.ceil((windowStart + limit.intervalMs - now) / 1000))
  }
}

/** HTTP 429 to an upgrade over its address's budget: no routing, no hooks, no handshake. */
function refuseTooMany (socket: Socket, retryAfter: number): void {
  // A peer that never closes its side is not waited for.
  socket.setTimeout(CLOSE_TIMEOUT, () => socket.destroy())
  answerUpgrade(socket, '429 Too Many Requests', `Retry-After: ${retryAfter}\r\n`)
}

async function fastifyWsPlugin (fastify: FastifyInstance, options: FastifyWsOptions): Promise<void> {
  if (fastify.hasPlugin('@fastify/websocket')) throw new FRT_ERR_WS_CONFLICT()
  const settings = settingsOf(options)

  // Before @fastify/websocket's own onRoute hook, which replaces every route's handler.
  fastify.addHook('onRoute', guardRoute(settings.origins))
  // Upgrade requests still in Fastify's hooks (an authenticate that has not settled): Node's HTTP
  // timeouts no longer apply to them and nothing reads their sockets, so app.close() ends them.
  // A socket leaves the set when it closes, or when it becomes a connection.
  const upgrading = new Set<Socket>()
  const host: WsHost = {
    hub: attachHub(fastify, options.broker),
    open: new Set(),
    upgrading,
    forgetUpgrade () { upgrading.delete(this) }
  }
  fastify.server.on('upgrade', function trackUpgrade (_request: unknown, socket: Socket) {
    upgrading.add(socket)
    socket.on('close', host.forgetUpgrade)
  })
  const listenersBefore = new Set(fastify.server.listeners('upgrade'))
  let upgradeListeners: Function[] = []
  await fastify.register(fastifyWebsocket, {
    options: {
      maxPayload: settings.maxPayload,
      maxFragments: Math.max(MIN_MAX_FRAGMENTS, Math.ceil(settings.maxPayload / MIN_FRAGMENT_BYTES)),
      perMessageDeflate: settings.perMessageDeflate,
      handleProtocols: selectProtocol,
      closeTimeout: CLOSE_TIMEOUT
    } as any,
    errorHandler: onWebsocketError as any,
    // Every socket gets 1001 "going away" (the default would send no code at all, 1005) and
    // app.close() waits for them, at most CLOSE_TIMEOUT, since ws destroys sockets that do not answer.
    preClose: function closeSockets (this: FastifyInstance, done: () => void) {
      // No new upgrades: a late one gets 503 and its socket ends (routed through Fastify it would
      // get a 503 on a socket that nobody ends, and app.close() would wait for it forever).
      for (const listener of upgradeListeners) this.server.removeListener('upgrade', listener as () => void)
      this.server.on('upgrade', refuseLateUpgrade)
      this.websocketServer.close()
      const sockets = [...this.websocketServer.clients]
      for (const socket of upgrading) socket.destroy()
      // A socket leaves `clients` when it emits 'close', so each of these will emit it.
      const closed = sockets.map((socket) => new Promise((resolve) => socket.once('close', resolve)))
      for (const conn of host.open) conn.closeWith(1001, 'server shutting down')
      for (const socket of sockets) socket.close(1001, 'server shutting down')
      Promise.all(closed).then(() => done())
    }
  })

  upgradeListeners = fastify.server.listeners('upgrade').filter((listener) => !listenersBefore.has(listener))
  if (settings.upgradeRateLimit !== false) {
    // A reconnect loop from one address costs the server a refused request, not a handshake and a
    // connection: the budget is checked before @fastify/websocket routes the request.
    const spend = upgradeBudget(settings.upgradeRateLimit)
    const listeners = upgradeListeners
    for (const listener of listeners) fastify.server.removeListener('upgrade', listener as () => void)
    const limitUpgrades = function limitUpgrades (this: unknown, request: IncomingMessage, socket: Socket, head: Buffer): void {
      // An injected upgrade (injectWS) has no remote address and is not counted.
      const address = socket.remoteAddress
      const retryAfter = address === undefined ? 0 : spend(address)
      if (retryAfter > 0) return refuseTooMany(socket, retryAfter)
      for (const listener of listeners) listener.call(this, request, socket, head)
    }
    fastify.server.on('upgrade', limitUpgrades)
    upgradeListeners = [limitUpgrades]
  }
  fastify.decorateRequest(kAuth, null)
  fastify.decorate('ws', function ws (this: FastifyInstance, url: string, routeOptions: WsRouteOptions<any>) {
    registerRoute(this, url, routeOptions, settings, host)
    return this
  } as AppWs)

  if (settings.heartbeat > 0) {
    const timer = setInterval(() => {
      for (const conn of host.open) conn.heartbeat()
    }, settings.heartbeat)
    timer.unref()
    fastify.addHook('onClose', (_instance, done) => {
      clearInterval(timer)
      done()
    })
  }
}

/**
 * Authenticated, validated WebSocket routes for Fastify: registers `@fastify/websocket` with safe
 * limits and decorates the instance with `app.ws()` and `fastify.realtime` (shared with `fastifySse`).
 */
export const fastifyWs = fp(fastifyWsPlugin, {
  fastify: '5.x',
  name: 'fastify-realtime-ws'
})
