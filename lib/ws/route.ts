// app.ws() routes: Fastify routes through @fastify/websocket, with the origin and auth hooks that
// run before the upgrade, and the guard every other route gets.
import type {
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  HookHandlerDoneFunction,
  RouteOptions
} from 'fastify'
import type WebSocket from 'ws'
import {
  FRT_ERR_INVALID_OPTION,
  FRT_ERR_WS_AUTH_REQUIRED,
  FRT_ERR_WS_FORBIDDEN_ORIGIN,
  FRT_ERR_WS_UNAUTHORIZED
} from '../errors.js'
import type { WsRouteEntry } from '../asyncapi/registry.js'
import { channels } from '../diagnostics.js'
import type { Hub } from '../hub/hub.js'
import { closeCodeOfWsError } from '../internals.js'
import { functionOption, originsOption, type OriginPolicy } from '../options.js'
import { CloseCode } from '../protocol/close-codes.js'
import { kAuth, kConnection, kRealtimeRoute } from '../symbols.js'
import { authenticated, originAllowed, type Authenticated } from './auth.js'
import { ConnectionImpl, type WsHost } from './connection.js'
import type { RealtimeSocket } from './socket.js'
import { routeSettings, type Authenticate, type WsRouteOptions, type WsSettings } from './options.js'

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

/** An upgrade answered with a status instead of a 101 (origin, authentication, or any other hook). */
function rejectionHook (hub: Hub, entry: WsRouteEntry) {
  return function countRejection (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
    if (request.ws) {
      hub.counters.rejected++
      if (channels.connectionReject.hasSubscribers) channels.connectionReject.publish({ transport: 'ws', route: entry.url, status: reply.statusCode })
    }
    done(null, payload)
  }
}

/**
 * @fastify/websocket's error handler, which would terminate() the socket (the client sees 1006).
 * ws has already sent the close code of a protocol error (1002, 1007, 1009): leave it be. An error
 * thrown by a plain { websocket: true } route's handler is logged and closes with 1011.
 */
export function onWebsocketError (error: Error, socket: WebSocket, request: FastifyRequest): void {
  // A connection's socket reports its errors to the connection (./socket.ts).
  if ((socket as RealtimeSocket)[kConnection] !== undefined || closeCodeOfWsError(error) !== undefined) return
  request.log.error({ err: error }, 'fastify-realtime: a WebSocket handler failed; the connection was closed')
  socket.close(CloseCode.InternalError, 'server error')
}

export function registerRoute (instance: FastifyInstance, url: string, options: WsRouteOptions<any>, settings: WsSettings, host: WsHost): void {
  if (options === null || typeof options !== 'object') {
    throw new FRT_ERR_INVALID_OPTION('app.ws() options', 'expected an object such as { contract, handlers, onOpen }')
  }
  const {
    contract, handlers, onOpen, onClose, authenticate, origins, rateLimit, maxBufferedBytes, maxPayload, topics, maxSubscriptions,
    ...routeOptions
  } = options
  const auth = authenticate === undefined ? settings.authenticate : authenticate
  if (auth === undefined) throw new FRT_ERR_WS_AUTH_REQUIRED(url)
  if (auth !== false) functionOption('authenticate', auth)
  const route = routeSettings(url, options, settings, auth !== false)
  const policy = origins === undefined ? settings.origins : originsOption(origins)

  instance.route({
    ...routeOptions,
    method: 'GET',
    url,
    websocket: true,
    // Not an HTTP route: @fastify/swagger leaves it out (as @fastify/websocket's routes); the AsyncAPI document has it.
    schema: { ...routeOptions.schema, hide: true },
    onRequest: hooks(originHook(policy), routeOptions.onRequest as any),
    preHandler: auth === false ? routeOptions.preHandler : hooks(authHook(auth), routeOptions.preHandler as any),
    onSend: hooks(rejectionHook(host.hub, route.entry), routeOptions.onSend as any),
    handler: Object.assign(function openConnection (socket: WebSocket, request: FastifyRequest) {
      // eslint-disable-next-line no-new -- the connection registers itself with its socket and the host
      new ConnectionImpl(socket, request, (request as any)[kAuth] as Authenticated | null, route, host)
    }, { [kRealtimeRoute]: route.entry })
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
 * `app.ws()` routes bring their own hooks; they are recorded with their URL pattern, prefix included.
 */
export function guardRoute (policy: OriginPolicy | undefined, hub: Hub) {
  const checkOrigin = originHook(policy)
  return function onRoute (routeOptions: RouteOptions & { websocket?: boolean }): void {
    const entry = (routeOptions.handler as any)[kRealtimeRoute] as WsRouteEntry | undefined
    if (entry !== undefined) {
      // Fastify adds a HEAD route next to each GET route; only the GET one is the WebSocket route.
      if (routeOptions.method === 'GET') {
        entry.url = routeOptions.url
        hub.registry.add(entry)
      }
      return
    }
    const guard = routeOptions.websocket === true ? checkOrigin : refuseUpgrade
    routeOptions.onRequest = hooks(guard, routeOptions.onRequest as any) as any
  }
}
