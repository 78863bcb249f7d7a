// fastify-realtime/redis: a broker on one Redis Stream per namespace, shared by any number of
// Fastify instances, on one Redis or a Redis Cluster. Why Streams and not pub/sub: a reader that
// reconnects continues from its own cursor and loses nothing, the stream is the history that SSE
// clients resume from, and a Redis entry id (`<ms>-<seq>`) is one resume point for any set of
// topics across instances. The parts: publisher.ts (pipelined XADDs), reader.ts (the XREAD tail),
// history.ts (resume), connections.ts and cluster.ts (the broker's own connections).
import type { Cluster, Redis } from 'ioredis'
import { FRT_ERR_BROKER_UNAVAILABLE, FRT_ERR_INVALID_OPTION } from '../../errors.js'
import type { Broker, BrokerEvent, BrokerListener } from '../broker.js'
import {
  clusterOption,
  commandTimeoutOption,
  maxAgeMsOption,
  maxLenOption,
  maxPendingOption,
  maxScanOption,
  namespaceOption,
  redisClientOption,
  redisUrlOption,
  waitReplicasOption,
  type RedisClusterNode
} from '../../options.js'
import { clusterConnections } from './cluster.js'
import { standaloneConnections, type Connections } from './connections.js'
import { logKey } from './entries.js'
import { readHistory, readPositionBefore, type HistoryOptions } from './history.js'
import { Publisher } from './publisher.js'
import { Reader } from './reader.js'

export type { Broker, BrokerEvent, BrokerListener } from '../broker.js'
export type { RedisClusterNode } from '../../options.js'

/** Options of {@link redisBroker}: give exactly one of `url`, `client` and `cluster`. */
export interface RedisBrokerOptions {
  /** A Redis URL (`redis://host:port/db`); the broker opens its connections from it and closes them. */
  url?: string
  /**
   * An existing ioredis `Redis` or `Cluster` (e.g. `fastify.redis`): the broker only `duplicate()`s
   * it, into a writer and a reader of its own (closed by `close()`), with the settings they need;
   * the client itself is never written to, connected or closed by the broker.
   */
  client?: Redis | Cluster
  /**
   * The startup nodes of a Redis Cluster (`[{ host, port }, ...]`); the broker finds the others
   * and opens its connections from them. For passwords or TLS, pass an ioredis `Cluster` as `client`.
   */
  cluster?: RedisClusterNode[]
  /**
   * Brokers with the same Redis and namespace share one log, the stream `frt:{<namespace>}:log`;
   * on a Redis Cluster each namespace is one slot, on one master.
   * @default 'realtime'
   */
  namespace?: string
  /**
   * Events kept for resume (`XADD MAXLEN ~`, so Redis may keep a few more).
   * @default 100000
   */
  maxLen?: number
  /** Events older than this (ms) are trimmed (`XTRIM MINID`). Unset: no age limit. */
  maxAgeMs?: number
  /**
   * How far back (in entries of the log, any topic) a resume may start; further back is a reset.
   * @default 10000
   */
  maxScan?: number
  /**
   * How long a publish or a history read may wait for Redis before failing with `FRT_ERR_BROKER_UNAVAILABLE`.
   * @default 2000
   */
  commandTimeout?: number
  /**
   * How many publishes may wait for Redis at once (queued or sent, not answered yet); past it
   * `publish()` rejects at once with `FRT_ERR_BROKER_UNAVAILABLE`, so memory stays bounded while
   * Redis is slow or away.
   * @default 10000
   */
  maxPending?: number
  /**
   * How many replicas must hold an event before its publish resolves (`WAIT`, once per pipeline,
   * within `commandTimeout`). Redis replicates asynchronously: with 0, a master that dies can take
   * its last acknowledged writes with it; with 1 or more, a failover loses no acknowledged event.
   * @default 0
   */
  waitReplicas?: number
}

