// Every option the library takes is parsed here, one parser per option, once at registration (or
// when a stream or broker is made); each fails with FRT_ERR_INVALID_OPTION naming the option.
import type { FastifyRequest } from 'fastify'
import type { AsyncApiOptions } from './asyncapi/document.js'
import { compiledOf, type AnyContract } from './contract.js'
import { FRT_ERR_INVALID_OPTION } from './errors.js'
import { NAME_PATTERN } from './protocol/names.js'

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
