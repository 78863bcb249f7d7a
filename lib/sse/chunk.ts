// HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1): an SSE frame is wrapped in its chunk once
// per event, and the same bytes go to every HTTP/1.1 stream.
import type { BrokerEvent } from '../brokers/broker.js'
import { frameEvent } from './framing.js'

const CR = 13
const LF = 10

/**
 * An SSE frame as one HTTP/1.1 chunk (`<size hex>CRLF<frame>CRLF`), the form written to every
 * HTTP/1.1 stream; other streams write the frame inside it (see {@link chunkBody}). @internal
 */
export function chunk (frame: string): Buffer {
  const size = Buffer.byteLength(frame)
  const head = size.toString(16)
  const buffer = Buffer.allocUnsafe(head.length + size + 4)
  let at = buffer.write(head, 0, 'latin1')
  buffer[at++] = CR
  buffer[at++] = LF
  at += buffer.write(frame, at, 'utf8')
  buffer[at++] = CR
  buffer[at] = LF
  return buffer
}

/** The frame inside a chunk made by {@link chunk}. @internal */
export function chunkBody (buffer: Buffer): Buffer {
  return buffer.subarray(buffer.indexOf(LF) + 1, buffer.length - 2)
}

/** Frames a topic event for SSE, once per event whatever the number of streams. @internal */
export function encodeSseEvent (event: BrokerEvent): Buffer {
  return chunk(frameEvent(event.event, event.data, event.id))
}