class RedisBroker implements Broker {
  private readonly writer: Redis
  private readonly connections: Connections
  private readonly publisher: Publisher
  private readonly tail: Reader
  private readonly historyOptions: HistoryOptions
  private readonly listeners = new Set<BrokerListener>()
  private closed = false

  constructor (options: RedisBrokerOptions) {
    if (options === null || typeof options !== 'object') {
      throw new FRT_ERR_INVALID_OPTION('redisBroker options', 'expected { url }, { client } or { cluster }')
    }
    const url = redisUrlOption(options.url)
    const client = redisClientOption<Redis | Cluster>(options.client)
    const cluster = options.cluster === undefined ? undefined : clusterOption(options.cluster)
    const sources = [url, client, cluster].filter((source) => source !== undefined).length
    if (sources !== 1) {
      throw new FRT_ERR_INVALID_OPTION('redisBroker options', sources === 0
        ? 'expected url (a Redis URL), client (an ioredis Redis or Cluster) or cluster (the startup nodes of a Redis Cluster)'
        : 'give only one of url, client and cluster')
    }
    const key = logKey(namespaceOption(options.namespace))
    const maxAgeMs = maxAgeMsOption(options.maxAgeMs)
    const commandTimeout = commandTimeoutOption(options.commandTimeout)
    const publisherOptions = {
      key,
      maxLen: maxLenOption(options.maxLen, 100000),
      maxAgeMs,
      commandTimeout,
      maxPending: maxPendingOption(options.maxPending),
      waitReplicas: waitReplicasOption(options.waitReplicas)
    }
    this.historyOptions = { key, maxAgeMs, maxScan: maxScanOption(options.maxScan), commandTimeout }
    const source = { url, client, cluster }
    this.connections = clusterConnections(source) ?? standaloneConnections(source)
    const { writer, reader } = this.connections
    // Each reconnects by itself; failures surface as rejected commands.
    writer.on('error', () => {})
    reader.on('error', () => {})
    this.writer = writer
    this.publisher = new Publisher(writer, publisherOptions)
    this.tail = new Reader(reader, key, Date.now(), (event) => {
      for (const listener of this.listeners) {
        try { listener(event) } catch {}
      }
    })
  }

  publish (topic: string, event: string, data: string): Promise<string> {
    return this.publisher.publish(topic, event, data)
  }

  listen (listener: BrokerListener): () => void {
    // The reader has tailed the log since the broker was made: every event it reads from now on,
    // published on this instance or any other, reaches the listener.
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  history (after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null> {
    return readHistory(this.writer, this.historyOptions, after, topics)
  }

  /**
   * Where this instance's listeners stand: the last entry its reader delivered. Not the newest id of
   * the log, which may be ahead of the reader: what lies between is still to be delivered here, so a
   * client told that id, that left before those events arrived, would never get them.
   */
  position (): Promise<string> {
    if (this.closed) return Promise.reject(new FRT_ERR_BROKER_UNAVAILABLE('the Redis broker is closed'))
    const read = this.tail.lastRead
    if (read !== undefined) return Promise.resolve(read)
    return readPositionBefore(this.writer, this.historyOptions, this.tail.createdAt)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.listeners.clear()
    this.publisher.close()
    this.tail.stop()
    this.connections.close()
  }
}

/**
 * A broker on a Redis Stream: every Fastify instance with the same Redis (or Redis Cluster) and
 * `namespace` shares one ordered log, reads it from its own cursor, and resumes SSE clients from it
 * with ids that are valid on every instance. Requires `ioredis@^6` and Redis >= 6.2.
 *
 * @example
 * import { redisBroker } from 'fastify-realtime/redis'
 * const broker = redisBroker({ url: process.env.REDIS_URL })
 * await app.register(fastifySse, { broker })
 * app.addHook('onClose', () => broker.close())
 */
export function redisBroker (options: RedisBrokerOptions): Required<Broker> {
  return new RedisBroker(options)
}
