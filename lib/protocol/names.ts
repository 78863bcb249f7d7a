// Names on the wire: what an event, message or topic may be called, and the names the library keeps
// for itself (`realtime.*`, the `realtime.v1` subprotocol, `bearer.<token>` entries).

/** 1..64 characters of `[A-Za-z0-9_.:-]`: event, message and topic names. */
export const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

/** Names starting with this are the library's own; contracts may not declare them. */
export const RESERVED_PREFIX = 'realtime.'

/** The WebSocket subprotocol the server selects; a token travels next to it as `bearer.<token>`. */
export const SUBPROTOCOL = 'realtime.v1'

/** The prefix of a `Sec-WebSocket-Protocol` entry that carries a bearer token. */
export const BEARER_PREFIX = 'bearer.'

/** The SSE events the library sends of its own. */
export const ReservedEvent = Object.freeze({
  /** The stream cannot resume from `Last-Event-ID`: what the client holds may be stale. */
  Reset: 'realtime.reset',
  /** The stream's source or handler failed; the stream ends after it. */
  Error: 'realtime.error',
  /** The broker's position when a subscription went live: a resume point before any event. */
  Position: 'realtime.position'
} as const)

/** The WebSocket message types the library answers of its own. */
export const ReservedMessage = Object.freeze({
  Subscribe: 'realtime.subscribe',
  Unsubscribe: 'realtime.unsubscribe',
  Ping: 'realtime.ping'
} as const)

/** True for a valid event, message or topic name that is not reserved. */
export function isValidName (name: unknown): name is string {
  return typeof name === 'string' && NAME_PATTERN.test(name) && !name.startsWith(RESERVED_PREFIX)
}
