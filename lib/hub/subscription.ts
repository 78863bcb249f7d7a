import type { BrokerEvent } from '../brokers/broker.js'
import { channels, type ConnectionInfo } from '../diagnostics.js'
import { compareEventIds, parseEventId, type EventIdParts } from '../protocol/event-id.js'
import type { Encoder, Hub, Subscriber } from './hub.js'

/** What a subscription writes to: an SSE stream or a WebSocket connection. @internal */
export interface Sink {
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
 * One subscription of a sink to a set of topics, resumed after an event id: registered with the hub
 * first (live events are buffered), then the history is replayed with backpressure, then what
 * arrived meanwhile is written, never twice, and delivery goes live. One algorithm for both transports.
 * @internal
 */
export class Subscription implements Subscriber<Buffer> {
  readonly topics: readonly string[]
  private readonly hub: Hub
  private readonly sink: Sink
  private readonly encode: Encoder<Buffer>
  private buffered: BrokerEvent[] | undefined = []
  private bufferedBytes = 0
  // Events at or before the last replayed id were written by the replay: drop them until one passes
  // (a tail reader that lags, as with Redis, can deliver them again after the switch to live).
  private floor: EventIdParts | undefined

  constructor (hub: Hub, sink: Sink, topics: readonly string[], encode: Encoder<Buffer>) {
    this.hub = hub
    this.sink = sink
    this.topics = topics
    this.encode = encode
  }

  /** Subscribes, replays after `after` (none when undefined), then goes live. Never rejects. */
  async start (after: string | undefined): Promise<void> {
    for (const topic of this.topics) this.hub.add(topic, this.encode, this)
    if (after === undefined) return this.goLive(undefined)
    let history: BrokerEvent[] | null
    try {
      history = await this.hub.broker.history(after, new Set(this.topics))
    } catch (err) {
      return this.sink.historyFailed(err)
    }
    if (!this.sink.isOpen) return
    if (history === null) {
      this.hub.counters.resets++
      this.announce(false, 0)
      this.sink.reset(this.topics)
      return this.goLive(undefined)
    }
    this.hub.counters.resumed++
    this.announce(true, history.length)
    for (const event of history) {
      this.sink.write(this.encode(event))
      if (this.sink.congested) await this.sink.drained()
      if (!this.sink.isOpen) return
    }
    // The client has everything up to `after` and the replay: a live feed that lags behind (another
    // instance's reader) may still bring those, and none may go out twice.
    this.goLive(history.at(-1)?.id ?? after)
  }

  private announce (resumed: boolean, replayed: number): void {
    if (channels.subscriptionResume.hasSubscribers) {
      channels.subscriptionResume.publish({ ...this.sink.describe(), topics: [...this.topics], resumed, replayed })
    }
  }

  /** Removes the subscription from the hub. */
  stop (): void {
    for (const topic of this.topics) this.hub.remove(topic, this.encode, this)
  }

  deliver (frame: Buffer, event: BrokerEvent): void {
    if (this.buffered !== undefined) {
      this.buffered.push(event)
      this.bufferedBytes += frame.length
      if (this.bufferedBytes > this.sink.maxBufferedBytes) this.sink.cutSlowConsumer()
      return
    }
    if (this.floor !== undefined) {
      if (!this.passesFloor(event)) return
      this.floor = undefined
    }
    this.sink.write(frame)
  }

  /** Ends the replay: writes what arrived meanwhile (none twice, none at or before `floor`), then delivers live. */
  private goLive (floor: string | undefined): void {
    const buffered = this.buffered as BrokerEvent[]
    this.buffered = undefined
    this.floor = floor === undefined ? undefined : parseEventId(floor)
    for (const event of buffered) this.deliver(this.encode(event), event)
  }

  private passesFloor (event: BrokerEvent): boolean {
    const id = parseEventId(event.id)
    return id !== undefined && compareEventIds(id, this.floor as EventIdParts) > 0
  }
}
