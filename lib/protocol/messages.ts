// The WebSocket messages of fastify-realtime: JSON text, UTF-8, one message per frame.
//   client -> server  {"type":"say","id":"c1","data":{...}}
//   server -> client  {"type":"hello",...} {"type":"event",...} {"type":"reply",...} {"type":"error",...} {"type":"reset",...}
// Builders take data already serialized as JSON text, so a payload is stringified once.

/** A message id: echoed on its reply or error, with the same JSON type. */
export type MessageId = string | number

/** The longest string id a message may carry. */
export const MAX_ID_LENGTH = 256

// Pure: a bundle that does not use it (the client) leaves it out.
/** The codes of error messages the library sends. */
export const ErrorCode = /* @__PURE__ */ Object.freeze({
  /** Not parseable as JSON, or a forbidden key (`__proto__`, `constructor.prototype`). */
  BadJson: 'BAD_JSON',
  /** Valid JSON, but not an object with a string `type`, or a bad `id`. */
  BadFrame: 'BAD_FRAME',
  UnknownType: 'UNKNOWN_TYPE',
  /** The data does not match its schema (also missing data the schema requires). */
  Validation: 'VALIDATION',
  /** The handler failed; its own message stays on the server unless the error is public. */
  HandlerError: 'HANDLER_ERROR',
  RateLimited: 'RATE_LIMITED',
  /** A `realtime.subscribe` to a topic the route does not declare, or that `authorize` refused (the same answer). */
  Forbidden: 'FORBIDDEN',
  /** A `realtime.subscribe` past the route's `maxSubscriptions`. */
  TooManySubscriptions: 'TOO_MANY_SUBSCRIPTIONS'
} as const)

/** Codes of error messages. The first four count as bad messages. */
export type WsErrorCode = typeof ErrorCode[keyof typeof ErrorCode] | (string & {})

/** The first failure of a validation: a JSON pointer and what was wrong there. */
export interface ValidationDetail {
  path: string
  message: string
}

/** True for a valid message id: a string of at most {@link MAX_ID_LENGTH} characters or a finite number. */
export function isMessageId (id: unknown): id is MessageId {
  return (typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isFinite(id))
}

function idField (id: MessageId | undefined): string {
  return id === undefined ? '' : `,"id":${JSON.stringify(id)}`
}

/** A reply; `data` is JSON text, or undefined for a reply without data. */
export function replyMessage (id: MessageId, data: string | undefined): string {
  return `{"type":"reply"${idField(id)}${data === undefined ? '' : `,"data":${data}`}}`
}

/** An error, answering the message of `id` when it had one. */
export function errorMessage (id: MessageId | undefined, code: WsErrorCode, message: string, details?: ValidationDetail[]): string {
  const error = details === undefined ? { code, message } : { code, message, details }
  return `{"type":"error"${idField(id)},"error":${JSON.stringify(error)}}`
}

/** An event sent to one connection; `data` is JSON text. */
export function eventMessage (event: string, data: string): string {
  return `{"type":"event","event":${JSON.stringify(event)},"data":${data}}`
}

/** An event from a topic, carrying the topic and its resumable id; `data` is JSON text. */
export function topicEventMessage (topic: string, id: string, event: string, data: string): string {
  return `{"type":"event","topic":${JSON.stringify(topic)},"id":${JSON.stringify(id)},"event":${JSON.stringify(event)},"data":${data}}`
}

/** Tells the client that a subscription to `topic` could not resume from its `after`. */
export function resetMessage (topic: string): string {
  return `{"type":"reset","topic":${JSON.stringify(topic)}}`
}

/**
 * The first message to a client that negotiated `realtime.v1`: what it needs to pace itself and
 * refresh its token in time.
 */
export interface HelloData {
  /** The connection's id (`conn.id`). */
  connectionId: string
  /** The server's ping interval, ms (0: no pings). */
  heartbeatMs: number
  /** The largest message the server accepts, in bytes. */
  maxPayload: number
  /** Epoch ms at which the connection closes with 4401, or null. */
  expiresAt: number | null
}

/** The `hello` message. */
export function helloMessage (hello: HelloData): string {
  const { connectionId, heartbeatMs, maxPayload, expiresAt } = hello
  return `{"type":"hello","data":${JSON.stringify({ connectionId, heartbeatMs, maxPayload, expiresAt })}}`
}

/** The data of `realtime.subscribe`. */
export interface SubscribeData {
  topic: string
  /** The id of the last event the client has of the topic (or the last position it was told). */
  after?: string
}

/** The data of `realtime.unsubscribe`. */
export interface UnsubscribeData {
  topic: string
}

/** The reply to `realtime.subscribe`, sent after the replay (or the reset) and before any live event. */
export interface SubscribedData {
  topic: string
  /**
   * The broker's position when the subscription went live (never older than an event already
   * sent of the topic): the client's resume point until an event arrives. Absent when the broker
   * reports no position.
   */
  position?: string
  /** True when the replay continued from `after`; false without `after`, or after a reset. */
  resumed: boolean
}

/** The reply to `realtime.subscribe`. */
export function subscribedReply (id: MessageId, subscribed: SubscribedData): string {
  const { topic, position, resumed } = subscribed
  return replyMessage(id, JSON.stringify({ topic, position, resumed }))
}

/** The `type` of each message the server sends. */
export const ServerMessageType = Object.freeze({
  Event: 'event',
  Reply: 'reply',
  Error: 'error',
  Reset: 'reset',
  /** The first message to a client that negotiated `realtime.v1`. */
  Hello: 'hello'
} as const)
