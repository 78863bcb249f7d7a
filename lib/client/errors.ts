import type { ValidationDetail } from '../protocol/messages.js'

/**
 * The codes of errors the client makes itself. Errors the server sends keep the server's code
 * (`VALIDATION`, `FORBIDDEN`, `HANDLER_ERROR`, `RATE_LIMITED`, a `publicError`'s own, ...).
 * - `TIMEOUT`: no reply within the request's timeout;
 * - `DISCONNECTED`: the connection dropped while the request was in flight (it may or may not have run);
 * - `CLOSED`: the client is closed (by `close()`, or by the server with a code that says not to come back);
 * - `QUEUE_FULL`: the queue of what waits for a connection is full;
 * - `PAYLOAD_TOO_LARGE`: the message is larger than the server's `maxPayload` (refused locally, or 1009);
 * - `UNAUTHORIZED`: the server refused the token, and a new one did not help;
 * - `ABORTED`: the request's `signal` aborted;
 * - `BAD_RESPONSE`: an SSE response that is not an event stream.
 */
export type ClientErrorCode =
  | 'TIMEOUT' | 'DISCONNECTED' | 'CLOSED' | 'QUEUE_FULL' | 'PAYLOAD_TOO_LARGE' | 'UNAUTHORIZED' | 'ABORTED' | 'BAD_RESPONSE'

/** Every error of the client: `code` is stable, `message` is for people. */
export class RealtimeClientError extends Error {
  /** A {@link ClientErrorCode}, or the server's code. */
  readonly code: ClientErrorCode | (string & {})
  /** The first validation failure, when the server sent one. */
  readonly details: ValidationDetail[] | undefined

  constructor (code: ClientErrorCode | (string & {}), message: string, details?: ValidationDetail[]) {
    super(message)
    this.name = 'RealtimeClientError'
    this.code = code
    this.details = details
  }
}
