// The AsyncAPI 3.0.0 document of an app's realtime routes: one channel per route, one operation per
// message, operations from the server's point of view (AsyncAPI 3.0.0 "Operation Object": `send`
// is what the server emits, `receive` what it consumes). Message payloads describe whole wire
// messages (the WebSocket envelope, the fields of an event-stream block), not only their data.
import { compiledOf, type AnyContract } from '../contract.js'
import { ErrorCode, MAX_ID_LENGTH } from '../protocol/messages.js'
import { BEARER_PREFIX, ReservedEvent, ReservedMessage, SUBPROTOCOL } from '../protocol/names.js'
import type { RouteEntry, SseRouteEntry, WsRouteEntry } from './registry.js'
import { jsonSchemaOf, type JsonSchema } from './schema.js'

/** The document's `info` (AsyncAPI 3.0.0 "Info Object"): `title` and `version` at least. */
export interface AsyncApiInfo {
  title: string
  version: string
  description?: string
  [field: string]: unknown
}

/** A server of the document (AsyncAPI 3.0.0 "Server Object"), such as `{ host: 'example.com', protocol: 'wss' }`. */
export interface AsyncApiServer {
  host: string
  protocol: string
  pathname?: string
  description?: string
  [field: string]: unknown
}

/** Options of `fastify.realtime.asyncapi()`. */
export interface AsyncApiOptions {
  /**
   * The document's `info`.
   * @default { title: 'Realtime API', version: '1.0.0' }
   */
  info?: AsyncApiInfo
  /** The document's `servers`, by name. Unset: none (the document then describes paths only). */
  servers?: Record<string, AsyncApiServer>
}

/** An AsyncAPI 3.0.0 document: a plain JSON object. */
export interface AsyncApiDocument {
  asyncapi: '3.0.0'
  info: AsyncApiInfo
  servers?: Record<string, AsyncApiServer>
  defaultContentType: string
  channels: Record<string, any>
  operations: Record<string, any>
  components: Record<string, any>
}

/** The parts of the document built from the routes, once. @internal */
export interface DocumentBody {
  channels: Record<string, any>
  operations: Record<string, any>
  components: Record<string, any>
}

type Message = Record<string, unknown>
type Ref = { $ref: string }

const WS_BINDING_VERSION = '0.1.0'
const HTTP_BINDING_VERSION = '0.3.0'
const EVENT_STREAM = 'text/event-stream'

const MESSAGE_ID: JsonSchema = {
  description: `Chosen by the client: a string of at most ${MAX_ID_LENGTH} characters or a number. The answer carries the same id, of the same JSON type.`,
  anyOf: [{ type: 'string', maxLength: MAX_ID_LENGTH }, { type: 'number' }]
}
const CORRELATION_ID: Ref = { $ref: '#/components/correlationIds/messageId' }
const ANY: JsonSchema = {}

function object (properties: Record<string, JsonSchema>, required: string[]): JsonSchema {
  return { type: 'object', required, properties }
}

function constant (value: string): JsonSchema {
  return { const: value }
}

/** A reply envelope: `{"type":"reply","id":...,"data":...}`. */
function replyPayload (data: JsonSchema, dataRequired: boolean): JsonSchema {
  return object({ type: constant('reply'), id: MESSAGE_ID, data }, dataRequired ? ['type', 'id', 'data'] : ['type', 'id'])
}

