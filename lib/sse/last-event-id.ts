import type { FastifyRequest } from 'fastify'

// Longer ids are not resume points the library issued, and are not kept.
const MAX_LAST_EVENT_ID = 256

/** Reads `Last-Event-ID`, or `?lastEventId=` for polyfills that cannot set headers; undefined when absent or over 256 characters. @internal */
export function readLastEventId (request: FastifyRequest): string | undefined {
  let value: unknown = request.headers['last-event-id']
  // request.query parses the query string on first use: only when it can hold the parameter.
  if (value === undefined && request.raw.url?.includes('lastEventId') === true) value = Object(request.query).lastEventId
  if (typeof value !== 'string' || value.length > MAX_LAST_EVENT_ID) return undefined
  return value
}
