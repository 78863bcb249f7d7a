import type { FastifyRequest } from 'fastify'
import { FRT_ERR_INVALID_OPTION } from '../errors.js'
import type { OriginPolicy } from '../options.js'
import { BEARER_PREFIX, SUBPROTOCOL } from '../protocol/names.js'

const AUTHORIZATION = /^Bearer +([^\s]+) *$/i

/**
 * The bearer token of an upgrade request: from `Authorization: Bearer <token>`, else from a
 * `Sec-WebSocket-Protocol` entry `bearer.<token>` offered next to `realtime.v1` (what a browser's
 * `new WebSocket(url, ['realtime.v1', 'bearer.' + token])` sends). Never from the query string,
 * which ends up in logs. Returns undefined when there is none.
 */
export function bearerToken (request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization
  if (authorization !== undefined) {
    const match = AUTHORIZATION.exec(authorization)
    if (match !== null) return match[1]
  }
  const offered = request.headers['sec-websocket-protocol']
  if (offered === undefined) return undefined
  const protocols = offered.split(',').map((protocol) => protocol.trim())
  if (!protocols.includes(SUBPROTOCOL)) return undefined
  const entry = protocols.find((protocol) => protocol.startsWith(BEARER_PREFIX) && protocol.length > BEARER_PREFIX.length)
  return entry?.slice(BEARER_PREFIX.length)
}

/** ws `handleProtocols`: selects `realtime.v1` when offered, so a token entry is never echoed. @internal */
export function selectProtocol (protocols: Set<string>): string | false {
  return protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false
}

/**
 * Whether the request's `Origin` may open a socket. No `Origin` (a non-browser client) is allowed;
 * by default an `Origin` must have the host and port of the `Host` header (RFC 6455 section 10.2:
 * a browser on another site must not ride on this user's cookies).
 * @internal
 */
export function originAllowed (policy: OriginPolicy | undefined, request: FastifyRequest): boolean {
  const origin = request.headers.origin
  if (origin === undefined) return true
  if (policy === undefined) return sameHost(origin, request.headers.host)
  if (typeof policy === 'function') return policy(origin, request) === true
  return policy.includes(origin)
}

function sameHost (origin: string, host: string | undefined): boolean {
  try {
    return new URL(origin).host === host?.toLowerCase()
  } catch {
    return false // 'null' (sandboxed frames, file: pages) and anything else that is not a URL
  }
}

/** What `authenticate` resolved to, normalized. @internal */
export interface Authenticated {
  user: unknown
  /** Epoch ms at which the connection closes with 4401, if any. */
  expiresAt: number | undefined
}

/**
 * Normalizes the result of `authenticate`: null/undefined means unauthenticated; an object with
 * exactly the keys `user` and `expiresAt` (epoch ms or Date; undefined for none) sets an expiry, and a
 * null `user` there is unauthenticated too; anything else is the user.
 * @internal
 */
export function authenticated (result: unknown): Authenticated | null {
  if (result === null || result === undefined) return null
  if (typeof result === 'object') {
    const keys = Object.keys(result)
    if (keys.length === 2 && keys.includes('user') && keys.includes('expiresAt')) {
      const { user, expiresAt } = result as { user: unknown, expiresAt: unknown }
      if (user === null || user === undefined) return null
      // A token without an expiry may come back as { user, expiresAt: undefined }: no expiry.
      if (expiresAt === undefined) return { user, expiresAt: undefined }
      const at = expiresAt instanceof Date ? expiresAt.getTime() : expiresAt
      if (typeof at !== 'number' || Number.isNaN(at)) {
        throw new FRT_ERR_INVALID_OPTION('expiresAt', 'authenticate() must return expiresAt as epoch milliseconds or a Date')
      }
      return { user, expiresAt: at }
    }
  }
  return { user: result, expiresAt: undefined }
}
