export { fastifySse } from './sse/plugin.js'
export type { FastifySseOptions, ReplySse } from './sse/plugin.js'
export type { SseStream, SseOptions, SseItem, SendOptions, SendFunction } from './sse/stream.js'
export { fastifyWs } from './ws/plugin.js'
export type {
  FastifyWsOptions,
  WsRouteOptions,
  WsHandlers,
  Authenticate,
  Authorize,
  TopicAccess,
  WsTopics,
  RateLimitOptions,
  UpgradeRateLimitOptions,
  AppWs
} from './ws/options.js'
export type { Connection, ConnectionSend, ConnectionSubscribeOptions, RealtimeTypes, RealtimeUser } from './ws/connection.js'
export { bearerToken } from './ws/auth.js'
export type { OriginPolicy, SseRouteOption, AsyncApiRouteOptions } from './options.js'
export { DiagnosticsChannel } from './diagnostics.js'
export type {
  Transport,
  ConnectionInfo,
  ConnectionOpenEvent,
  ConnectionCloseEvent,
  ConnectionRejectEvent,
  MessageInvalidEvent,
  TopicPublishEvent,
  SubscriptionResumeEvent,
  ConsumerSlowEvent,
  WsHandlerContext
} from './diagnostics.js'
export type { RealtimeStats } from './hub/stats.js'
export type { AsyncApiDocument, AsyncApiInfo, AsyncApiOptions, AsyncApiServer } from './asyncapi/document.js'
export type { WsErrorCode, MessageId, HelloData, SubscribeData, SubscribedData } from './protocol/messages.js'
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
export { memoryBroker } from './brokers/memory.js'
export type { MemoryBrokerOptions } from './brokers/memory.js'
export type { Broker, BrokerEvent, BrokerListener } from './brokers/broker.js'
export type { Realtime, Topic, AnyTopic, TopicOptions, PublishFunction } from './hub/hub.js'
export { publicError } from './public-error.js'
export type { PublicError } from './public-error.js'
export * from './errors.js'
