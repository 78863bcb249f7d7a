import type { BrokerEvent } from '../brokers/broker.js'
import { channels, type ConnectionInfo } from '../diagnostics.js'
import { compareEventIds, newerEventId, parseEventId, type EventIdParts } from '../protocol/event-id.js'
import type { Encoder, Hub, Subscriber } from './hub.js'

/** What a subscription writes to: an SSE stream or a WebSocket connection. @internal */
export interface Sink {
  /** The hub the sink's topics live in. */
  readonly hub: Hub
  /** The transport's encoder of topic events. */
  readonly encode: Encoder<Buffer>
  readonly isOpen: boolean
  readonly maxBufferedBytes: number
  /** True while written bytes wait for the socket to drain. */
  readonly congested: boolean
  /** Writes one encoded frame, counting it against maxBufferedBytes. */
  write (frame: Buffer): void
  /** Resolves on drain, or at once when the sink closes. */
  drained (): Promise<void>
  /** Closes a consumer that does not keep up. */
  cutSlowConsumer (): void
  /** Writes the transport's "cannot resume" marker for these topics. */
  reset (topics: readonly string[]): void
  /** The history could not be read: the sink decides what the client sees. */
  historyFailed (err: unknown): void
  /** Who the sink is, for the diagnostics channels (made only when someone listens). */
  describe (): ConnectionInfo
}

/**
 * Called once, when the subscription goes live: after the replay (or the reset), before any live
 * event, in the same synchronous step. `position` is the broker's position when it went live,
 * never older than an event it wrote (undefined when the broker reports no position); `resumed`
 * is true when it replayed from `after`.
 */
export type OnLive = (position: string | undefined, resumed: boolean) => void

/**
 * One subscription of a sink to a set of topics, resumed after an event id: registered with the hub
 * first (live events are buffered), then the broker's position is read and the history replayed with
 * backpressure, then what arrived meanwhile is written, never twice, and delivery goes live. One
 * algorithm for both transports.
 * @internal
 */
export class Subscription implements Subscriber<Buffer> {
  readonly topics: readonly string[]
  private readonly sink: Sink
  // Kept until the subscription is live (a live one holds none of it): the live events that
  // arrived meanwhile, and the run in progress.
  private startup: Startup | undefined = new Startup()
  // Events at or before this event id were written, or precede the subscription: drop them until
  // one passes (a tail reader that lags, as with Redis, can deliver them after the switch to live).
  // The id string itself: it is one the subscription holds anyway, where its parsed form would
  // cost every idle subscription 56 bytes.
  private floor: string | undefined
  /** The id of the last event written (replayed or live), in id order. */
  lastWritten: string | undefined
  /** The position reported when the subscription went live. */
  private livePosition: string | undefined

  constructor (sink: Sink, topics: readonly string[]) {
    this.sink = sink
    this.topics = topics
  }

  /** Where a client of this subscription stands now: its position, or the last event written since (undefined without a position). */
  get position (): string | undefined {
    return this.livePosition === undefined ? undefined : newerEventId(this.livePosition, this.lastWritten)
  }

  /** Resolves once the subscription is live, or has ended without going live. */
  get ready (): Promise<void> {
    return this.startup?.run ?? Promise.resolve()
  }

  /** Subscribes, replays after `after` (none when undefined), then goes live. Never rejects. */
  start (after: string | undefined, onLive?: OnLive): Promise<void> {
    const startup = this.startup as Startup
    // replay() always awaits the broker first: the promise is in place before the run can end.
    startup.run = this.replay(after, onLive).finally(() => { this.startup = undefined })
    return startup.run
  }

  private async replay (after: string | undefined, onLive: OnLive | undefined): Promise<void> {
    const hub = this.sink.hub
    for (const topic of this.topics) hub.add(topic, this.sink.encode, this)
    const broker = hub.broker
    let position: string | undefined
    let history: BrokerEvent[] | null | undefined
    try {
      // Asked for once registered, before anything else runs: every event the hub delivers from now
      // on is after the position (the broker's listeners stand there). The history is read after
      // it, so it holds every event up to the position.
      position = await broker.position?.()
    } catch {
      // Without a position the subscription still goes live (a broker that is away for a while must
      // not end every new stream): its client resumes from the ids of the events it gets.
      position = undefined
    }
    try {
      if (after !== undefined) history = await broker.history(after, new Set(this.topics))
    } catch (err) {
      return this.sink.historyFailed(err)
    }
    if (!this.sink.isOpen) return
    // A custom broker's position that is no event id is no position.
    if (parseEventId(position) === undefined) position = undefined
    if (history === null) {
      hub.counters.resets++
      this.announce(false, 0)
      this.sink.reset(this.topics)
    } else if (history !== undefined) {
      hub.counters.resumed++
      this.announce(true, history.length)
      for (const event of history) {
        this.sink.write(this.sink.encode(event))
        this.lastWritten = event.id
        if (this.sink.congested) await this.sink.drained()
        if (!this.sink.isOpen) return
      }
    }
    // After a replay, the client has everything up to `after` and the replay; otherwise nothing up
    // to the position is due: events it lists are older than the subscription.
    const resumed = history !== null && history !== undefined
    this.goLive(resumed ? this.lastWritten ?? after : position, position, resumed, onLive)
  }

  private announce (resumed: boolean, replayed: number): void {
    if (channels.subscriptionResume.hasSubscribers) {
      channels.subscriptionResume.publish({ ...this.sink.describe(), topics: [...this.topics], resumed, replayed })
    }
  }

  /** Removes the subscription from the hub. */
  stop (): void {
    const hub = this.sink.hub
    for (const topic of this.topics) hub.remove(topic, this.sink.encode, this)
  }

  deliver (frame: Buffer, event: BrokerEvent): void {
    const startup = this.startup
    if (startup !== undefined && startup.buffered !== undefined) {
      startup.buffered.push(event)
      startup.bufferedBytes += frame.length
      if (startup.bufferedBytes > this.sink.maxBufferedBytes) this.sink.cutSlowConsumer()
      return
    }
    if (this.floor !== undefined) {
      if (!passes(event, this.floor)) return
      this.floor = undefined
    }
    this.sink.write(frame)
    this.lastWritten = event.id
  }

  /**
   * Ends the replay: writes what arrived meanwhile after `floor` (none twice), reports the position,
   * then delivers live, dropping what a lagging feed still brings up to that position.
   */
  private goLive (floor: string | undefined, position: string | undefined, resumed: boolean, onLive: OnLive | undefined): void {
    const startup = this.startup as Startup
    const buffered = startup.buffered as BrokerEvent[]
    startup.buffered = undefined
    this.floor = parseEventId(floor) === undefined ? undefined : floor
    for (const event of buffered) this.deliver(this.sink.encode(event), event)
    this.livePosition = position
    const now = this.position
    const parsed = parseEventId(now)
    // Nothing at or before the position is due any more (see replay()).
    if (parsed !== undefined && (this.floor === undefined || compareEventIds(parsed, parseEventId(this.floor) as EventIdParts) > 0)) this.floor = now
    onLive?.(now, resumed)
  }
}

/** What a subscription holds until it is live. */
class Startup {
  // Live events that arrived during the replay; undefined once written.
  buffered: BrokerEvent[] | undefined = []
  bufferedBytes = 0
  run: Promise<void> | undefined
}

/** True when an event comes after `floor`, a valid event id. */
function passes (event: BrokerEvent, floor: string): boolean {
  const id = parseEventId(event.id)
  return id !== undefined && compareEventIds(id, parseEventId(floor) as EventIdParts) > 0
}
