import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { expect, test } from 'tstyche'
import {
  bearerToken,
  defineContract,
  fastifyWs,
  publicError,
  memoryBroker,
  type Authorize,
  type Broker,
  type FastifyWsOptions,
  type HelloData,
  type TopicAccess,
  type UpgradeRateLimitOptions,
  type Connection,
  type RealtimeUser,
  type WsTopics
} from 'fastify-realtime'
import { connectWS, type ConnectedWS, type SubscribedData, type WsEvent } from 'fastify-realtime/testing'

const chat = defineContract({
  events: { message: Type.Object({ user: Type.String(), text: Type.String() }) },
  messages: { say: Type.Object({ text: Type.String() }), leave: Type.Object({}) },
  replies: { say: Type.Object({ id: Type.String() }) }
})
const app = Fastify()
app.register(fastifyWs, {
  authenticate: async (request) => bearerToken(request) ?? null,
  origins: ['https://app.example.com'],
  rateLimit: { messages: 10, intervalMs: 1000 },
  upgradeRateLimit: { upgrades: 50, intervalMs: 1000 },
  heartbeat: false,
  maxPayload: 1024,
  perMessageDeflate: false
})

test('handlers receive the inferred payload and must return the reply type', () => {
  app.ws('/chat', {
    contract: chat,
    handlers: {
      say (data, conn) {
        expect(data).type.toBe<{ text: string }>()
        expect(conn).type.toBe<Connection<typeof chat>>()
        return { id: '1-0' }
      },
      async leave (data) {
        expect(data).type.toBe<{}>()
      }
    }
  })
  expect(app.ws).type.not.toBeCallableWith('/chat', {
    contract: chat,
    handlers: { say: () => ({ id: 1 }), leave: () => {} }
  })
  expect(app.ws).type.not.toBeCallableWith('/chat', {
    contract: chat,
    handlers: { say: () => ({ id: '1' }) }
  })
  expect(app.ws).type.not.toBeCallableWith('/chat', {
    contract: chat,
    handlers: { say: (data: { text: number }) => ({ id: '1' }), leave: () => {} }
  })
})

test('conn.send is typed by the contract\'s events', () => {
  app.ws('/events', {
    contract: chat,
    authenticate: false,
    handlers: { say: () => ({ id: '1' }), leave: () => {} },
    onOpen (conn) {
      expect(conn.send('message', { user: 'a', text: 'b' })).type.toBe<boolean>()
      expect(conn.send).type.not.toBeCallableWith('message', { user: 'a' })
      expect(conn.send).type.not.toBeCallableWith('other', {})
      expect(conn.subscribe(app.realtime.topic('lobby', { contract: chat }), { after: '1-0' })).type.toBe<Promise<void>>()
      expect(conn.signal).type.toBe<AbortSignal>()
      expect(conn.user).type.toBe<RealtimeUser>()
    },
    onClose (conn, code, reason) {
      expect(code).type.toBe<number>()
      expect(reason).type.toBe<string>()
    }
  })
})

test('route options keep Fastify\'s and check ours', () => {
  expect(app.ws('/q', { authenticate: false, config: { any: 1 }, schema: { querystring: Type.Object({ room: Type.String() }) } })).type.toBe<import('fastify').FastifyInstance>()
  expect(app.ws).type.not.toBeCallableWith('/q', { authenticate: 'yes' })
  expect(app.ws).type.not.toBeCallableWith('/q', { rateLimit: { messages: '10' } })
})

test('helpers', async () => {
  expect(bearerToken).type.toBe<(request: import('fastify').FastifyRequest) => string | undefined>()
  expect(publicError('ROOM_FULL', 'full').code).type.toBe<string>()
  const ws = await connectWS(app, '/chat', { protocols: ['realtime.v1', 'bearer.x'] })
  expect(ws).type.toBe<ConnectedWS>()
  expect(await ws.nextEvent('message')).type.toBe<WsEvent>()
  expect(await ws.closed).type.toBe<{ code: number, reason: string }>()
})

test('typed topics of any contract can be (un)subscribed anywhere', () => {
  const other = defineContract({ events: { tick: Type.Number() } })
  function leave (conn: Connection<typeof chat>, topic: ReturnType<typeof app.realtime.topic<typeof chat>>): void {
    conn.unsubscribe(topic)
  }
  expect(leave).type.toBe<(conn: Connection<typeof chat>, topic: import('fastify-realtime').Topic<typeof chat>) => void>()
  app.get('/mixed', (request, reply) => {
    const stream = reply.sse()
    expect(stream.subscribe([app.realtime.topic('a', { contract: chat }), app.realtime.topic('b', { contract: other }), app.realtime.topic('c')])).type.toBe<Promise<void>>()
  })
})

test('upgradeRateLimit takes { upgrades, intervalMs } or false', () => {
  expect<UpgradeRateLimitOptions>().type.toBe<{ upgrades: number, intervalMs: number }>()
  expect<FastifyWsOptions['upgradeRateLimit']>().type.toBe<UpgradeRateLimitOptions | false | undefined>()
})

test('topics: names or prefixes, each true or { contract?, authorize? } with a typed connection', () => {
  const feed = defineContract({ events: { tick: Type.Number() } })
  app.ws('/rooms', {
    contract: chat,
    handlers: { say: () => ({ id: '1' }), leave: () => {} },
    maxSubscriptions: 20,
    topics: {
      lobby: true,
      'feed:*': { contract: feed },
      'room:*': {
        authorize (conn, topic, { after }) {
          expect(conn).type.toBe<Connection<typeof chat>>()
          expect(topic).type.toBe<string>()
          expect(after).type.toBe<string | undefined>()
          return true
        }
      },
      'private:*': { authorize: async (conn) => conn.user !== undefined }
    }
  })
  expect(app.ws).type.not.toBeCallableWith('/t', { topics: { lobby: false } })
  expect(app.ws).type.not.toBeCallableWith('/t', { topics: { lobby: { authorize: () => 'yes' } } })
  expect(app.ws).type.not.toBeCallableWith('/t', { topics: { lobby: { contract: { events: 1 } } } })
  expect(app.ws).type.not.toBeCallableWith('/t', { topics: ['lobby'] })
  expect(app.ws).type.not.toBeCallableWith('/t', { maxSubscriptions: '20' })
  expect<FastifyWsOptions['maxSubscriptions']>().type.toBe<number | undefined>()
  expect<WsTopics<typeof chat>>().type.toBe<Record<string, true | TopicAccess<typeof chat>>>()
  expect<Authorize<typeof chat>>().type.toBe<(conn: Connection<typeof chat>, topic: string, options: { after: string | undefined }) => boolean | Promise<boolean>>()
})

test('connectWS drives client subscriptions', async () => {
  const ws = await connectWS(app, '/rooms')
  expect(await ws.subscribe('room:1', { after: '1-0' })).type.toBe<SubscribedData>()
  expect<SubscribedData>().type.toBe<{ topic: string, position?: string, resumed: boolean }>()
  expect(await ws.unsubscribe('room:1')).type.toBe<void>()
  expect(await ws.ping()).type.toBe<void>()
  expect(ws.subscribe).type.not.toBeCallableWith('room:1', { after: 1 })
})

test('the hello, and brokers with a position', () => {
  expect<HelloData>().type.toBe<{ connectionId: string, heartbeatMs: number, maxPayload: number, expiresAt: number | null }>()
  expect(memoryBroker().position()).type.toBe<Promise<string>>()
  expect<Broker['position']>().type.toBe<(() => Promise<string>) | undefined>()
})
