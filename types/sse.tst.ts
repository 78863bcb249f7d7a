import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expect, test } from 'tstyche'
import {
  defineContract,
  fastifySse,
  memoryBroker,
  publicError,
  type Broker,
  type EventData,
  type MessageData,
  type ReplyData,
  type SseStream,
  type Topic
} from 'fastify-realtime'
import { injectSSE, type SseEvent } from 'fastify-realtime/testing'

const chat = defineContract({
  events: { message: Type.Object({ user: Type.String(), text: Type.String() }), count: Type.Number() },
  messages: { say: Type.Object({ text: Type.String() }), ping: Type.Null() },
  replies: { say: Type.Object({ id: Type.String() }) }
})
const app = Fastify()
app.register(fastifySse, { heartbeat: 15000, retry: 1000, maxBufferedBytes: 1024, stallTimeout: 30000, broker: memoryBroker({ maxLen: 10 }) })

test('payload types are inferred from the contract', () => {
  expect<EventData<typeof chat, 'message'>>().type.toBe<{ user: string, text: string }>()
  expect<MessageData<typeof chat, 'say'>>().type.toBe<{ text: string }>()
  expect<ReplyData<typeof chat, 'say'>>().type.toBe<{ id: string }>()
  expect<ReplyData<typeof chat, 'ping'>>().type.toBe<void>()
})

test('send() accepts only the contract\'s events with their payloads', () => {
  app.get('/', (request, reply) => {
    const stream = reply.sse({ contract: chat })
    expect(stream).type.toBe<SseStream<typeof chat>>()
    expect(stream.send('message', { user: 'a', text: 'b' })).type.toBe<boolean>()
    expect(stream.send('count', 1, { id: '1', retry: 0 })).type.toBe<boolean>()
    expect(stream.send).type.not.toBeCallableWith('message', { user: 'a' })
    expect(stream.send).type.not.toBeCallableWith('message', { user: 'a', text: 1 })
    expect(stream.send).type.not.toBeCallableWith('unknown', {})
    expect(stream.send).type.not.toBeCallableWith('count', '1')
    expect(stream.signal).type.toBe<AbortSignal>()
    expect(stream.closed).type.toBe<Promise<void>>()
    expect(stream.lastEventId).type.toBe<string | undefined>()
    expect(stream.subscribe(app.realtime.topic('lobby', { contract: chat }))).type.toBe<Promise<void>>()
  })
})

test('without a contract, send() is untyped', () => {
  app.get('/', (request, reply) => {
    const stream = reply.sse()
    expect(stream.send('anything', { any: 'data' })).type.toBe<boolean>()
    expect(stream.send('text', 'plain')).type.toBe<boolean>()
  })
})

test('an iterable source must yield the contract\'s items', () => {
  async function * good () {
    yield { event: 'message' as const, data: { user: 'a', text: 'b' } }
    yield { event: 'count' as const, data: 2, id: '1' }
  }
  async function * bad () {
    yield { event: 'count' as const, data: 'two' }
  }
  app.get('/', (request, reply) => {
    expect(reply.sse(good(), { contract: chat })).type.toBe<typeof reply>()
    expect(reply.sse).type.not.toBeCallableWith(bad(), { contract: chat })
    expect(reply.sse([{ data: 'untyped' }, { event: 'x', data: 1 }])).type.toBe<typeof reply>()
  })
})

test('topics are typed by their contract', () => {
  const lobby = app.realtime.topic('lobby', { contract: chat })
  expect(lobby).type.toBe<Topic<typeof chat>>()
  expect(lobby.publish('message', { user: 'a', text: 'b' })).type.toBe<Promise<string>>()
  expect(lobby.publish).type.not.toBeCallableWith('message', { user: 'a' })
  expect(lobby.publish).type.not.toBeCallableWith('nope', {})
  const loose = app.realtime.topic('loose')
  expect(loose.publish('any', { x: 1 })).type.toBe<Promise<string>>()
  expect(app.realtime.broker).type.toBe<Broker>()
})

test('plugin options are checked', () => {
  expect(app.register).type.not.toBeCallableWith(fastifySse, { heartbeat: 'often' })
  expect(app.register).type.not.toBeCallableWith(fastifySse, { maxBufferedBytes: '1MB' })
  expect(app.register).type.not.toBeCallableWith(fastifySse, { stallTimeout: '30s' })
})

test('reply.sse() takes a stallTimeout of its own', () => {
  app.get('/stall', (request, reply) => {
    expect(reply.sse({ contract: chat, stallTimeout: 5000 })).type.toBe<SseStream<typeof chat>>()
    expect(reply.sse).type.not.toBeCallableWith({ stallTimeout: '5s' })
  })
})

test('helpers', async () => {
  expect(publicError('CODE', 'message').expose).type.toBe<true>()
  const sse = await injectSSE(app, { url: '/', lastEventId: '1-0' })
  expect(await sse.next()).type.toBe<SseEvent>()
  expect(sse.close()).type.toBe<Promise<void>>()
})
