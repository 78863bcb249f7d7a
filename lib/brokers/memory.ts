import { FRT_ERR_BROKER_UNAVAILABLE } from '../errors.js'
import { maxAgeMsOption, maxLenOption, maxScanOption } from '../options.js'
import type { Broker, BrokerEvent, BrokerListener } from './broker.js'
import { LOG_START, compareEventIds, parseEventId, type EventIdParts } from '../protocol/event-id.js'

/** Options of {@link memoryBroker}. */
export interface MemoryBrokerOptions {
  /**
   * How many events the log keeps for resume; older ones are dropped.
   * @default 10000
   */
  maxLen?: number
  /**
   * How long (ms) an event stays resumable; older ones are dropped. Unset: no age limit.
   */
  maxAgeMs?: number
  /**
   * How far back (in entries of the log, any topic) a resume may start; further back is a reset.
   * @default 10000
   */
  maxScan?: number
}

class LogEntry implements BrokerEvent, EventIdParts {
  readonly id: string
  readonly ms: number
  readonly seq: number
  readonly topic: string
  readonly event: string
  readonly data: string

  constructor (ms: number, seq: number, topic: string, event: string, data: string) {
    this.id = `${ms}-${seq}`
    this.ms = ms
    this.seq = seq
    this.topic = topic
    this.event = event
    this.data = data
  }
}

class MemoryBroker implements Broker {
  private readonly maxLen: number
  private readonly maxAgeMs: number | undefined
  private readonly maxScan: number
  // The log: entries[head..] are live; the dead prefix is compacted away in trim().
  private entries: (LogEntry | undefined)[] = []
  private head = 0
  private lastMs = 0
  private lastSeq = -1
  // The newest id that has left the log: every event after it is still there, so it still resumes.
  // LOG_START until the first trim; '' once closed (no id matches it).
  private lastTrimmed = LOG_START
  // The id of the last event given to the listeners: the position.
  private delivered = LOG_START
  private readonly listeners = new Set<BrokerListener>()
  private closed = false
  // Events published while a dispatch runs (a listener that publishes) wait here, so order holds.
  private readonly pending: LogEntry[] = []
  private dispatching = false

  constructor (options: MemoryBrokerOptions) {
    this.maxLen = maxLenOption(options.maxLen, 10000)
    this.maxAgeMs = maxAgeMsOption(options.maxAgeMs)
    this.maxScan = maxScanOption(options.maxScan)
  }

  publish (topic: string, event: string, data: string): Promise<string> {
    if (this.closed) return Promise.reject(new FRT_ERR_BROKER_UNAVAILABLE('the memory broker is closed'))
    let ms = Date.now()
    let seq = 0
    if (ms <= this.lastMs) {
      ms = this.lastMs
      seq = this.lastSeq + 1
    }
    this.lastMs = ms
    this.lastSeq = seq
    const entry = new LogEntry(ms, seq, topic, event, data)
    this.entries.push(entry)
    this.trim(ms)
    this.dispatch(entry)
    return Promise.resolve(entry.id)
  }

  listen (listener: BrokerListener): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  position (): Promise<string> {
    if (this.closed) return Promise.reject(new FRT_ERR_BROKER_UNAVAILABLE('the memory broker is closed'))
    return Promise.resolve(this.delivered)
  }

  history (after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null> {
    const from = parseEventId(after)
    if (from === undefined) return Promise.resolve(null)
    this.trim(Date.now())
    let index = this.indexOf(from)
    if (index === -1) {
      // Ids are canonical (parseEventId), so the string comparison is exact.
      if (after !== this.lastTrimmed) return Promise.resolve(null)
      index = this.head - 1
    }
    if (this.entries.length - 1 - index > this.maxScan) return Promise.resolve(null)
    const events: BrokerEvent[] = []
    for (let i = index + 1; i < this.entries.length; i++) {
      const entry = this.entries[i] as LogEntry
      if (topics.has(entry.topic)) events.push(entry)
    }
    return Promise.resolve(events)
  }

  close (): Promise<void> {
    this.closed = true
    this.listeners.clear()
    this.entries = []
    this.head = 0
    this.lastTrimmed = ''
    return Promise.resolve()
  }

  private dispatch (entry: LogEntry): void {
    if (this.dispatching) {
      this.pending.push(entry)
      return
    }
    this.dispatching = true
    try {
      let next: LogEntry | undefined = entry
      while (next !== undefined) {
        for (const listener of this.listeners) {
          // A listener must not throw; if one does, the others still get the event and order holds.
          try { listener(next) } catch {}
        }
        this.delivered = next.id
        next = this.pending.shift()
      }
    } finally {
      this.dispatching = false
    }
  }

  /** Binary search for the exact id among the live entries; -1 when it is not there. */
  private indexOf (id: EventIdParts): number {
    let low = this.head
    let high = this.entries.length - 1
    while (low <= high) {
      const mid = (low + high) >>> 1
      const order = compareEventIds(this.entries[mid] as LogEntry, id)
      if (order === 0) return mid
      if (order < 0) low = mid + 1
      else high = mid - 1
    }
    return -1
  }

  /** Drops the oldest live entry. */
  private drop (entries: (LogEntry | undefined)[]): void {
    this.lastTrimmed = (entries[this.head] as LogEntry).id
    entries[this.head++] = undefined
  }

  private trim (now: number): void {
    const entries = this.entries
    while (entries.length - this.head > this.maxLen) this.drop(entries)
    if (this.maxAgeMs !== undefined) {
      const oldest = now - this.maxAgeMs
      while (this.head < entries.length && (entries[this.head] as LogEntry).ms < oldest) this.drop(entries)
    }
    // Compact once the dead prefix outweighs the live part, so trimming stays amortized O(1).
    if (this.head > 1024 && this.head * 2 > entries.length) {
      this.entries = entries.slice(this.head)
      this.head = 0
    }
  }
}

/**
 * An in-process broker: one bounded, ordered log of `<ms>-<seq>` ids, for one Fastify process
 * (or several apps in one process). The default of both plugins.
 */
export function memoryBroker (options: MemoryBrokerOptions = {}): Required<Broker> {
  return new MemoryBroker(options)
}
