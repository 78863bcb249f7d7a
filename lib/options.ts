// Every option the library takes is parsed here, one parser per option, once at registration (or
// when a stream or broker is made); each fails with FRT_ERR_INVALID_OPTION naming the option.
import type { FastifyRequest } from 'fastify'
import type { AsyncApiOptions } from './asyncapi/document.js'
import { compiledOf, type AnyContract } from './contract.js'
import { FRT_ERR_INVALID_OPTION } from './errors.js'
import { NAME_PATTERN, RESERVED_PREFIX, isValidName } from './protocol/names.js'

/** A positive integer option, or `fallback` when it is absent. @internal */
export function positiveInteger (name: string, value: unknown, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new FRT_ERR_INVALID_OPTION(name, `expected a positive integer, got ${String(value)}`)
  }
  return value
}

/** A function option, or undefined when it is absent. @internal */
export function functionOption<T> (name: string, value: unknown): T | undefined {
  if (value !== undefined && typeof value !== 'function') throw new FRT_ERR_INVALID_OPTION(name, 'expected a function')
  return value as T | undefined
}

/** `heartbeat` (SSE comment or WebSocket ping interval, ms): `0` or `false` turns it off. Undefined when absent. @internal */
export function heartbeatOption (value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (value === false) return 0
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FRT_ERR_INVALID_OPTION('heartbeat', `expected an interval in ms (an integer >= 0) or false, got ${String(value)}`)
  }
  return value
}

/** `retry` (the SSE reconnection delay, ms): a non-negative integer, the only form clients accept. @internal */
export function retryOption (value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FRT_ERR_INVALID_OPTION('retry', `expected a non-negative integer of milliseconds, got ${String(value)}`)
  }
  return value
}

/** `maxBufferedBytes`, or `fallback` when absent. @internal */
export function maxBufferedBytesOption (value: unknown, fallback: number): number
export function maxBufferedBytesOption (value: unknown, fallback?: undefined): number | undefined
export function maxBufferedBytesOption (value: unknown, fallback?: number): number | undefined {
  return positiveInteger('maxBufferedBytes', value, fallback)
}

/** `stallTimeout` (ms an SSE socket may hold unsent bytes without sending any), or `fallback` when absent. @internal */
export function stallTimeoutOption (value: unknown, fallback: number): number
export function stallTimeoutOption (value: unknown, fallback?: undefined): number | undefined
export function stallTimeoutOption (value: unknown, fallback?: number): number | undefined {
  return positiveInteger('stallTimeout', value, fallback)
}

