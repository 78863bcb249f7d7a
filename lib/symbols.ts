// Every symbol the library keys its own state with, in one table, named 'fastify-realtime.<what>'.

/** The SSE stream opened on a reply (a reply decorator; null until `reply.sse()`). */
export const kReplyStream = Symbol('fastify-realtime.reply.stream')
/** The SSE stream that owns a raw request or response, for listeners shared by every stream. */
export const kStreamOwner = Symbol('fastify-realtime.stream.owner')
/** The connection that owns a ws socket, to which the socket hands its events (lib/ws/socket.ts). */
export const kConnection = Symbol('fastify-realtime.connection')
/** What `authenticate` resolved to for an upgrade request (a request decorator). */
export const kAuth = Symbol('fastify-realtime.ws.auth')
/** Marks the handlers of `app.ws()` routes, which bring their own origin hook. */
export const kRealtimeRoute = Symbol('fastify-realtime.ws.route')
/** Messages a `connectWS` socket received before the helper listened. */
export const kEarlyMessages = Symbol('fastify-realtime.testing.early-messages')
/** A close a `connectWS` socket saw before the helper listened. */
export const kEarlyClose = Symbol('fastify-realtime.testing.early-close')
/** A route's `sse` declaration, kept in its config (the route option `sse`). */
export const kSseRoute = Symbol('fastify-realtime.sse.route')
