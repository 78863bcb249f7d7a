// fastify-realtime/testing: helpers for the users' own test suites.
export { injectSSE } from './inject-sse.js'
export type { SseEvent, InjectSSEOptions, InjectedSSE } from './inject-sse.js'
export { connectWS } from './connect-ws.js'
export type { WsFrame, WsEvent, ConnectWSOptions, ConnectedWS } from './connect-ws.js'
export type { SubscribedData } from '../protocol/messages.js'
