// Framing for the WHATWG HTML event-stream format (section 9.2.5): pure functions, no I/O.
// A line ends at CRLF, a lone CR or a lone LF, so data is split on all three; `event` and `id`
// cannot hold any of them (nor NUL, which makes clients ignore an id), so they are rejected,
// never "sanitized" into something the caller did not send.

import { FRT_ERR_INVALID_OPTION, FRT_ERR_SSE_INVALID_FIELD } from '../errors.js'
import { retryOption } from '../options.js'

const LINE_BREAK = /\r\n|\r|\n/
const HAS_LINE_BREAK = /[\r\n]/
const FORBIDDEN_IN_FIELD = /[\r\n\0]/

/** Throws FRT_ERR_SSE_INVALID_FIELD when an event name or id holds CR, LF or NUL. */
export function assertField (field: 'event' | 'id', value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new FRT_ERR_INVALID_OPTION(field, `expected a string, got ${typeof value}`)
  }
  if (FORBIDDEN_IN_FIELD.test(value)) throw new FRT_ERR_SSE_INVALID_FIELD(field)
}

/** `data:` lines for a text: one per line of it, whatever its line breaks. */
export function frameData (data: string): string {
  if (!HAS_LINE_BREAK.test(data)) return `data: ${data}\n`
  let out = ''
  for (const line of data.split(LINE_BREAK)) out += `data: ${line}\n`
  return out
}

/**
 * One complete event, ending with the blank line that dispatches it.
 * `event` undefined (or `message`, the default type) writes no `event:` line; `id: ''` is legal and resets the client's last id.
 */
export function frameEvent (event: string | undefined, data: string, id?: string, retry?: number): string {
  let out = ''
  if (id !== undefined) {
    assertField('id', id)
    out += `id: ${id}\n`
  }
  // `message` is the type a client gives an event without an `event:` line: no need to send it.
  if (event !== undefined && event !== 'message') {
    assertField('event', event)
    out += `event: ${event}\n`
  }
  if (retry !== undefined) out += `retry: ${retryOption(retry)}\n`
  return `${out}${frameData(data)}\n`
}

/** A comment, one `:` line per line of the text, so no text can forge a field. */
export function frameComment (text: string): string {
  let out = ''
  for (const line of String(text).split(LINE_BREAK)) out += line === '' ? ':\n' : `: ${line}\n`
  return `${out}\n`
}

/** A lone `retry:` field (no data, so nothing is dispatched). */
export function frameRetry (retry: number): string {
  return `retry: ${retryOption(retry)}\n\n`
}
