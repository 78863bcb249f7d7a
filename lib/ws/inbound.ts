// Parsing of inbound WebSocket messages (the wire is in ../protocol/messages.ts).
import sjson from 'secure-json-parse'
import { ErrorCode, MAX_ID_LENGTH, isMessageId, type MessageId, type WsErrorCode } from '../protocol/messages.js'

/** A parsed, well-formed inbound message (its data is not validated yet). @internal */
export interface InboundMessage {
  type: string
  id: MessageId | undefined
  data: unknown
}

/** An inbound message that cannot be handled, and the error that answers it. @internal */
export class ProtocolError {
  readonly code: WsErrorCode
  readonly message: string
  readonly id: MessageId | undefined

  constructor (code: WsErrorCode, message: string, id?: MessageId) {
    this.code = code
    this.message = message
    this.id = id
  }
}

/**
 * Parses one text message with secure-json-parse (`__proto__` and `constructor.prototype` keys are
 * refused). Returns the message, or the ProtocolError to answer with.
 * @internal
 */
export function parseMessage (text: string): InboundMessage | ProtocolError {
  let value: unknown
  try {
    value = sjson.parse(text)
  } catch {
    return new ProtocolError(ErrorCode.BadJson, 'The message is not valid JSON, or holds a forbidden key (__proto__, constructor.prototype).', idOf(text))
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return new ProtocolError(ErrorCode.BadFrame, 'A message must be a JSON object such as {"type":"say","id":"c1","data":{}}.')
  }
  const { type, id, data } = value as { type?: unknown, id?: unknown, data?: unknown }
  if (id !== undefined && !isMessageId(id)) {
    return new ProtocolError(ErrorCode.BadFrame, `A message "id" must be a string of at most ${MAX_ID_LENGTH} characters or a finite number.`)
  }
  if (typeof type !== 'string') {
    return new ProtocolError(ErrorCode.BadFrame, 'A message must have a string "type".', id)
  }
  return { type, id, data }
}

/**
 * The id of a message refused for a forbidden key, so its sender's request still gets its answer.
 * Plain JSON.parse only creates own properties (no pollution), and only `id` is read from it.
 */
function idOf (text: string): MessageId | undefined {
  try {
    const id = (JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text) as { id?: unknown } | null)?.id
    return isMessageId(id) ? id : undefined
  } catch {
    return undefined
  }
}
