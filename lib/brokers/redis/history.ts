// Resume: the events after an id, read with XRANGE from the writer's connection (the reader's is
// blocked in XREAD), page by page, filtered by topic. An id that is not in the stream is a reset,
// never a silent gap.
import type { Redis } from 'ioredis'
import { FRT_ERR_BROKER_UNAVAILABLE } from '../../errors.js'
import type { BrokerEvent } from '../broker.js'
import { parseEventId } from '../../protocol/event-id.js'
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

/**
 * The events after `after` that belong to `topics`, in log order, or `null` when `after` cannot be
 * resumed: malformed, not in the stream (trimmed, never issued, from a Redis that restarted empty),
 * older than `maxAgeMs`, or more than `maxScan` entries back.
 */
export async function readHistory (connection: Redis, options: HistoryOptions, after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null> {
  const { key, maxAgeMs, maxScan, commandTimeout } = options
  const from = parseEventId(after)
  if (from === undefined) return null
  // Trimming by age is lazy and approximate: an id past maxAgeMs is a reset even if still stored.
  if (maxAgeMs !== undefined && from.ms < Date.now() - maxAgeMs) return null
  try {
    await connected(connection, commandTimeout)
    // The id must still be in the log: a trimmed or never-issued id is a reset, never a silent gap.
    const exact = await withTimeout(connection.xrange(key, after, after), commandTimeout, 'XRANGE') as Entry[]
    if (exact.length === 0) return null
    const events: BrokerEvent[] = []
    let start = after
    let scanned = 0
    for (;;) {
      const page = await withTimeout(connection.xrange(key, `(${start}`, '+', 'COUNT', HISTORY_PAGE), commandTimeout, 'XRANGE') as Entry[]
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
    if ((err as { code?: unknown }).code === 'FRT_ERR_BROKER_UNAVAILABLE') throw err
    throw new FRT_ERR_BROKER_UNAVAILABLE((err as Error).message)
  }
}
