// The tail of the log: XREAD BLOCK on a connection of its own, from a cursor (the id of the last
// entry read), in stream order, for as long as the broker is open. Every instance's reader delivers
// to its own listeners, so an event reaches local subscribers only once Redis has it. A reader
// that lost its connection, or whose master failed over, continues from its cursor: nothing in the
// stream is missed or read twice.
import type { Redis } from 'ioredis'
import type { BrokerEvent } from '../broker.js'
import { entriesOf, isBefore, toEvent, type Entry } from './entries.js'

const READ_COUNT = 1000
// XREAD blocks this long before the reader checks the stream was not recreated under its cursor.
const BLOCK_MS = 1000
const RETRY_MS = 250
/** How many of the newest ids read are remembered, to tell a stream that lost its tail from a new one. */
const REMEMBERED = 4096
const MAX_SEQ = '18446744073709551615'

export class Reader {
  private readonly connection: Redis
  private readonly key: string
  /** When the broker was made: nothing published before it is delivered. */
  readonly createdAt: number
  /** The id of the last entry read and delivered, once there is one: every later entry is still to come. */
  lastRead: string | undefined
  private readonly deliver: (event: BrokerEvent) => void
  private readonly read: string[] = []
  private readCount = 0
  private closed = false
  private pause: { timer: NodeJS.Timeout, resolve: () => void } | undefined

  /**
   * Starts tailing at once: from the end of the log, or from `createdAt` if that is earlier, so
   * events other instances publish while this one connects are not missed, and nothing published
   * before the broker existed is delivered (ids are Redis server time: keep clocks in sync).
   */
  constructor (connection: Redis, key: string, createdAt: number, deliver: (event: BrokerEvent) => void) {
    this.connection = connection
    this.key = key
    this.createdAt = createdAt
    this.deliver = deliver
    this.tail()
  }

  /** Stops reading; the loop ends with the read in flight (closing the connection rejects it). */
  stop (): void {
    this.closed = true
    if (this.pause !== undefined) {
      clearTimeout(this.pause.timer)
      this.pause.resolve()
    }
  }

  private async tail (): Promise<void> {
    let cursor = await this.startCursor()
    while (!this.closed) {
      let entries: Entry[]
      try {
        entries = entriesOf(await this.connection.xread('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.key, cursor))
      } catch {
        if (this.closed) break
        // Redis is away: wait, then continue from the same cursor, so nothing is lost or repeated.
        await this.sleep(RETRY_MS)
        cursor = await this.checkCursor(cursor)
        continue
      }
      for (const entry of entries) {
        cursor = entry[0]
        this.remember(cursor)
        const event = toEvent(undefined, entry)
        if (event !== undefined) this.deliver(event)
        this.lastRead = cursor
      }
      if (entries.length === 0) cursor = await this.checkCursor(cursor)
    }
  }

  private async startCursor (): Promise<string> {
    for (;;) {
      try {
        const last = await this.lastId()
        // XREAD is exclusive: the greatest id of the previous millisecond reads from createdAt on.
        const fromCreation = `${this.createdAt - 1}-${MAX_SEQ}`
        const cursor = isBefore(last, fromCreation) ? last : fromCreation
        this.remember(cursor)
        return cursor
      } catch {
        if (this.closed) return '0-0'
        await this.sleep(RETRY_MS)
      }
    }
  }

  /**
   * A stream whose newest entry is below the cursor either lost its newest entries (a master that
   * died before its replica had them: the rest is the stream this reader read, keep the cursor), or
   * was made anew (Redis restarted empty, with a clock behind the old one): read that one from its
   * start, or its events would be skipped. The newest entry tells which: this reader read it, or not.
   */
  private async checkCursor (cursor: string): Promise<string> {
    try {
      const last = await this.lastId()
      return !isBefore(last, cursor) || this.read.includes(last) ? cursor : '0-0'
    } catch {
      return cursor
    }
  }

  private async lastId (): Promise<string> {
    const last = await this.connection.xrevrange(this.key, '+', '-', 'COUNT', 1) as Entry[]
    return last[0]?.[0] ?? '0-0'
  }

  private remember (id: string): void {
    this.read[this.readCount++ % REMEMBERED] = id
  }

  /** A pause that does not keep the process alive, and ends at once when the reader stops. */
  private sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pause = undefined
        resolve()
      }, ms)
      timer.unref()
      this.pause = { timer, resolve }
    })
  }
}
