// What `fastify.realtime.stats()` reports: plain counters that the transports bump as things happen,
// so a snapshot costs the same whatever the number of connections.

/** `fastify.realtime.stats()`: a snapshot of this instance, O(1). */
export interface RealtimeStats {
  /** Open connections by transport. */
  connections: { sse: number, ws: number }
  /** Local topic subscriptions (an SSE `subscribe()` of three topics counts three). */
  subscriptions: number
  /** Topics with at least one local subscriber. */
  topics: number
  /** Counts since the hub was made. */
  totals: {
    /** Connections opened (WebSocket after the 101, SSE streams once their headers went out). */
    opened: number
    /** Connections closed, for any reason. */
    closed: number
    /** WebSocket upgrades and declared SSE routes answered without opening a connection. */
    rejected: number
    /** WebSocket messages received. */
    received: number
    /** Events, replies and errors written (SSE events, WebSocket messages; not heartbeats). */
    sent: number
    /** WebSocket messages answered with a bad-message error (BAD_JSON, BAD_FRAME, UNKNOWN_TYPE, VALIDATION). */
    invalid: number
    /** Connections closed as slow consumers. */
    slowConsumers: number
    /** Subscriptions resumed from an event id. */
    resumed: number
    /** Subscriptions that could not resume from their event id (a reset). */
    resets: number
  }
}

/** The counters behind {@link RealtimeStats}: one object per hub, bumped by the transports. @internal */
export class Counters {
  sse = 0
  ws = 0
  opened = 0
  closed = 0
  rejected = 0
  received = 0
  sent = 0
  invalid = 0
  slowConsumers = 0
  resumed = 0
  resets = 0
}
