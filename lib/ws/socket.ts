// The WebSocket class of the plugin's ws server (ws's `WebSocket` option): ws's own, which hands the
// events of an app.ws() connection's socket straight to the connection. A connection listens to no
// event of its socket: five listeners per socket would cost it a larger event table and two listener
// arrays, about 200 bytes of every idle connection. Sockets of plain `{ websocket: true }` routes
// behave exactly as ws's.
import WebSocket from 'ws'
import { kConnection } from '../symbols.js'

/** The connection of a socket: what the socket tells it, and what the plugin asks of it. @internal */
export interface SocketOwner {
  message (data: Buffer, isBinary: boolean): void
  /** A ping or a pong from the peer. */
  control (ping: boolean): void
  socketError (err: Error): void
  closed (code: number, reason: Buffer): void
  /** A heartbeat tick. */
  heartbeat (): void
  /** Closes with the server's own code. */
  closeWith (code: number, reason: string): void
}

/** @internal */
export class RealtimeSocket extends WebSocket {
  /** The connection of an app.ws() route; undefined on plain routes. */
  [kConnection]: SocketOwner | undefined = undefined

  override emit (event: string | symbol, ...args: any[]): boolean {
    const owner = this[kConnection]
    if (owner === undefined) return super.emit(event, ...args)
    switch (event) {
      case 'message':
        owner.message(args[0], args[1])
        return true
      case 'ping':
      case 'pong':
        owner.control(event === 'ping')
        return true
      case 'error':
        // Then @fastify/websocket's listener, which leaves a connection's socket to it.
        owner.socketError(args[0])
        break
      case 'close': {
        // ws's own listener first: the socket leaves the server's `clients`.
        const listened = super.emit(event, ...args)
        owner.closed(args[0], args[1])
        return listened
      }
    }
    return super.emit(event, ...args)
  }
}
