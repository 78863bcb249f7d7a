// Resume: the events after an id, read with XRANGE from the writer's connection (the reader's is
// blocked in XREAD), page by page, filtered by topic. An id that is not in the stream is a reset,
// never a silent gap.
import type { Redis } from 'ioredis'
import { FRT_ERR_BROKER_UNAVAILABLE } from '../../errors.js'
import type { BrokerEvent } from '../broker.js'
import { LOG_START, parseEventId } from '../../protocol/event-id.js'
import { toEvent, type Entry } from './entries.js'

const HISTORY_PAGE = 512

export interface HistoryOptions {
  key: string
  maxAgeMs: number | undefined
  maxScan: number
  commandTimeout: number
}

function withTimeout<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new FRT_ERR_BROKER_UNAVAILABLE(`Redis did not answer ${what} within ${ms} ms`)), ms)
      // A read still in flight when the broker closes settles once ioredis drops its connection,
      // which may be a turn later: its deadline keeps no process alive meanwhile.
      timer.unref()
    })
  ]).finally(() => clearTimeout(timer))
}

// One listener per connection however many reads wait for it to open.
const opening = new WeakMap<Redis, Promise<void>>()

/**
 * Waits, up to `ms`, for a connection that is still being opened; one that was lost (Redis away,
 * reconnecting), or fails to open, fails at once.
 */
async function connected (connection: Redis, ms: number): Promise<void> {
  const status = connection.status
  if (status === 'ready') return
  if (status !== 'connecting' && status !== 'connect') throw new FRT_ERR_BROKER_UNAVAILABLE(`the Redis connection is ${status}`)
  let ready = opening.get(connection)
  if (ready === undefined) {
    ready = new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        opening.delete(connection)
        connection.off('ready', settle)
        connection.off('close', settle)
        if (connection.status === 'ready') resolve()
        else reject(new FRT_ERR_BROKER_UNAVAILABLE(`the Redis connection is ${connection.status}`))
      }
      connection.once('ready', settle)
      connection.once('close', settle)
    })
    // Every read that waits has its own handler; one that gave up (its timeout) leaves none.
    ready.catch(() => {})
    opening.set(connection, ready)
  }
  await withTimeout(ready, ms, 'the connection')
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

/** The state of the log, or undefined when its key does not exist (no event yet, or a Redis that lost it). */
async function streamState (connection: Redis, key: string, commandTimeout: number): Promise<StreamState | undefined> {
  let reply: unknown
  try {
    reply = await withTimeout(connection.xinfo('STREAM', key), commandTimeout, 'XINFO')
  } catch (err) {
    if (/no such key/i.test((err as Error).message)) return undefined
    throw err
  }
  return streamStateOf(reply)
}

/** The milliseconds part of a Redis entry id. */
function msOf (id: string): number {
  return Number(id.slice(0, id.indexOf('-')))
}

function unavailable (err: unknown): Error {
  if ((err as { code?: unknown }).code === 'FRT_ERR_BROKER_UNAVAILABLE') return err as Error
  return new FRT_ERR_BROKER_UNAVAILABLE((err as Error).message)
}

/**
 * The id of the newest entry published before `createdAt` (`LOG_START` when there is none): the
 * position of a reader that has read nothing yet, since it delivers everything published from
 * `createdAt` on (reader.ts). An id of the log, so `readHistory` resumes from it.
 */
export async function readPositionBefore (connection: Redis, options: HistoryOptions, createdAt: number): Promise<string> {
  try {
    await connected(connection, options.commandTimeout)
    // An end id of `<ms>` means `<ms>-<the greatest seq>`.
    const newest = await withTimeout(connection.xrevrange(options.key, String(createdAt - 1), '-', 'COUNT', 1), options.commandTimeout, 'XREVRANGE') as Entry[]
    return newest[0]?.[0] ?? LOG_START
  } catch (err) {
    throw unavailable(err)
  }
}

/**
 * The events after `after` that belong to `topics`, in log order, or `null` when `after` cannot be
 * resumed: malformed, not in the stream with every event after it (trimmed, never issued, from a
 * Redis that restarted empty), followed by an event older than `maxAgeMs`, or more than `maxScan`
 * entries back.
 */
export async function readHistory (connection: Redis, options: HistoryOptions, after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null> {
  const { key, maxAgeMs, maxScan, commandTimeout } = options
  if (parseEventId(after) === undefined) return null
  try {
    await connected(connection, commandTimeout)
    // The id must still be in the log, or be one whose later events are all still there; anything
    // else (trimmed with later ones, never issued, of a stream Redis lost) is a reset, never a gap.
    const exact = await withTimeout(connection.xrange(key, after, after), commandTimeout, 'XRANGE') as Entry[]
    if (exact.length === 0) {
      const state = await streamState(connection, key, commandTimeout)
      // The newest id ever added resumes even once trimmed (by age, on a quiet log): nothing came after it.
      if (after === (state?.lastGeneratedId ?? LOG_START)) return []
      // The start of a log resumes while nothing has been trimmed from it (Redis 7 counts what was added).
      if (after !== LOG_START || state === undefined || state.entriesAdded !== state.length) return null
    }
    // Trimming by age is lazy and approximate: an event past maxAgeMs has left the history even if
    // still stored, so an id whose next event is that old cannot be resumed.
    const oldest = maxAgeMs === undefined ? undefined : Date.now() - maxAgeMs
    const events: BrokerEvent[] = []
    let start = after
    let scanned = 0
    for (;;) {
      const page = await withTimeout(connection.xrange(key, `(${start}`, '+', 'COUNT', HISTORY_PAGE), commandTimeout, 'XRANGE') as Entry[]
      if (scanned === 0 && oldest !== undefined && page.length > 0 && msOf((page[0] as Entry)[0]) < oldest) return null
      scanned += page.length
      if (scanned > maxScan) return null
      for (const entry of page) {
        const event = toEvent(topics, entry)
        if (event !== undefined) events.push(event)
      }
      if (page.length < HISTORY_PAGE) return events
      start = (page.at(-1) as Entry)[0]
    }
  } catch (err) {
    throw unavailable(err)
  }
}
