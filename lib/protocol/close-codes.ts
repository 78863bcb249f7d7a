// WebSocket close codes (RFC 6455 section 7.4): the standard ones the library sends or reports, and
// its own from the 4000-4999 range for applications, each with what a client does when it sees it.

/** The close codes of fastify-realtime, by meaning. */
export const CloseCode = Object.freeze({
  /** Normal closure: `close()` on either side. */
  Normal: 1000,
  /** The server is shutting down (`app.close()`). */
  GoingAway: 1001,
  /** The peer broke the WebSocket protocol (sent by ws itself). */
  ProtocolError: 1002,
  /** A binary frame on a JSON route. */
  UnsupportedData: 1003,
  /** No close frame: the peer vanished. Never sent, only reported. */
  Abnormal: 1006,
  /** A text frame that is not UTF-8 (sent by ws itself). */
  InvalidPayload: 1007,
  /** RFC 6455's "policy violation": here a slow consumer, past `maxBufferedBytes`. */
  SlowConsumer: 1008,
  /** A message larger than `maxPayload`. */
  MessageTooBig: 1009,
  /** An unexpected server error outside a message handler. */
  InternalError: 1011,
  /** Too many bad messages in a row. */
  TooManyBadMessages: 4400,
  /** The authentication expired (`authenticate` returned `{ user, expiresAt }`). */
  AuthExpired: 4401,
  /** Sustained rate-limit abuse (over twice the limit), or too many messages waiting. */
  RateLimited: 4429
} as const)

/** A close code of {@link CloseCode}. */
export type CloseCodeValue = typeof CloseCode[keyof typeof CloseCode]

/**
 * What a client does after a close:
 * - `stop`: do not reconnect;
 * - `backoff`: reconnect after the backoff delay, and resume;
 * - `spread`: reconnect after a random delay of up to {@link SPREAD_MS} (a deploy closes every client at once), and resume;
 * - `soon`: reconnect within {@link SOON_MS}, and resume;
 * - `refresh`: ask for a new token, and reconnect at once;
 * - `slow-down`: reconnect after the backoff delay, never sooner than {@link RATE_LIMITED_MS}.
 */
export type CloseAction = 'stop' | 'backoff' | 'spread' | 'soon' | 'refresh' | 'slow-down'

/** The longest random delay before reconnecting after 1001. */
export const SPREAD_MS = 2000
/** The longest delay before reconnecting after 1008. */
export const SOON_MS = 1000
/** The shortest delay before reconnecting after 4429. */
export const RATE_LIMITED_MS = 10000

/** What a client does after the server closed with `code` (API.md, "What the client does on each close code"). */
export function closeAction (code: number): CloseAction {
  switch (code) {
    // A deliberate close by the server, or a peer that breaks the protocol: another try ends the same way.
    case CloseCode.Normal:
    case CloseCode.ProtocolError:
    case CloseCode.InvalidPayload: return 'stop'
    case CloseCode.GoingAway: return 'spread'
    case CloseCode.SlowConsumer: return 'soon'
    case CloseCode.UnsupportedData:
    case CloseCode.MessageTooBig:
    case CloseCode.TooManyBadMessages: return 'stop'
    case CloseCode.AuthExpired: return 'refresh'
    case CloseCode.RateLimited: return 'slow-down'
  }
  // Other application codes: 4000-4499 are worth another try, 4500-4999 are final.
  if (code >= 4500 && code <= 4999) return 'stop'
  return 'backoff'
}

/**
 * True for a code an application may send in a close frame (RFC 6455 section 7.4.1: 1004, 1005
 * and 1006 are reserved, 1015 and up to 2999 are for the protocol, 3000-4999 for libraries and apps).
 */
export function isSendableCloseCode (code: unknown): code is number {
  return typeof code === 'number' && Number.isInteger(code) &&
    ((code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999))
}
