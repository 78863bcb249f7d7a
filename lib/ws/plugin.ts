import type { FastifyInstance } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fastifyWebsocket from '@fastify/websocket'
import fp from 'fastify-plugin'
import { serveDocument } from '../asyncapi/route.js'
import { channels } from '../diagnostics.js'
import { FRT_ERR_WS_CONFLICT } from '../errors.js'
import { attachHub } from '../hub/attach.js'
import { CloseCode } from '../protocol/close-codes.js'
import { kAuth, kConnection } from '../symbols.js'
import { selectProtocol } from './auth.js'
import type { WsHost } from './connection.js'
import { PendingUpgrades } from './pending-upgrades.js'
import { RealtimeSocket } from './socket.js'
import { settingsOf, type AppWs, type FastifyWsOptions, type WsRouteOptions } from './options.js'
import { guardRoute, onWebsocketError, registerRoute } from './route.js'
import { CLOSE_TIMEOUT, refuseLateUpgrade, refuseTooMany, upgradeBudget } from './upgrade.js'

// A message may come in fragments of 1 KiB on average, and in up to 64 whatever maxPayload: a flood
// of tiny fragments (ws allows 16,384 by default) is cut after a few hundred bytes, not 100 KB.
const MIN_FRAGMENT_BYTES = 1024
const MIN_MAX_FRAGMENTS = 64

async function fastifyWsPlugin (fastify: FastifyInstance, options: FastifyWsOptions): Promise<void> {
  if (fastify.hasPlugin('@fastify/websocket')) throw new FRT_ERR_WS_CONFLICT()
  const settings = settingsOf(options)

  const hub = attachHub(fastify, options.broker)
  // Before @fastify/websocket's own onRoute hook, which replaces every route's handler.
  fastify.addHook('onRoute', guardRoute(settings.origins, hub))
  serveDocument(fastify, hub, settings.asyncapi)
  const upgrading = new PendingUpgrades()
  /** An upgrade refused before routing: no route to name. */
  const rejected = (status: number): void => {
    hub.counters.rejected++
    if (channels.connectionReject.hasSubscribers) channels.connectionReject.publish({ transport: 'ws', route: null, status })
  }
  const host: WsHost = { hub, upgrading }
  fastify.server.on('upgrade', function trackUpgrade (_request: unknown, socket: Socket) {
    upgrading.add(socket)
  })
  const listenersBefore = new Set(fastify.server.listeners('upgrade'))
  let upgradeListeners: Function[] = []
  await fastify.register(fastifyWebsocket, {
    options: {
      maxPayload: settings.maxPayload,
      maxFragments: Math.max(MIN_MAX_FRAGMENTS, Math.ceil(settings.maxPayload / MIN_FRAGMENT_BYTES)),
      perMessageDeflate: settings.perMessageDeflate,
      handleProtocols: selectProtocol,
      closeTimeout: CLOSE_TIMEOUT,
      WebSocket: RealtimeSocket
    } as any,
    errorHandler: onWebsocketError as any,
    // Every socket gets 1001 "going away" (the default would send no code at all, 1005) and
    // app.close() waits for them, at most CLOSE_TIMEOUT, since ws destroys sockets that do not answer.
    preClose: function closeSockets (this: FastifyInstance, done: () => void) {
      // No new upgrades: a late one gets 503 and its socket ends (routed through Fastify it would
      // get a 503 on a socket that nobody ends, and app.close() would wait for it forever).
      for (const listener of upgradeListeners) this.server.removeListener('upgrade', listener as () => void)
      this.server.on('upgrade', function refuseLate (request: IncomingMessage, socket: Socket) {
        rejected(503)
        refuseLateUpgrade(request, socket)
      })
      this.websocketServer.close()
      const sockets = [...this.websocketServer.clients] as RealtimeSocket[]
      upgrading.destroyAll()
      // A socket leaves `clients` when it emits 'close', so each of these will emit it.
      const closed = sockets.map((socket) => new Promise((resolve) => socket.once('close', resolve)))
      for (const socket of sockets) socket[kConnection]?.closeWith(CloseCode.GoingAway, 'server shutting down')
      for (const socket of sockets) socket.close(CloseCode.GoingAway, 'server shutting down')
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
      if (retryAfter > 0) {
        rejected(429)
        return refuseTooMany(socket, retryAfter)
      }
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
    const clients = fastify.websocketServer.clients as Set<RealtimeSocket>
    const timer = setInterval(() => {
      for (const socket of clients) socket[kConnection]?.heartbeat()
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