// Messages every WebSocket route shares, kept in components and referenced from the channels.
const WS_SHARED: Record<string, Message> = {
  'ws.error': {
    name: 'error',
    title: 'Error',
    summary: 'The answer to a message that could not be handled, carrying its id when it had one.',
    correlationId: CORRELATION_ID,
    payload: object({
      type: constant('error'),
      id: MESSAGE_ID,
      error: object({
        code: {
          type: 'string',
          description: `${Object.values(ErrorCode).join(', ')}, FORBIDDEN, TOO_MANY_SUBSCRIPTIONS, or the code of a public error (publicError()).`,
          pattern: '^[A-Z_]+$'
        },
        message: { type: 'string' },
        details: { type: 'array', items: object({ path: { type: 'string' }, message: { type: 'string' } }, ['path', 'message']) }
      }, ['code', 'message'])
    }, ['type', 'error'])
  },
  'ws.reset': {
    name: 'reset',
    title: 'Reset',
    summary: 'A subscription could not resume after its event id: what the client holds of the topic may be stale.',
    payload: object({ type: constant('reset'), topic: { type: 'string' } }, ['type', 'topic'])
  },
  'ws.hello': {
    name: 'hello',
    title: 'Hello',
    summary: `The first message after the upgrade, when the client negotiated the "${SUBPROTOCOL}" subprotocol.`,
    payload: object({
      type: constant('hello'),
      data: object({
        connectionId: { type: 'string' },
        heartbeatMs: { type: 'integer', minimum: 0 },
        maxPayload: { type: 'integer', minimum: 1 },
        expiresAt: { anyOf: [{ type: 'integer' }, { type: 'null' }], description: 'When the authentication expires (epoch ms): the connection then closes with 4401.' }
      }, ['connectionId', 'heartbeatMs', 'maxPayload', 'expiresAt'])
    }, ['type', 'data'])
  },
  'ws.realtime.ping': {
    name: ReservedMessage.Ping,
    title: 'Ping',
    summary: 'Answered with an empty reply: a liveness check a browser can see.',
    correlationId: CORRELATION_ID,
    payload: object({ type: constant(ReservedMessage.Ping), id: MESSAGE_ID }, ['type'])
  },
  'ws.realtime.ping.reply': {
    name: 'reply',
    title: 'Reply to realtime.ping',
    correlationId: CORRELATION_ID,
    payload: replyPayload(object({}, []), false)
  },
  'ws.realtime.subscribe.reply': {
    name: 'reply',
    title: 'Reply to realtime.subscribe',
    summary: 'Sent after the replay (or the reset), before live events.',
    correlationId: CORRELATION_ID,
    payload: replyPayload(object({
      topic: { type: 'string' },
      position: { type: 'string', description: 'The newest event id of the log when the subscription went live: a resume point.' },
      resumed: { type: 'boolean', description: 'False when there was no `after`, or it could not be resumed (a reset was sent).' }
    }, ['topic', 'position', 'resumed']), true)
  },
  'ws.realtime.unsubscribe.reply': {
    name: 'reply',
    title: 'Reply to realtime.unsubscribe',
    correlationId: CORRELATION_ID,
    payload: replyPayload(object({}, []), false)
  }
}

// Events every declared SSE route may send of its own.
const SSE_SHARED: Record<string, Message> = {
  'sse.realtime.reset': {
    name: ReservedEvent.Reset,
    title: 'Reset',
    summary: 'The stream could not resume from Last-Event-ID: what the client holds of these topics may be stale.',
    contentType: EVENT_STREAM,
    payload: object({
      event: constant(ReservedEvent.Reset),
      data: object({ topics: { type: 'array', items: { type: 'string' } } }, [])
    }, ['event', 'data'])
  },
  'sse.realtime.position': {
    name: ReservedEvent.Position,
    title: 'Position',
    summary: 'The broker\'s position when a subscription went live (the newest event it had delivered): the browser resumes from it on its next reconnect.',
    contentType: EVENT_STREAM,
    payload: object({ event: constant(ReservedEvent.Position), id: { type: 'string' }, data: object({}, []) }, ['event', 'id', 'data'])
  },
  'sse.realtime.error': {
    name: ReservedEvent.Error,
    title: 'Error',
    summary: 'The stream\'s source or handler failed; the stream ends after it.',
    contentType: EVENT_STREAM,
    payload: object({
      event: constant(ReservedEvent.Error),
      data: object({ code: { type: 'string' }, message: { type: 'string' } }, ['code', 'message'])
    }, ['event', 'data'])
  }
}

const SECURITY_SCHEMES = {
  bearer: {
    type: 'http',
    scheme: 'bearer',
    description: 'Authorization: Bearer <token> on the upgrade request (what bearerToken() reads first).'
  },
  bearerSubprotocol: {
    type: 'httpApiKey',
    in: 'header',
    name: 'Sec-WebSocket-Protocol',
    description: `A "${BEARER_PREFIX}<token>" entry offered next to "${SUBPROTOCOL}", for browsers; the server selects "${SUBPROTOCOL}" and never echoes the token.`
  }
}

/** A key of the document's maps: `^[A-Za-z0-9._-]+$`, unique within `taken`. */
function uniqueKey (raw: string, taken: Record<string, unknown>): string {
  const base = raw.replace(/[^A-Za-z0-9._-]+/g, '_')
  let key = base
  for (let n = 2; Object.hasOwn(taken, key); n++) key = `${base}-${n}`
  return key
}

/**
 * A Fastify URL pattern as a channel address (`/rooms/:room` -> `/rooms/{room}`) and its
 * parameters: `:name` and `:name(regex)` are parameters, `::` is a colon, `*` is the parameter `wildcard`.
 */