/** `maxPayload`, or `fallback` when absent. @internal */
export function maxPayloadOption (value: unknown, fallback: number): number {
  return positiveInteger('maxPayload', value, fallback) as number
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

/** `rateLimit`: `{ messages, intervalMs }` or false, `fallback` when absent. @internal */
export function rateLimitOption (value: unknown, fallback: RateLimitOptions | false): RateLimitOptions | false {
  return value === undefined ? fallback : limitOption('rateLimit', 'messages', value) as RateLimitOptions | false
}

/** `upgradeRateLimit`: `{ upgrades, intervalMs }` or false (the default). @internal */
export function upgradeRateLimitOption (value: unknown): UpgradeRateLimitOptions | false {
  return value === undefined ? false : limitOption('upgradeRateLimit', 'upgrades', value) as UpgradeRateLimitOptions | false
}

/** `perMessageDeflate`: a boolean or ws's PerMessageDeflateOptions (default false). @internal */
export function perMessageDeflateOption<T extends object> (value: unknown): boolean | T {
  const deflate = value ?? false
  if (typeof deflate !== 'boolean' && (deflate === null || typeof deflate !== 'object')) {
    throw new FRT_ERR_INVALID_OPTION('perMessageDeflate', 'expected a boolean or ws PerMessageDeflateOptions')
  }
  return deflate as boolean | T
}

/** Exact origins, or a predicate. */
export type OriginPolicy = readonly string[] | ((origin: string, request: FastifyRequest) => boolean)

/** `origins`: exact origins (frozen copy) or a predicate; undefined when absent. @internal */
export function originsOption (value: unknown): OriginPolicy | undefined {
  if (value === undefined || typeof value === 'function') return value as OriginPolicy | undefined
  if (Array.isArray(value) && value.every((origin) => typeof origin === 'string')) return Object.freeze([...value])
  throw new FRT_ERR_INVALID_OPTION('origins', 'expected an array of exact origins such as ["https://app.example.com"], or a function (origin, request) => boolean')
}

/** A broker's `maxLen`: how many events its log keeps. @internal */
export function maxLenOption (value: unknown, fallback: number): number {
  return positiveInteger('maxLen', value, fallback) as number
}

/** A broker's `maxAgeMs`: how long an event stays resumable; undefined for no limit. @internal */
export function maxAgeMsOption (value: unknown): number | undefined {
  return positiveInteger('maxAgeMs', value, undefined)
}

/** A broker's `maxScan`: how far back a resume may start. @internal */
export function maxScanOption (value: unknown): number {
  return positiveInteger('maxScan', value, 10000) as number
}

/** A broker's `commandTimeout` (ms). @internal */
export function commandTimeoutOption (value: unknown): number {
  return positiveInteger('commandTimeout', value, 2000) as number
}

/** A Redis broker's `namespace`: brokers with the same one share a log. @internal */
export function namespaceOption (value: unknown): string {
  const namespace = value ?? 'realtime'
  if (typeof namespace !== 'string' || !NAME_PATTERN.test(namespace)) {
    throw new FRT_ERR_INVALID_OPTION('namespace', 'expected 1 to 64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-"')
  }
  return namespace
}

/** The route option `sse`: `true`, or `{ contract }`. */
export type SseRouteOption = true | { contract?: AnyContract }

/** The route option `sse` normalized: the route's default contract; undefined when the route does not declare itself. @internal */
export function sseRouteOption (value: unknown): { readonly contract: AnyContract | undefined } | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return Object.freeze({ contract: undefined })
  if (value === null || typeof value !== 'object') {
    throw new FRT_ERR_INVALID_OPTION('sse', 'expected true, or { contract } with a contract made by defineContract()')
  }
  const contract = (value as { contract?: unknown }).contract
  if (contract !== undefined) compiledOf(contract, 'sse.contract')
  return Object.freeze({ contract: contract as AnyContract | undefined })
}

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** Options of `fastify.realtime.asyncapi()`: `info` and `servers`, checked for the fields AsyncAPI requires. @internal */
export function asyncapiDocumentOptions (value: unknown, name = 'asyncapi() options'): AsyncApiOptions {
  if (value === undefined) return {}
  if (!isObject(value)) throw new FRT_ERR_INVALID_OPTION(name, 'expected an object such as { info, servers }')
  const { info, servers } = value
  if (info !== undefined && (!isObject(info) || typeof info.title !== 'string' || typeof info.version !== 'string')) {
    throw new FRT_ERR_INVALID_OPTION('info', 'expected an AsyncAPI Info Object with a string title and version, such as { title: \'Chat\', version: \'1.0.0\' }')
  }
  if (servers !== undefined && (!isObject(servers) ||
    !Object.values(servers).every((server) => isObject(server) && typeof server.host === 'string' && typeof server.protocol === 'string'))) {
    throw new FRT_ERR_INVALID_OPTION('servers', 'expected AsyncAPI Server Objects by name, such as { production: { host: \'example.com\', protocol: \'wss\' } }')
  }
  return { info: info as AsyncApiOptions['info'], servers: servers as AsyncApiOptions['servers'] }
}

/** The plugin option `asyncapi`: serves the document as JSON at `path`. */
export interface AsyncApiRouteOptions extends AsyncApiOptions {
  /** Where the document is served, such as `/asyncapi.json`. */
  path: string
}

/** The plugin option `asyncapi`, or undefined when absent. @internal */
export function asyncapiOption (value: unknown): AsyncApiRouteOptions | undefined {
  if (value === undefined) return undefined
  const path = isObject(value) ? value.path : undefined
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new FRT_ERR_INVALID_OPTION('asyncapi', 'expected { path } with a path such as \'/asyncapi.json\' (and optionally info and servers)')
  }
  return Object.freeze({ path, ...asyncapiDocumentOptions(value, 'asyncapi') })
}

/** A Redis broker's `maxPending`: how many publishes may wait for Redis at once. @internal */
export function maxPendingOption (value: unknown): number {
  return positiveInteger('maxPending', value, 10000) as number
}

/** A Redis broker's `waitReplicas`: how many replicas must hold an event before its publish resolves. @internal */
export function waitReplicasOption (value: unknown): number {
  if (value === undefined) return 0
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FRT_ERR_INVALID_OPTION('waitReplicas', `expected a number of replicas (an integer >= 0), got ${String(value)}`)
  }
  return value
}

/** A Redis Cluster node to connect to first; the others are found from it. */
export interface RedisClusterNode {
  host: string
  port: number
}

function isClusterNode (node: unknown): node is RedisClusterNode {
  const { host, port } = (node ?? {}) as Record<string, unknown>
  return typeof host === 'string' && host !== '' && typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536
}

