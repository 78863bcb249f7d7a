import createError from '@fastify/error'

// Every error the library throws or rejects with. Each code is stable; each message says how to fix it.
// Keys equal codes (test/errors.test.ts checks it), as in fastify core's lib/errors.js.

/** An option passed to a plugin, a route or `reply.sse()` has the wrong type or range. */
export const FRT_ERR_INVALID_OPTION = createError<[string, string]>(
  'FRT_ERR_INVALID_OPTION',
  'Invalid option "%s": %s.',
  500,
  TypeError
)

/** An event, message or topic name breaks the naming rules, or uses the reserved `realtime.` prefix. */
export const FRT_ERR_INVALID_NAME = createError<[string, string, string]>(
  'FRT_ERR_INVALID_NAME',
  'Invalid %s name %s: %s.',
  500,
  TypeError
)

/** `send()` or `publish()` named an event that the contract does not declare. */
export const FRT_ERR_UNKNOWN_EVENT = createError<[string, string]>(
  'FRT_ERR_UNKNOWN_EVENT',
  'Unknown event "%s": the contract declares %s. Add the event to the contract or fix its name.',
  500,
  TypeError
)

/** Data failed its TypeBox schema. `details` holds `{ path, message }` of the first failure. */
export const FRT_ERR_VALIDATION = createError<[string, string, string]>(
  'FRT_ERR_VALIDATION',
  'Invalid data for "%s" at "%s": %s. Send data that matches the schema in the contract.',
  500,
  TypeError
)

/** Data could not be serialized to JSON (a BigInt, a cycle, or nesting too deep). */
export const FRT_ERR_SERIALIZE = createError<[string, string]>(
  'FRT_ERR_SERIALIZE',
  'Cannot serialize the data of "%s" as JSON: %s. Send plain JSON values.',
  500,
  TypeError
)

/** `topic(name, { contract })` was called again for the same name with another contract object. */
export const FRT_ERR_TOPIC_CONTRACT = createError<[string]>(
  'FRT_ERR_TOPIC_CONTRACT',
  'Topic "%s" already exists with another contract. Reuse the one contract object for a topic name everywhere.',
  500
)

/** The broker could not take the event (closed, disconnected or over its command timeout). */
export const FRT_ERR_BROKER_UNAVAILABLE = createError<[string]>(
  'FRT_ERR_BROKER_UNAVAILABLE',
  'The broker cannot take events: %s. Nothing was delivered; retry once the broker is back.',
  503
)

/** The SSE and WebSocket plugins of one Fastify instance were given two different brokers. */
export const FRT_ERR_BROKER_CONFLICT = createError(
  'FRT_ERR_BROKER_CONFLICT',
  'This Fastify instance already has a realtime hub with another broker. Pass the same broker object to both plugins, or only to the first one registered.',
  500
)

/** `reply.sse` already exists: `@fastify/sse` (or `fastifySse`) is registered in this scope. */
export const FRT_ERR_SSE_CONFLICT = createError<[string]>(
  'FRT_ERR_SSE_CONFLICT',
  'Cannot register fastifySse: reply.sse is already decorated%s. Register only one SSE plugin per Fastify instance.',
  500
)

/** An SSE `event` or `id` holds CR, LF or NUL, which would forge or break fields on the wire. */
export const FRT_ERR_SSE_INVALID_FIELD = createError<[string]>(
  'FRT_ERR_SSE_INVALID_FIELD',
  'The SSE %s must not contain CR, LF or NUL: these characters would end the field and forge another. Remove them.',
  500,
  TypeError
)

/** `reply.sse()` was called on a reply that has already been sent, hijacked or streamed. */
export const FRT_ERR_SSE_ALREADY_SENT = createError(
  'FRT_ERR_SSE_ALREADY_SENT',
  'reply.sse() was called on a reply that was already sent or streamed. Call it once per request, before anything else is sent.',
  500
)

/** A WebSocket upgrade without valid credentials: `authenticate` returned null/undefined, or an expired `expiresAt`. */
export const FRT_ERR_WS_UNAUTHORIZED = createError(
  'FRT_ERR_WS_UNAUTHORIZED',
  'Authentication required: send valid credentials (Authorization: Bearer, or a "bearer.<token>" subprotocol next to "realtime.v1").',
  401
)

/** A WebSocket upgrade from an `Origin` the route does not allow (cross-site WebSocket hijacking). */
export const FRT_ERR_WS_FORBIDDEN_ORIGIN = createError(
  'FRT_ERR_WS_FORBIDDEN_ORIGIN',
  'This origin may not open a WebSocket here. Add it to the "origins" option of fastifyWs or of the route.',
  403
)

/** An `app.ws()` route has no `authenticate` of its own and none at plugin level. */
export const FRT_ERR_WS_AUTH_REQUIRED = createError<[string]>(
  'FRT_ERR_WS_AUTH_REQUIRED',
  'The WebSocket route %s has no authenticate: pass authenticate to fastifyWs or to the route, or authenticate: false for a public route.',
  500
)

/** A message of the route's contract has no handler. */
export const FRT_ERR_WS_MISSING_HANDLER = createError<[string, string]>(
  'FRT_ERR_WS_MISSING_HANDLER',
  'The WebSocket route %s has no handler for the message "%s" of its contract. Add it to the route\'s handlers.',
  500
)

/** `@fastify/websocket` is already registered: fastifyWs registers it itself, with safe limits. */
export const FRT_ERR_WS_CONFLICT = createError(
  'FRT_ERR_WS_CONFLICT',
  'Cannot register fastifyWs: @fastify/websocket is already registered. fastifyWs registers it with safe limits (maxPayload, origin checks, 1001 on close); remove your registration, { websocket: true } routes keep working.',
  500
)

/** A test helper saw the stream or socket end (or time out) before the awaited event arrived. */
export const FRT_ERR_TESTING = createError<[string]>(
  'FRT_ERR_TESTING',
  '%s',
  500
)

/** `fastify.realtime.asyncapi()` was called before `app.ready()`: routes may still be added until then. */
export const FRT_ERR_ASYNCAPI_NOT_READY = createError(
  'FRT_ERR_ASYNCAPI_NOT_READY',
  'fastify.realtime.asyncapi() was called before the app was ready: routes can still be added until then. Call it after await app.ready().',
  500
)

/** A schema of a contract or route cannot be written into the AsyncAPI document. */
export const FRT_ERR_ASYNCAPI_SCHEMA = createError<[string, string, string]>(
  'FRT_ERR_ASYNCAPI_SCHEMA',
  'The schema of %s cannot go into the AsyncAPI document: at "%s" it has %s. Use JSON types (Type.String() for dates, Type.Object() inlined instead of references).',
  500,
  TypeError
)
