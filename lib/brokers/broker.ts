/** One event of a broker's log: the topic, the event name and the data already serialized as JSON. */
export interface BrokerEvent {
  /** `<ms>-<seq>`, assigned by the broker, totally ordered within its log. */
  readonly id: string
  readonly topic: string
  readonly event: string
  /** The event's data as JSON text, serialized once by the publisher. */
  readonly data: string
}

/** Receives every event of the log, in log order. Must not throw. */
export type BrokerListener = (event: BrokerEvent) => void

/**
 * Where events are ordered, kept for resume and fanned out: `memoryBroker()` for one process,
 * `redisBroker()` (from `fastify-realtime/redis`) for several instances sharing one log.
 */
export interface Broker {
  /**
   * Appends an event to the log and delivers it to every listener (of every instance), in log order.
   * Resolves to the event id; rejects with `FRT_ERR_BROKER_UNAVAILABLE` when the log cannot take it.
   */
  publish (topic: string, event: string, data: string): Promise<string>
  /** Registers a listener for all events from now on; returns the function that removes it. */
  listen (listener: BrokerListener): () => void
  /**
   * The events after `after` that belong to `topics`, in log order, or `null` when `after` cannot be
   * resumed: malformed, never issued, an event after it has left the history, or more than `maxScan`
   * entries back.
   */
  history (after: string, topics: ReadonlySet<string>): Promise<BrokerEvent[] | null>
  /**
   * Where this broker's listeners stand now: the id of the newest event delivered to them, so that
   * every event after it is still to be delivered (`0-0`, `LOG_START`, before any event). For a broker
   * that delivers as it publishes, the newest id of the log. A resume point that `history()` accepts
   * for as long as no event after it has left the history, and a reset after that, never a gap.
   * Subscriptions report it to clients that have received no event yet. Optional: without it,
   * subscriptions send no position and resume from event ids only.
   */
  position? (): Promise<string>
  /** Stops the broker: later publishes reject, listeners receive nothing more. */
  close (): Promise<void>
}

/** True when `value` has the shape of a Broker. @internal */
export function isBroker (value: unknown): value is Broker {
  if (value === null || typeof value !== 'object') return false
  const broker = value as Record<string, unknown>
  return typeof broker.publish === 'function' && typeof broker.listen === 'function' &&
    typeof broker.history === 'function' && typeof broker.close === 'function'
}