/** A Redis broker's `cluster`: its startup nodes (a frozen copy), at least one. @internal */
export function clusterOption (value: unknown): readonly RedisClusterNode[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every(isClusterNode)) {
    throw new FRT_ERR_INVALID_OPTION('cluster', 'expected the startup nodes of a Redis Cluster, at least one, such as [{ host: "10.0.0.1", port: 6379 }]')
  }
  return Object.freeze(value.map(({ host, port }: RedisClusterNode) => Object.freeze({ host, port })))
}

/** A Redis broker's `url`: a Redis URL, or undefined when absent. @internal */
export function redisUrlOption (value: unknown): string | undefined {
  if (value !== undefined && (typeof value !== 'string' || value === '')) {
    throw new FRT_ERR_INVALID_OPTION('url', 'expected a Redis URL such as "redis://127.0.0.1:6379/0"')
  }
  return value
}

/** A Redis broker's `client`: an ioredis Redis or Cluster (anything that can be duplicated), or undefined when absent. @internal */
export function redisClientOption<T> (value: unknown): T | undefined {
  if (value !== undefined && typeof (value as { duplicate?: unknown } | null)?.duplicate !== 'function') {
    throw new FRT_ERR_INVALID_OPTION('client', 'expected an ioredis instance (Redis or Cluster)')
  }
  return value as T | undefined
}

/** `maxSubscriptions`: the topics one connection may hold, or `fallback` when absent. @internal */
export function maxSubscriptionsOption (value: unknown, fallback: number): number {
  return positiveInteger('maxSubscriptions', value, fallback) as number
}

/** What a route's `topics` allows for one name or prefix, normalized. @internal */
export interface TopicRule {
  readonly contract: AnyContract | undefined
  readonly authorize: ((conn: any, topic: string, options: { after: string | undefined }) => unknown) | undefined
}

/** A route's `topics`, normalized: exact names, and prefixes longest first. @internal */
export interface TopicRules {
  readonly exact: ReadonlyMap<string, TopicRule>
  readonly prefixes: ReadonlyArray<{ readonly prefix: string, readonly rule: TopicRule }>
}

// What may precede the `*` of a prefix key: the start of a valid name ('' matches every name).
const PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{0,63}$/

/**
 * `topics` of an `app.ws()` route: `{ [nameOrPrefix]: true | { contract?, authorize? } }`, where a
 * key ending in `*` matches by prefix; a topic's contract defaults to the route's. Undefined when absent.
 * @internal
 */
export function topicsOption (value: unknown, routeContract: AnyContract | undefined): TopicRules | undefined {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FRT_ERR_INVALID_OPTION('topics', 'expected an object such as { lobby: true, "room:*": { authorize } }')
  }
  const exact = new Map<string, TopicRule>()
  const prefixes: Array<{ prefix: string, rule: TopicRule }> = []
  for (const [key, access] of Object.entries(value)) {
    const name = `topics[${JSON.stringify(key)}]`
    const prefix = key.endsWith('*') ? key.slice(0, -1) : undefined
    if (prefix === undefined ? !isValidName(key) : !PREFIX_PATTERN.test(prefix) || prefix.startsWith(RESERVED_PREFIX)) {
      throw new FRT_ERR_INVALID_OPTION(name, 'expected a topic name (1 to 64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-", not starting with "realtime.") or such a prefix followed by "*"')
    }
    const rule = topicRule(name, access, routeContract)
    if (prefix === undefined) exact.set(key, rule)
    else prefixes.push({ prefix, rule })
  }
  prefixes.sort((a, b) => b.prefix.length - a.prefix.length)
  return Object.freeze({ exact, prefixes: Object.freeze(prefixes) })
}

function topicRule (name: string, access: unknown, routeContract: AnyContract | undefined): TopicRule {
  if (access === true) return Object.freeze({ contract: routeContract, authorize: undefined })
  if (access === null || typeof access !== 'object' || Array.isArray(access)) {
    throw new FRT_ERR_INVALID_OPTION(name, 'expected true, or { contract?, authorize? }')
  }
  const { contract, authorize, ...rest } = access as { contract?: unknown, authorize?: unknown }
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new FRT_ERR_INVALID_OPTION(name, `unknown key "${unknown[0] as string}": expected true, or { contract?, authorize? }`)
  if (contract !== undefined) compiledOf(contract, `${name}.contract`)
  return Object.freeze({
    contract: contract === undefined ? routeContract : contract as AnyContract,
    authorize: functionOption<TopicRule['authorize']>(`${name}.authorize`, authorize)
  })
}
