// fastify-realtime/redis: a broker on one Redis Stream per namespace, shared by any number of
// Fastify instances. Why Streams and not pub/sub: a reader that reconnects continues from its own
// cursor and loses nothing, the stream is the history that SSE clients resume from, and a Redis
// entry id (`<ms>-<seq>`) is one resume point for any set of topics across instances.
import { Redis } from 'ioredis'
import { FRT_ERR_BROKER_UNAVAILABLE, FRT_ERR_INVALID_OPTION } from '../../errors.js'
import type { Broker, BrokerEvent, BrokerListener } from '../broker.js'
import { LOG_START, parseEventId } from '../../protocol/event-id.js'
import { commandTimeoutOption, maxAgeMsOption, maxLenOption, maxScanOption, namespaceOption } from '../../options.js'

export type { Broker, BrokerEvent, BrokerListener } from '../broker.js'

/** Options of {@link redisBroker}. */
export interface RedisBrokerOptions {
  /** A Redis URL (`redis://host:port/db`); the broker opens its connections from it and closes them. */
  url?: string
  /**
   * An existing ioredis instance (e.g. `fastify.redis`); never closed by the broker. Create it with
   * `autoResendUnfulfilledCommands: false`, or a publish whose reply was lost in a reconnect may be
   * written to the log twice (the broker's own connections, from `url`, are made that way).
   */
  client?: Redis
  /**
   * Brokers with the same Redis and namespace share one log.
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
}

type Entry = [id: string, fields: string[]]

const READ_COUNT = 512
const HISTORY_PAGE = 512
// XREAD blocks this long before the reader checks the stream was not recreated under its cursor.
const BLOCK_MS = 1000
const RETRY_MS = 250
const MAX_SEQ = '18446744073709551615'

/** A pause that does not keep the process alive. */
function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}

function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FRT_ERR_BROKER_UNAVAILABLE(`Redis did not answer ${what} within ${ms} ms`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

/** An entry's fields as an event, or undefined for an entry this library did not write. */
function toEvent (topicFilter: ReadonlySet<string> | undefined, [id, fields]: Entry): BrokerEvent | undefined {
  let topic: string | undefined
  let event: string | undefined
  let data: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1] as string
    switch (fields[i]) {
      case 't': topic = value; break
      case 'e': event = value; break
      case 'd': data = value; break
    }
  }
  if (topic === undefined || event === undefined || data === undefined) return undefined
  if (topicFilter !== undefined && !topicFilter.has(topic)) return undefined
  return { id, topic, event, data }
}

/** What XINFO STREAM tells of the log (Redis >= 7 for `entriesAdded`). */
interface StreamState {
  /** The id of the newest entry ever added, trimmed or not. */
  lastGeneratedId: string
  length: number
  /** Every entry ever added: more than `length` once anything has been trimmed. NaN before Redis 7, which does not count. */
  entriesAdded: number
}

/** XINFO STREAM's fields, as a flat `[key, value, ...]` array (RESP2, legacy mapping) or an object (`replyMapping: 'resp3'`). */
function streamStateOf (reply: unknown): StreamState {
  let fields = reply as Record<string, unknown>
  if (Array.isArray(reply)) {
    fields = {}
    for (let i = 0; i + 1 < reply.length; i += 2) fields[reply[i] as string] = reply[i + 1]
  }
  return {
    lastGeneratedId: String(fields['last-generated-id']),
    length: Number(fields.length),
    entriesAdded: Number(fields['entries-added'])
  }
}

/**
 * XREAD's entries for the one stream read: `null` when BLOCK timed out, `[[key, entries]]` in RESP2
 * and ioredis' default RESP3 mapping, `{ key: entries }` for a client made with `replyMapping: 'resp3'`.
 */
function entriesOf (reply: unknown): Entry[] {
  if (reply === null) return []
  const streams = Array.isArray(reply) ? reply.map((stream) => (stream as [string, Entry[]])[1]) : Object.values(reply as object)
  return streams[0] as Entry[]
}

class RedisBroker implements Broker {
  private readonly writer: Redis
  private readonly ownsWriter: boolean
  private readonly reader: Redis
  private readonly key: string
  private readonly maxLen: number
  private readonly maxAgeMs: number | undefined
  private readonly maxScan: number
  private readonly commandTimeout: number
  private readonly listeners = new Set<BrokerListener>()
  private closed = false
  private readonly createdAt = Date.now()
  private ready: Promise<void> | undefined
  private lastTrim = 0