export function addressOf (url: string): { address: string, parameters: string[] } {
  let address = ''
  const parameters: string[] = []
  for (let i = 0; i < url.length; i++) {
    const char = url[i] as string
    if (char === '*') {
      parameters.push('wildcard')
      address += '{wildcard}'
    } else if (char !== ':') {
      address += char
    } else if (url[i + 1] === ':') {
      address += ':'
      i++
    } else {
      let end = i + 1
      while (end < url.length && !'/-.('.includes(url[end] as string)) end++
      const name = url.slice(i + 1, end)
      parameters.push(name)
      address += `{${name}}`
      if (url[end] === '(') end = endOfRegex(url, end)
      i = end - 1
    }
  }
  return { address, parameters }
}

/** The index after the `)` that closes the regex opened at `start`. */
function endOfRegex (url: string, start: number): number {
  let depth = 0
  for (let i = start; i < url.length; i++) {
    const char = url[i]
    if (char === '\\') i++
    else if (char === '(') depth++
    else if (char === ')' && --depth === 0) return i + 1
  }
  return url.length
}

/** The route's `schema.querystring` (or `headers`), an object schema, for a binding. */
function objectSchemaOf (schema: unknown, where: string): JsonSchema | undefined {
  return schema === null || typeof schema !== 'object' ? undefined : jsonSchemaOf(schema, where)
}

/** True when a schema of the contract rejects a missing value: the field is then required on the wire. */
function requiresValue (contract: AnyContract, kind: 'messages' | 'replies', name: string): boolean {
  return compiledOf(contract)[kind].get(name)?.check(undefined) !== undefined
}

/** Builds one route's channel, messages and operations into `body`. */
class ChannelBuilder {
  readonly id: string
  readonly channel: Record<string, any>
  private readonly body: DocumentBody
  private readonly security: Ref[] | undefined

  constructor (body: DocumentBody, id: string, route: RouteEntry, title: string, security: Ref[] | undefined) {
    this.body = body
    this.id = id
    this.security = security
    const { address, parameters } = addressOf(route.url)
    this.channel = { address, title, messages: {} }
    if (parameters.length > 0) {
      this.channel.parameters = Object.fromEntries(parameters.map((name) => [name, { description: `The path parameter "${name}" of ${route.url}.` }]))
    }
    body.channels[id] = this.channel
  }

  /** Adds a message to the channel (inline, or a reference to a shared one); returns its reference. */
  message (key: string, message: Message | Ref): Ref {
    const unique = uniqueKey(key, this.channel.messages)
    this.channel.messages[unique] = message
    return { $ref: `#/channels/${this.id}/messages/${unique}` }
  }

  /** A message kept in components (added there on first use), under its key without the transport. */
  shared (key: string, messages: Record<string, Message>): Ref {
    this.body.components.messages[key] ??= messages[key]
    return this.message(key.slice(key.indexOf('.') + 1), { $ref: `#/components/messages/${key}` })
  }

  operation (action: 'send' | 'receive', key: string, messages: Ref[], extra: Record<string, unknown> = {}): void {
    const id = uniqueKey(`${this.id}.${action}.${key}`, this.body.operations)
    this.body.operations[id] = {
      action,
      channel: { $ref: `#/channels/${this.id}` },
      messages,
      ...extra,
      ...(this.security === undefined ? {} : { security: this.security })
    }
  }

  /** A client message answered by a reply (or an error) carrying its id. */
  request (key: string, message: Ref, reply: Ref, error: Ref): void {
    this.operation('receive', key, [message], { reply: { channel: { $ref: `#/channels/${this.id}` }, messages: [reply, error] } })
  }
}

/** A channel's key, from its transport and URL: `ws-rooms-room` for app.ws('/rooms/:room'). */
function channelKey (transport: string, url: string, taken: Record<string, unknown>): string {
  return uniqueKey([transport, ...url.split(/[^A-Za-z0-9]+/).filter(Boolean)].join('-'), taken)
}

function topicKeys (topics: Readonly<Record<string, unknown>> | undefined): string[] {
  return topics === undefined ? [] : Object.keys(topics)
}

/** The schema of a topic name the route accepts: exact names, and prefixes for keys ending in `*`. */
function topicNameSchema (keys: string[]): JsonSchema {
  const choices = keys.map((key) => key.endsWith('*')
    ? { type: 'string', pattern: `^${key.slice(0, -1).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}` }
    : constant(key))
  return { description: `A topic this route accepts: ${keys.join(', ')} (a trailing * matches by prefix).`, anyOf: choices }
}

