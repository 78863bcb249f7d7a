import { expect, test } from 'tstyche'
import WebSocket from 'ws'
import {
  createSseClient,
  createWsClient,
  RealtimeClientError,
  type ClientErrorCode,
  type ClientState,
  type ClosedInfo,
  type EventMeta,
  type ResetInfo,
  type SseClient,
  type StateChange,
  type Subscription,
  type TokenReason,
  type WsClient
} from 'fastify-realtime/client'
import type { chat } from './fixtures/chat.js'

const rt = createWsClient<typeof chat>('ws://127.0.0.1/chat', { WebSocket, token: () => 'token' })
const feed = createSseClient<typeof chat>('/events', { token: async ({ reason }) => reason === 'rejected' ? null : 'token' })

test('the contract arrives through import type, and the clients take its type', () => {
  expect(rt).type.toBe<WsClient<typeof chat>>()
  expect(feed).type.toBe<SseClient<typeof chat>>()
  expect(rt.state).type.toBe<ClientState>()
  expect(rt.closed).type.toBe<Promise<ClosedInfo>>()
})

test('requests infer the message data and the reply data', () => {
  expect(rt.request('say', { text: 'hi' })).type.toBe<Promise<{ id: string }>>()
  expect(rt.request('leave', {}, { timeoutMs: 100, signal: AbortSignal.timeout(100) })).type.toBe<Promise<void>>()
  expect(rt.send('say', { text: 'hi' })).type.toBe<boolean>()
})

test('a wrong payload or message name does not compile', () => {
  expect(rt.request).type.not.toBeCallableWith('say', { text: 1 })
  expect(rt.request).type.not.toBeCallableWith('say', {})
  expect(rt.request).type.not.toBeCallableWith('shout', { text: 'hi' })
  expect(rt.send).type.not.toBeCallableWith('say', { txt: 'hi' })
  expect(rt.send).type.not.toBeCallableWith('message', { user: 'a', text: 'b' })
})

test('listeners get the event data and its meta; a wrong event name does not compile', () => {
  rt.on('message', (data, meta) => {
    expect(data).type.toBe<{ user: string, text: string }>()
    expect(meta).type.toBe<EventMeta>()
  })
  feed.on('typing', (data) => { expect(data).type.toBe<string>() })
  expect(rt.on).type.not.toBeCallableWith('mesage', () => {})
  expect(feed.on).type.not.toBeCallableWith('say', () => {})
  expect(rt.on).type.not.toBeCallableWith('typing', (data: number) => data)
})

test('subscriptions are typed by the same contract', () => {
  const lobby = rt.subscribe('lobby', { after: '1-0' })
  expect(lobby).type.toBe<Subscription<typeof chat>>()
  expect(lobby.ready).type.toBe<Promise<{ resumed: boolean }>>()
  expect(lobby.lastId).type.toBe<string | undefined>()
  lobby.on('message', (data, { id }) => {
    expect(data.text).type.toBe<string>()
    expect(id).type.toBe<string | undefined>()
  })
  lobby.onReset((info) => { expect(info).type.toBe<ResetInfo>() })
  expect(lobby.on).type.not.toBeCallableWith('nothing', () => {})
})

test('state, tokens and errors', () => {
  rt.onState((change) => { expect(change).type.toBe<StateChange>() })
  expect(createWsClient).type.toBeCallableWith('ws://x', { token: (context: { reason: TokenReason }) => context.reason })
  expect(createWsClient).type.not.toBeCallableWith('ws://x', { token: 'not a function' })
  expect(createSseClient).type.toBeCallableWith('/e', { backoff: false, inactivityMs: 1000, headers: { a: 'b' }, lastEventId: '1-0' })
  expect(new RealtimeClientError('TIMEOUT', 'late').code).type.toBe<ClientErrorCode | (string & {})>()
  expect(new RealtimeClientError('TIMEOUT', 'late')).type.toBeAssignableTo<Error>()
})

test('without a contract, names are strings and data is unknown', () => {
  const untyped = createWsClient('ws://x', { WebSocket })
  untyped.on('anything', (data) => { expect(data).type.toBe<unknown>() })
  expect(untyped.request('anything', 1)).type.toBe<Promise<unknown>>()
})