  constructor (options: RedisBrokerOptions) {
    if (options === null || typeof options !== 'object') {
      throw new FRT_ERR_INVALID_OPTION('redisBroker options', 'expected { url } or { client }')
    }
    const namespace = namespaceOption(options.namespace)
    this.maxLen = maxLenOption(options.maxLen, 100000)
    this.maxAgeMs = maxAgeMsOption(options.maxAgeMs)
    this.maxScan = maxScanOption(options.maxScan)
    this.commandTimeout = commandTimeoutOption(options.commandTimeout)
    // The hash tag keeps every key of a namespace in one Redis Cluster slot.
    this.key = `frt:{${namespace}}:log`
    if (options.client !== undefined) {
      if (options.client === null || typeof (options.client as Redis).duplicate !== 'function') {
        throw new FRT_ERR_INVALID_OPTION('client', 'expected an ioredis instance')
      }
      this.writer = options.client
      this.ownsWriter = false
    } else if (typeof options.url === 'string') {
      // No offline queue: while Redis is away, a publish fails at once instead of waiting. No resend
      // after a reconnect: an XADD whose reply was lost may have been written, and must not be twice.
      this.writer = new Redis(options.url, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 })
      this.writer.on('error', () => {}) // reconnects by itself; failures surface as rejected commands
      this.ownsWriter = true
    } else {
      throw new FRT_ERR_INVALID_OPTION('redisBroker options', 'expected url (a Redis URL) or client (an ioredis instance)')
    }
    // Reads are idempotent: the reader queues and resends what a reconnect interrupted.
    this.reader = this.writer.duplicate({ enableOfflineQueue: true, autoResendUnfulfilledCommands: true, maxRetriesPerRequest: null, lazyConnect: false })
    this.reader.on('error', () => {}) // reconnects by itself; the read loop retries from its cursor
    this.read()
  }

  async publish (topic: string, event: string, data: string): Promise<string> {
    if (this.closed) throw new FRT_ERR_BROKER_UNAVAILABLE('the Redis broker is closed')
    await this.connected()
    let id: string | null
    try {
      id = await withTimeout(
        this.writer.xadd(this.key, 'MAXLEN', '~', this.maxLen, '*', 't', topic, 'e', event, 'd', data),
        this.commandTimeout,
        'XADD'
      )
    } catch (err) {
      throw wrap(err)
    }
    this.trimByAge()
    return id as string
  }

  listen (listener: BrokerListener): () => void {
    // The reader has tailed the log since the broker was made: every event it reads from now on,
    // published on this instance or any other, reaches the listener.
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  async position (): Promise<string> {
    if (this.closed) throw new FRT_ERR_BROKER_UNAVAILABLE('the Redis broker is closed')
    try {
      await this.connected()
      return (await this.streamState())?.lastGeneratedId ?? LOG_START
    } catch (err) {
      throw wrap(err)
    }
  }

  async history (after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null> {
    if (parseEventId(after) === undefined) return null
    try {
      await this.connected()
      // The id must still be in the log, or be one whose later events are all still there; anything
      // else (trimmed with later ones, never issued, of a stream Redis lost) is a reset, never a gap.
      const exact = await withTimeout(this.writer.xrange(this.key, after, after), this.commandTimeout, 'XRANGE') as Entry[]
      if (exact.length === 0) {
        const state = await this.streamState()
        // The newest id ever added resumes even once trimmed (by age, on a quiet log): nothing came after it.
        if (after === (state?.lastGeneratedId ?? LOG_START)) return []
        // The start of a log resumes while nothing has been trimmed from it (Redis 7 counts what was added).
        if (after !== LOG_START || state === undefined || state.entriesAdded !== state.length) return null
      }
      // Trimming by age is lazy and approximate: an event past maxAgeMs has left the history even if
      // still stored, so an id whose next event is that old cannot be resumed.
      const oldest = this.maxAgeMs === undefined ? undefined : Date.now() - this.maxAgeMs
      const events: BrokerEvent[] = []
      let start = after
      let scanned = 0
      for (;;) {
        const page = await withTimeout(this.writer.xrange(this.key, `(${start}`, '+', 'COUNT', HISTORY_PAGE), this.commandTimeout, 'XRANGE') as Entry[]
        if (scanned === 0 && oldest !== undefined && page.length > 0 && msOf((page[0] as Entry)[0]) < oldest) return null
        scanned += page.length
        if (scanned > this.maxScan) return null
        for (const entry of page) {
          const event = toEvent(topics, entry)
          if (event !== undefined) events.push(event)
        }
        if (page.length < HISTORY_PAGE) return events
        start = (page.at(-1) as Entry)[0]
      }
    } catch (err) {
      throw wrap(err)
    }
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.listeners.clear()
    this.reader.disconnect()
    if (this.ownsWriter) this.writer.disconnect()
  }

  /**
   * Waits, up to commandTimeout, for a connection that is still being opened; one that was lost
   * (Redis away, reconnecting) fails at once: nothing is queued, nothing delivered locally only.
   */
  private async connected (): Promise<void> {
    const status = this.writer.status
    if (status === 'ready') return
    // A client made with lazyConnect waits for its first command: connect it.
    if (status === 'wait') this.writer.connect().catch(() => {})
    else if (status !== 'connecting' && status !== 'connect') throw new FRT_ERR_BROKER_UNAVAILABLE(`the Redis connection is ${status}`)
    // One listener however many publishes wait for the same connection.
    this.ready ??= new Promise<void>((resolve) => this.writer.once('ready', () => {
      this.ready = undefined
      resolve()
    }))
    await withTimeout(this.ready, this.commandTimeout, 'the connection')
  }

  /** The state of the log, or undefined when its key does not exist (no event yet, or a Redis that lost it). */
  private async streamState (): Promise<StreamState | undefined> {
    let reply: unknown
    try {
      reply = await withTimeout(this.writer.xinfo('STREAM', this.key), this.commandTimeout, 'XINFO')
    } catch (err) {
      if (/no such key/i.test((err as Error).message)) return undefined
      throw err
    }
    return streamStateOf(reply)
  }

  private async lastId (): Promise<string> {
    const last = await this.writer.xrevrange(this.key, '+', '-', 'COUNT', 1) as Entry[]
    return last[0]?.[0] ?? '0-0'
  }

  /** Tails the stream from the cursor on a connection of its own, in stream order, until closed. */
  private async read (): Promise<void> {
    const reader = this.reader
    let cursor = await this.startCursor()
    while (!this.closed) {
      let entries: Entry[]
      try {
        entries = entriesOf(await reader.xread('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.key, cursor))
      } catch {
        if (this.closed) break
        // Redis is away: wait, then continue from the same cursor, so nothing is lost or repeated.
        await sleep(RETRY_MS)
        cursor = await this.checkCursor(cursor)
        continue
      }
      for (const entry of entries) {
        cursor = entry[0]
        const event = toEvent(undefined, entry)
        if (event === undefined) continue
        for (const listener of this.listeners) {
          try { listener(event) } catch {}
        }
      }
      if (entries.length === 0) cursor = await this.checkCursor(cursor)
    }
  }

  /**
   * Where tailing starts: the end of the log, or the moment the broker was made if that is earlier.
   * Events other instances publish while this reader connects are then not missed, and nothing
   * published before the broker existed is delivered (ids are Redis server time: keep clocks in sync).
   */
  private async startCursor (): Promise<string> {
    for (;;) {
      try {
        const last = (await this.reader.xrevrange(this.key, '+', '-', 'COUNT', 1) as Entry[])[0]?.[0] ?? '0-0'
        // XREAD is exclusive: the greatest id of the previous millisecond reads from createdAt on.
        const fromCreation = `${this.createdAt - 1}-${MAX_SEQ}`
        return isBefore(last, fromCreation) ? last : fromCreation
      } catch {
        if (this.closed) return '0-0'
        await sleep(RETRY_MS)
      }
    }
  }

  /**
   * A stream that was deleted or recreated (Redis restarted without persistence) has ids below the
   * cursor: reading from the old cursor would skip its events, so read it from the start.
   */
  private async checkCursor (cursor: string): Promise<string> {
    try {
      return isBefore(await this.lastId(), cursor) ? '0-0' : cursor
    } catch {
      return cursor
    }
  }

  private trimByAge (): void {
    if (this.maxAgeMs === undefined) return
    const now = Date.now()
    if (now - this.lastTrim < 1000) return
    this.lastTrim = now
    this.writer.xtrim(this.key, 'MINID', '~', `${now - this.maxAgeMs}-0`).catch(() => {})
  }
}

/** Orders two Redis entry ids, `<ms>-<seq>` with 64-bit parts (beyond safe integers). */
function isBefore (a: string, b: string): boolean {
  return idValue(a) < idValue(b)
}

/** The milliseconds part of a Redis entry id. */
function msOf (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function idValue (id: string): bigint {
  const [ms, seq] = id.split('-') as [string, string]
  return (BigInt(ms) << 64n) + BigInt(seq)
}

function wrap (err: unknown): Error {
  if ((err as { code?: unknown }).code === 'FRT_ERR_BROKER_UNAVAILABLE') return err as Error
  return new FRT_ERR_BROKER_UNAVAILABLE((err as Error).message)
}

/**
 * A broker on a Redis Stream: every Fastify instance with the same Redis and `namespace` shares
 * one ordered log, reads it from its own cursor, and resumes SSE clients from it with ids that are
 * valid on every instance. Requires `ioredis@^6` and Redis >= 6.2.
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
