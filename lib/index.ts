export { fastifySse } from './sse/plugin.js'
export type { FastifySseOptions, ReplySse } from './sse/plugin.js'
export type { SseStream, SseOptions, SseItem, SendOptions, SendFunction } from './sse/stream.js'
export { fastifyWs } from './ws/plugin.js'
export type { FastifyWsOptions, WsRouteOptions, WsHandlers, Authenticate, RateLimitOptions, UpgradeRateLimitOptions, AppWs } from './ws/plugin.js'
export type { Connection, ConnectionSend, ConnectionSubscribeOptions, RealtimeTypes, RealtimeUser } from './ws/connection.js'
export { bearerToken } from './ws/auth.js'
export type { OriginPolicy } from './ws/auth.js'
export type { WsErrorCode, MessageId } from './ws/protocol.js'
export { defineContract } from './contract.js'
export type {
  Contract,
  AnyContract,
  ContractDefinition,
  SchemaMap,
  EventName,
  EventData,
  MessageName,
  MessageData,
  ReplyData,
  ValidationDetail
} from './contract.js'
export { memoryBroker } from './hub/memory-broker.js'
export type { MemoryBrokerOptions } from './hub/memory-broker.js'
export type { Broker, BrokerEvent, BrokerListener } from './hub/broker.js'
export type { Realtime, Topic, AnyTopic, TopicOptions, PublishFunction } from './hub/hub.js'
export { publicError } from './public-error.js'
export type { PublicError } from './public-error.js'
export * from './errors.js'