/** The contracts whose events reach a WebSocket route: its own, and those of its topics. */
function eventContracts (route: WsRouteEntry): AnyContract[] {
  const contracts = route.contract === undefined ? [] : [route.contract]
  for (const value of Object.values(route.topics ?? {})) {
    const contract = (value as { contract?: AnyContract } | null)?.contract
    if (contract !== undefined && !contracts.includes(contract)) contracts.push(contract)
  }
  return contracts
}

function describeWsRoute (body: DocumentBody, route: WsRouteEntry): void {
  const where = (what: string): string => `app.ws('${route.url}') ${what}`
  const security = route.authenticated
    ? [{ $ref: '#/components/securitySchemes/bearer' }, { $ref: '#/components/securitySchemes/bearerSubprotocol' }]
    : undefined
  if (security !== undefined) body.components.securitySchemes ??= SECURITY_SCHEMES
  const topics = topicKeys(route.topics)
  const channel = new ChannelBuilder(body, channelKey('ws', route.url, body.channels), route, `WebSocket ${route.url}`, security)
  channel.channel.description = `A WebSocket route (GET ${route.url}, upgrade): JSON text messages, one per frame, subprotocol "${SUBPROTOCOL}".` +
    (topics.length === 0 ? '' : ` Clients may subscribe to the topics ${topics.join(', ')}.`) +
    (route.authenticated ? ' The upgrade is authenticated.' : ' Public: no authentication.')
  const query = objectSchemaOf(route.querystring, where('schema.querystring'))
  const headers = objectSchemaOf(route.headers, where('schema.headers'))
  channel.channel.bindings = { ws: { method: 'GET', ...(query === undefined ? {} : { query }), ...(headers === undefined ? {} : { headers }), bindingVersion: WS_BINDING_VERSION } }
  channel.channel['x-fastify-realtime'] = { transport: 'ws', subprotocol: SUBPROTOCOL, maxPayload: route.maxPayload, topics }

  const contracts = eventContracts(route)
  const topicFields = { topic: { type: 'string', description: 'Set on events from a topic.' }, id: { type: 'string', description: 'The event id, a resume point (`after`).' } }
  for (const contract of contracts) {
    for (const [name, schema] of Object.entries(contract.events)) {
      const payload = object({ type: constant('event'), event: constant(name), ...topicFields, data: jsonSchemaOf(schema, where(`event "${name}"`)) }, ['type', 'event', 'data'])
      channel.operation('send', `event.${name}`, [channel.message(`event.${name}`, { name, title: name, summary: `The event "${name}".`, payload })])
    }
  }
  if (contracts.length === 0) {
    const payload = object({ type: constant('event'), event: { type: 'string' }, ...topicFields, data: ANY }, ['type', 'event', 'data'])
    channel.operation('send', 'event', [channel.message('event', { name: 'event', title: 'Event', summary: 'An event of the route (no contract: any name, any data).', payload })])
  }
  const error = channel.shared('ws.error', WS_SHARED)
  channel.operation('send', 'error', [error])
  channel.operation('send', 'reset', [channel.shared('ws.reset', WS_SHARED)])
  channel.operation('send', 'hello', [channel.shared('ws.hello', WS_SHARED)])

  const contract = route.contract
  for (const [name, schema] of Object.entries(contract?.messages ?? {})) {
    const c = contract as AnyContract
    const message = channel.message(`message.${name}`, {
      name,
      title: name,
      summary: `The message "${name}"; with an id, it is answered by a reply or an error carrying that id.`,
      correlationId: CORRELATION_ID,
      payload: object({ type: constant(name), id: MESSAGE_ID, data: jsonSchemaOf(schema, where(`message "${name}"`)) },
        requiresValue(c, 'messages', name) ? ['type', 'data'] : ['type'])
    })
    const replySchema = c.replies[name]
    const reply = channel.message(`reply.${name}`, {
      name: 'reply',
      title: `Reply to ${name}`,
      correlationId: CORRELATION_ID,
      payload: replySchema === undefined
        ? replyPayload(ANY, false)
        : replyPayload(jsonSchemaOf(replySchema, where(`reply "${name}"`)), requiresValue(c, 'replies', name))
    })
    channel.request(`message.${name}`, message, reply, error)
  }
  channel.request(ReservedMessage.Ping, channel.shared('ws.realtime.ping', WS_SHARED), channel.shared('ws.realtime.ping.reply', WS_SHARED), error)
  if (topics.length > 0) {
    const topic = topicNameSchema(topics)
    const subscribe = channel.message(ReservedMessage.Subscribe, {
      name: ReservedMessage.Subscribe,
      title: 'Subscribe',
      summary: 'Subscribes to a topic: the events after `after` are replayed (or a reset is sent), then the reply, then live events.',
      correlationId: CORRELATION_ID,
      payload: object({
        type: constant(ReservedMessage.Subscribe),
        id: MESSAGE_ID,
        data: object({ topic, after: { type: 'string', description: 'The last event id the client has of this topic.' } }, ['topic'])
      }, ['type', 'data'])
    })
    channel.request(ReservedMessage.Subscribe, subscribe, channel.shared('ws.realtime.subscribe.reply', WS_SHARED), error)
    const unsubscribe = channel.message(ReservedMessage.Unsubscribe, {
      name: ReservedMessage.Unsubscribe,
      title: 'Unsubscribe',
      correlationId: CORRELATION_ID,
      payload: object({ type: constant(ReservedMessage.Unsubscribe), id: MESSAGE_ID, data: object({ topic }, ['topic']) }, ['type', 'data'])
    })
    channel.request(ReservedMessage.Unsubscribe, unsubscribe, channel.shared('ws.realtime.unsubscribe.reply', WS_SHARED), error)
  }
}

