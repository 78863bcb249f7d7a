// The options of fastifyWs and app.ws(): their public types, and their normalization into frozen
// settings, once at registration (each option's own parser is in ../options.ts).
import type { FastifyInstance, FastifyRequest, RouteShorthandOptions } from 'fastify'
import type { PerMessageDeflateOptions } from 'ws'
import type { Broker } from '../brokers/broker.js'
import type { WsRouteEntry } from '../asyncapi/registry.js'
import { compiledOf, type AnyContract, type MessageData, type MessageName, type ReplyData } from '../contract.js'
import { FRT_ERR_INVALID_OPTION, FRT_ERR_WS_MISSING_HANDLER } from '../errors.js'
import {
  asyncapiOption,
  functionOption,
  heartbeatOption,
  maxBufferedBytesOption,
  maxPayloadOption,
  maxSubscriptionsOption,
  originsOption,
  perMessageDeflateOption,
  rateLimitOption,
  topicsOption,
  upgradeRateLimitOption,
  type AsyncApiRouteOptions,
  type OriginPolicy,
  type RateLimitOptions,
  type UpgradeRateLimitOptions
} from '../options.js'
import type { Connection, MessageHandler, WsRouteSettings } from './connection.js'

export type { OriginPolicy, RateLimitOptions, UpgradeRateLimitOptions } from '../options.js'

const DEFAULT_MAX_PAYLOAD = 64 * 1024
const DEFAULT_HEARTBEAT = 30000
const DEFAULT_RATE_LIMIT: RateLimitOptions = Object.freeze({ messages: 100, intervalMs: 1000 })
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024
const DEFAULT_MAX_SUBSCRIPTIONS = 100

/** Decides who may open a socket: returns the user, `{ user, expiresAt }`, or null/undefined (401). */
export type Authenticate = (request: FastifyRequest) => unknown

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
   * The most topics one connection may hold; a `realtime.subscribe` past it gets `TOO_MANY_SUBSCRIPTIONS`.
   * A route may override it.
   * @default 100
   */
  maxSubscriptions?: number
  /**
   * The broker behind `fastify.realtime`, shared with `fastifySse`.
   * @default memoryBroker()
   */
  broker?: Broker
  /**
   * Serves `fastify.realtime.asyncapi({ info, servers })` as JSON at `path` (a GET route hidden from
   * @fastify/swagger), built once when the app is ready. Unset: not served. Set it on one plugin only.
   */
  asyncapi?: AsyncApiRouteOptions
}

/**
 * Decides whether a connection may subscribe to a topic (`after` is the id it resumes from, if any).
 * May be async. Anything but `true`, a throw or a rejection refuses, with `FORBIDDEN`: the same
 * answer as for a topic the route does not declare, so names cannot be probed.
 */
export type Authorize<C extends AnyContract | undefined = AnyContract | undefined> =
  (conn: Connection<C>, topic: string, options: { after: string | undefined }) => boolean | Promise<boolean>

/** How clients may subscribe to the topics of one name, or of one prefix. */
export interface TopicAccess<C extends AnyContract | undefined = AnyContract | undefined> {
  /** The topic's contract: `app.realtime.topic(name, { contract })`. Default: the route's contract. */
  contract?: AnyContract
  /** Runs before each subscription; without it, every client of the route may subscribe. */
  authorize?: Authorize<C>
}

/**
 * The topics clients of a route may subscribe to with `realtime.subscribe`: a topic name, or a
 * prefix ending in `*` (`'room:*'`), mapped to `true` or to a {@link TopicAccess}. An exact name
 * wins over a prefix, a longer prefix over a shorter one.
 */
export type WsTopics<C extends AnyContract | undefined = AnyContract | undefined> = Record<string, true | TopicAccess<C>>

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
  /** The topics clients may subscribe to (`realtime.subscribe`). None by default: no client subscriptions. */
  topics?: WsTopics<C>
  /** Overrides the plugin's. */
  maxSubscriptions?: number
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

/** Plugin-wide settings, normalized once at registration. @internal */
export interface WsSettings {
  readonly authenticate: Authenticate | undefined
  readonly origins: OriginPolicy | undefined
  readonly perMessageDeflate: boolean | PerMessageDeflateOptions
  readonly maxPayload: number
  readonly heartbeat: number
  readonly rateLimit: RateLimitOptions | false
  readonly upgradeRateLimit: UpgradeRateLimitOptions | false
  readonly maxBufferedBytes: number
  readonly asyncapi: AsyncApiRouteOptions | undefined
  readonly maxSubscriptions: number
}

export function settingsOf (options: FastifyWsOptions): WsSettings {
  return Object.freeze({
    authenticate: functionOption<Authenticate>('authenticate', options.authenticate),
    origins: originsOption(options.origins),
    perMessageDeflate: perMessageDeflateOption<PerMessageDeflateOptions>(options.perMessageDeflate),
    maxPayload: maxPayloadOption(options.maxPayload, DEFAULT_MAX_PAYLOAD),
    heartbeat: heartbeatOption(options.heartbeat) ?? DEFAULT_HEARTBEAT,
    rateLimit: rateLimitOption(options.rateLimit, DEFAULT_RATE_LIMIT),
    upgradeRateLimit: upgradeRateLimitOption(options.upgradeRateLimit),
    maxBufferedBytes: maxBufferedBytesOption(options.maxBufferedBytes, DEFAULT_MAX_BUFFERED_BYTES),
    asyncapi: asyncapiOption(options.asyncapi),
    maxSubscriptions: maxSubscriptionsOption(options.maxSubscriptions, DEFAULT_MAX_SUBSCRIPTIONS)
  })
}

/** The route as the registry records it; its url becomes the URL pattern with its prefix once Fastify registers it. */
function routeEntry (url: string, options: WsRouteOptions<any>, authenticated: boolean, maxPayload: number): WsRouteEntry {
  const schema = options.schema as { querystring?: unknown, headers?: unknown } | undefined
  return {
    transport: 'ws',
    url,
    contract: options.contract,
    authenticated,
    topics: (options as { topics?: Record<string, unknown> }).topics,
    maxPayload,
    querystring: schema?.querystring,
    headers: schema?.headers
  }
}

export function routeSettings (url: string, options: WsRouteOptions<any>, settings: WsSettings, authenticated: boolean): WsRouteSettings {
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
  const maxPayload = maxPayloadOption(options.maxPayload, settings.maxPayload)
  if (maxPayload > settings.maxPayload) {
    throw new FRT_ERR_INVALID_OPTION('maxPayload', `a route may lower the plugin's ${settings.maxPayload} bytes, not raise it`)
  }
  return Object.freeze({
    compiled,
    handlers: map,
    onOpen: functionOption<WsRouteSettings['onOpen']>('onOpen', options.onOpen),
    onClose: functionOption<WsRouteSettings['onClose']>('onClose', options.onClose),
    maxPayload,
    heartbeat: settings.heartbeat,
    rateLimit: rateLimitOption(options.rateLimit, settings.rateLimit),
    maxBufferedBytes: maxBufferedBytesOption(options.maxBufferedBytes, settings.maxBufferedBytes),
    entry: routeEntry(url, options, authenticated, maxPayload),
    topics: topicsOption(options.topics, options.contract),
    maxSubscriptions: maxSubscriptionsOption(options.maxSubscriptions, settings.maxSubscriptions)
  })
}

// Sockets of app.ws() routes: their connection handles its own errors.
