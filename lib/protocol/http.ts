// HTTP facts of the event-stream transport, as a client reads them (RFC 9110, WHATWG HTML 9.2).

/** The media type of an event stream. */
export const EVENT_STREAM = 'text/event-stream'

/** Request and response headers, lower-case as the Fetch standard's `Headers` reports them. */
export const Header = Object.freeze({
  Accept: 'accept',
  Authorization: 'authorization',
  ContentType: 'content-type',
  LastEventId: 'last-event-id',
  RetryAfter: 'retry-after'
} as const)

/** The prefix of an `Authorization` header value that carries a bearer token (RFC 6750 section 2.1). */
export const BEARER_SCHEME = 'Bearer '

/**
 * What a client does with the status of an event-stream response:
 * - `open`: read the stream;
 * - `stop`: do not reconnect (204 is the server's "no more", other 4xx will not change by retrying);
 * - `rejected`: the token was refused: ask for a new one once, then stop;
 * - `wait`: reconnect after `Retry-After`, never sooner than the backoff;
 * - `backoff`: reconnect after the backoff delay.
 */
export type ResponseAction = 'open' | 'stop' | 'rejected' | 'wait' | 'backoff'

/** What a client does after an event-stream response with `status` (API.md, "The client"). */
export function responseAction (status: number): ResponseAction {
  if (status === 200) return 'open'
  if (status === 401) return 'rejected'
  if (status === 429 || status === 503) return 'wait'
  return status < 500 ? 'stop' : 'backoff'
}

/**
 * The delay a `Retry-After` value asks for (RFC 9110 section 10.2.3: delay-seconds or an HTTP-date),
 * in ms; 0 when absent or unreadable.
 */
export function retryAfterMs (value: string | null, now: number): number {
  if (value === null) return 0
  if (/^\d+$/.test(value)) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? 0 : Math.max(0, at - now)
}
