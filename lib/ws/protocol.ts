// The WebSocket wire protocol: JSON text frames, UTF-8. Pure functions, no I/O.
//   client -> server  {"type":"say","id":"c1","data":{...}}
//   server -> client  {"type":"event",...} {"type":"reply",...} {"type":"error",...} {"type":"reset",...}
import sjson from 'secure-json-parse'
import type { ValidationDetail } from '../contract.js'

/** Codes of error frames. The first four count as bad messages. */
export type WsErrorCode = 'BAD_JSON' | 'BAD_FRAME' | 'UNKNOWN_TYPE' | 'VALIDATION' | 'HANDLER_ERROR' | 'RATE_LIMITED' | (string & {})

/** A message id: echoed on its reply or error, with the same JSON type. */
export type MessageId = string | number

/** A parsed, well-formed inbound message (its data is not validated yet). @internal */
export interface InboundMessage {
  type: string
  id: MessageId | undefined
  data: unknown
}

/** An inbound frame that cannot be handled, and the error frame that answers it. @internal */
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

const MAX_ID_LENGTH = 256

function isMessageId (id: unknown): id is MessageId {
  return (typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isFinite(id))
}

/**
 * Parses one text frame with secure-json-parse (`__proto__` and `constructor.prototype` keys are
 * refused). Returns the message, or the ProtocolError to answer with.
 * @internal
 */
export function parseMessage (text: string): InboundMessage | ProtocolError {
  let value: unknown
  try {
    value = sjson.parse(text)
  } catch {
    return new ProtocolError('BAD_JSON', 'The message is not valid JSON, or holds a forbidden key (__proto__, constructor.prototype).', idOf(text))
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return new ProtocolError('BAD_FRAME', 'A message must be a JSON object such as {"type":"say","id":"c1","data":{}}.')
  }
  const { type, id, data } = value as { type?: unknown, id?: unknown, data?: unknown }
  if (id !== undefined && !isMessageId(id)) {
    return new ProtocolError('BAD_FRAME', `A message "id" must be a string of at most ${MAX_ID_LENGTH} characters or a finite number.`)
  }
  if (typeof type !== 'string') {
    return new ProtocolError('BAD_FRAME', 'A message must have a string "type".', id)
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

function idField (id: MessageId | undefined): string {
  return id === undefined ? '' : `,"id":${JSON.stringify(id)}`
}

/** A reply frame; `data` is JSON text, or undefined for a reply without data. @internal */
export function frameReply (id: MessageId, data: string | undefined): string {
  return `{"type":"reply"${idField(id)}${data === undefined ? '' : `,"data":${data}`}}`
}

/** An error frame. @internal */
export function frameError (id: MessageId | undefined, code: WsErrorCode, message: string, details?: ValidationDetail[]): string {
  const error = details === undefined ? { code, message } : { code, message, details }
  return `{"type":"error"${idField(id)},"error":${JSON.stringify(error)}}`
}

/** An event sent to one connection; `data` is JSON text. @internal */
export function frameEvent (event: string, data: string): string {
  return `{"type":"event","event":${JSON.stringify(event)},"data":${data}}`
}

/** An event from a topic, carrying the topic and its resumable id; `data` is JSON text. @internal */
export function frameTopicEvent (topic: string, id: string, event: string, data: string): string {
  return `{"type":"event","topic":${JSON.stringify(topic)},"id":${JSON.stringify(id)},"event":${JSON.stringify(event)},"data":${data}}`
}

/** Tells the client that `subscribe(topic, { after })` could not resume from `after`. @internal */
export function frameReset (topic: string): string {
  return `{"type":"reset","topic":${JSON.stringify(topic)}}`
}
