// Event ids are `<ms>-<seq>` (decimal integers, ordered by ms then seq), the form Redis Streams use,
// so one id is a resume point for any set of topics, in memory and in Redis alike.

// Canonical decimal only (no leading zeros): a resume point is an id exactly as it was issued.
const EVENT_ID = /^(0|[1-9]\d{0,15})-(0|[1-9]\d{0,15})$/

/**
 * The position of a log that has had no event yet: a resume point before its first event, valid
 * for as long as no event of the log has left its history.
 */
export const LOG_START = '0-0'

/** A parsed event id. */
export interface EventIdParts {
  ms: number
  seq: number
}

/** Parses an event id; returns undefined for anything malformed or beyond safe integers. */
export function parseEventId (id: unknown): EventIdParts | undefined {
  if (typeof id !== 'string') return undefined
  const match = EVENT_ID.exec(id)
  if (match === null) return undefined
  const ms = Number(match[1])
  const seq = Number(match[2])
  if (ms > Number.MAX_SAFE_INTEGER || seq > Number.MAX_SAFE_INTEGER) return undefined
  return { ms, seq }
}

/** Orders two parsed ids: negative, zero or positive, like a sort comparator. */
export function compareEventIds (a: EventIdParts, b: EventIdParts): number {
  return a.ms === b.ms ? a.seq - b.seq : a.ms - b.ms
}

/** Formats a parsed id. */
export function formatEventId (ms: number, seq: number): string {
  return `${ms}-${seq}`
}

/** The newer of two ids (either may be undefined); an id that does not parse counts as absent. */
export function newerEventId (a: string | undefined, b: string | undefined): string | undefined {
  const left = parseEventId(a)
  const right = parseEventId(b)
  if (left === undefined) return right === undefined ? undefined : b
  if (right === undefined) return a
  return compareEventIds(left, right) >= 0 ? a : b
}

/**
 * True when an event with id `id` comes after `last` and must be delivered: always when there is no
 * `last`; by id order when both are event ids; for ids of another form (a custom source's), when
 * they differ, since their order is unknown.
 */
export function isAfter (id: string, last: string | undefined): boolean {
  if (last === undefined) return true
  const a = parseEventId(id)
  const b = parseEventId(last)
  return a === undefined || b === undefined ? id !== last : compareEventIds(a, b) > 0
}
