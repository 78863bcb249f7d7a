// The broker's two connections: a writer for the pipelined XADDs and the history reads, and a
// reader for the XREAD BLOCK tail (which would stall every other command on its connection). Both
// belong to the broker, which closes them: they are opened from `url` or `cluster`, or duplicated
// from a `client` passed in, which is never written to, connected or closed by the library.
import { Redis, type RedisOptions } from 'ioredis'

export interface Connections {
  /**
   * Typed as a standalone connection: a Cluster takes the same commands and pipelines (it routes
   * each by its key's slot), and the broker uses nothing else of either.
   */
  readonly writer: Redis
  readonly reader: Redis
  /**
   * Closes both now: their sockets are destroyed, not ended, so a Redis that is down or paused
   * (and never answers the FIN) keeps nothing open; what was in flight is rejected.
   */
  close (): void
}

/** Where the connections come from: exactly one of the three. */
export interface ConnectionSource {
  url?: string | undefined
  client?: unknown
  cluster?: ReadonlyArray<{ host: string, port: number }> | undefined
}

/**
 * How long a closing connection waits for Redis to close its side before destroying the socket: not
 * at all, so a process whose Redis is down or paused exits as soon as the broker is closed.
 */
export const DISCONNECT_TIMEOUT = 0

/** Disconnects (no reconnection) and destroys the sockets of `connections` at once. */
export function destroy (connections: readonly Redis[]): void {
  for (const connection of connections) {
    const socket = connection.stream
    connection.disconnect()
    socket?.destroy()
  }
}

/**
 * The writer's settings, over whatever the client passed in had: no offline queue (while Redis is
 * away a publish fails at once instead of waiting), and no resend after a reconnect (an XADD whose
 * reply was lost may have been written, and must not be twice).
 */
const WRITER: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
  enableAutoPipelining: false,
  lazyConnect: false,
  disconnectTimeout: DISCONNECT_TIMEOUT
}

/** Reads are idempotent: the reader queues and resends what a reconnect interrupted. */
const READER: RedisOptions = {
  enableOfflineQueue: true,
  autoResendUnfulfilledCommands: true,
  maxRetriesPerRequest: null,
  enableAutoPipelining: false,
  lazyConnect: false,
  disconnectTimeout: DISCONNECT_TIMEOUT
}

/** The writer and the reader on one Redis: opened from `url`, or duplicated from `client`. */
export function standaloneConnections ({ url, client }: ConnectionSource): Connections {
  const redis = client as Redis | undefined
  const writer = redis?.duplicate(WRITER) ?? new Redis(url as string, WRITER)
  const reader = redis?.duplicate(READER) ?? new Redis(url as string, READER)
  return { writer, reader, close: () => destroy([writer, reader]) }
}
