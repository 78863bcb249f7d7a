// fastify-realtime/client: one small client for browsers and Node, for both transports, typed from
// the server's contract through `import type`. It imports nothing but the wire facts of ../protocol/.
export { createWsClient } from './ws-client.js'
export { createSseClient } from './sse-client.js'
export { RealtimeClientError, type ClientErrorCode } from './errors.js'
export type * from './types.js'