function describeSseRoute (body: DocumentBody, route: SseRouteEntry): void {
  const where = (what: string): string => `the SSE route ${route.method} ${route.url} ${what}`
  const channel = new ChannelBuilder(body, channelKey('sse', route.url, body.channels), route, `SSE ${route.method} ${route.url}`, undefined)
  channel.channel.description = `A Server-Sent Events stream (${route.method} ${route.url}, ${EVENT_STREAM}). Each message is one event-stream block: ` +
    '`event:` its name, `id:` on topic events (a resume point: the browser sends it back as Last-Event-ID, or `?lastEventId=`), `data:` the JSON of its data.'
  channel.channel['x-fastify-realtime'] = { transport: 'sse', resumable: true }
  const query = objectSchemaOf(route.querystring, where('schema.querystring'))
  const bindings = { http: { method: route.method, ...(query === undefined ? {} : { query }), bindingVersion: HTTP_BINDING_VERSION } }
  const eventId = { type: 'string', description: 'The event id (topic events): the client resumes after it.' }
  const events = Object.entries(route.contract?.events ?? {})
  for (const [name, schema] of events) {
    const payload = object({ event: constant(name), id: eventId, data: jsonSchemaOf(schema, where(`event "${name}"`)) }, ['event', 'data'])
    const message = channel.message(`event.${name}`, { name, title: name, summary: `The event "${name}".`, contentType: EVENT_STREAM, payload })
    channel.operation('send', `event.${name}`, [message], { bindings })
  }
  if (route.contract === undefined) {
    const payload = object({ event: { type: 'string', default: 'message' }, id: eventId, data: { type: 'string', description: 'The data lines, joined by line feeds.' } }, ['data'])
    const message = channel.message('event', { name: 'event', title: 'Event', summary: 'An event of the stream (no contract: any name, any data).', contentType: EVENT_STREAM, payload })
    channel.operation('send', 'event', [message], { bindings })
  }
  for (const key of Object.keys(SSE_SHARED)) {
    channel.operation('send', key.slice('sse.'.length), [channel.shared(key, SSE_SHARED)], { bindings })
  }
}

/** The channels, operations and components of the routes; throws FRT_ERR_ASYNCAPI_SCHEMA for a schema that is not JSON. @internal */
export function describeRoutes (routes: readonly RouteEntry[]): DocumentBody {
  const body: DocumentBody = {
    channels: {},
    operations: {},
    components: {
      messages: {},
      correlationIds: {
        messageId: { description: 'The id a client gave its message, carried by the reply or error that answers it.', location: '$message.payload#/id' }
      }
    }
  }
  for (const route of routes) {
    if (route.transport === 'ws') describeWsRoute(body, route)
    else describeSseRoute(body, route)
  }
  return body
}

const DEFAULT_INFO: AsyncApiInfo = Object.freeze({ title: 'Realtime API', version: '1.0.0' })

/** The whole document: a fresh copy the caller may change. @internal */
export function assembleDocument (body: DocumentBody, options: AsyncApiOptions): AsyncApiDocument {
  return structuredClone({
    asyncapi: '3.0.0',
    info: options.info ?? DEFAULT_INFO,
    ...(options.servers === undefined ? {} : { servers: options.servers }),
    defaultContentType: 'application/json',
    ...body
  })
}
