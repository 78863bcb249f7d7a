// Server-to-client WebSocket frames built by hand (RFC 6455 section 5.2), so a topic event is framed
// once and the same bytes go to every connection that negotiated no extension.
import type { BrokerEvent } from '../brokers/broker.js'
import { topicEventMessage } from '../protocol/messages.js'

// RFC 6455 section 5.2: FIN bit and opcode 0x1 (text) in the first byte.
const FIN_TEXT = 0x81
// Payload length: up to 125 in the 7 bits, 126 + 16-bit length, 127 + 64-bit length. Server frames are unmasked.
const LENGTH_16 = 126
const LENGTH_64 = 127

/** A complete server-to-client text frame (FIN, unmasked) around a payload. @internal */
export function textFrame (payload: string): Buffer {
  const size = Buffer.byteLength(payload)
  const head = size < LENGTH_16 ? 2 : size < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(head + size)
  frame[0] = FIN_TEXT
  if (size < LENGTH_16) {
    frame[1] = size
  } else if (size < 65536) {
    frame[1] = LENGTH_16
    frame.writeUInt16BE(size, 2)
  } else {
    frame[1] = LENGTH_64
    frame.writeUInt32BE(Math.floor(size / 2 ** 32), 2)
    frame.writeUInt32BE(size >>> 0, 6)
  }
  frame.write(payload, head, 'utf8')
  return frame
}

/** The payload of a frame made by {@link textFrame}. @internal */
export function framePayload (frame: Buffer): Buffer {
  const length = (frame[1] as number) & 0x7f
  return frame.subarray(length < LENGTH_16 ? 2 : length === LENGTH_16 ? 4 : 10)
}

/**
 * Frames a topic event for WebSocket once per event, whatever the number of connections: the
 * whole wire frame, written as it is to every connection that can take it. @internal
 */
export function encodeWsEvent (event: BrokerEvent): Buffer {
  return textFrame(topicEventMessage(event.topic, event.id, event.event, event.data))
}
