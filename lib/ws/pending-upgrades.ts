// Upgrade requests still in Fastify's hooks (an authenticate that has not settled): Node's HTTP
// timeouts no longer apply to their sockets and nothing reads them, so app.close() ends them.
import type { Duplex } from 'node:stream'

const MIN_PRUNE_SIZE = 64

/**
 * The sockets of upgrades in progress. A socket leaves when it becomes a connection; one that ends
 * otherwise (a refused upgrade) is dropped by the next prune, which runs whenever the set has doubled
 * since the last one: amortized O(1) per upgrade, and at most twice as many sockets as are pending.
 * No listener on the socket: a third 'close' listener, even removed, leaves the socket's listener
 * array grown by 150 bytes for the life of the connection.
 * @internal
 */
export class PendingUpgrades {
  private readonly sockets = new Set<Duplex>()
  private pruneAt = MIN_PRUNE_SIZE

  get size (): number {
    return this.sockets.size
  }

  add (socket: Duplex): void {
    const sockets = this.sockets
    sockets.add(socket)
    if (sockets.size < this.pruneAt) return
    for (const pending of sockets) if (pending.destroyed) sockets.delete(pending)
    this.pruneAt = Math.max(MIN_PRUNE_SIZE, sockets.size * 2)
  }

  delete (socket: Duplex): void {
    this.sockets.delete(socket)
  }

  /** Destroys every socket still pending. */
  destroyAll (): void {
    for (const socket of this.sockets) socket.destroy()
    this.sockets.clear()
  }
}
