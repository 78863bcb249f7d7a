// A deploy behind a load balancer: the client reconnects to another instance on the same Redis log
// (another redisBroker, another app, the same port) and still gets every event once, in order.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, type Topic } from '../../lib/index.js'
import { redisBroker } from '../../lib/brokers/redis/index.js'
import { createSseClient, createWsClient } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { withRedisUrl } from '../helpers/redis.js'
import { FAST, NodeWebSocket, serve, until } from '../helpers/client.js'

const feed = defineContract({ events: { tick: Type.Object({ n: Type.Number() }) } })
type Feed = typeof feed

function topic (app: any): Topic<Feed> {
  return app.realtime.topic('lobby', { contract: feed })
}

function setup (app: any): void {
  app.ws('/ws', { contract: feed, topics: { lobby: true }, handlers: {} })
  app.get('/sse', (request: any, reply: any) => { reply.sse({ contract: feed }).subscribe(topic(app)) })
}

function suite (url: string): void {
  const escaped = recordEscapes(t)

  for (const transport of ['ws', 'sse'] as const) {
    t.test(`${transport}: a reconnect to another instance resumes exactly once`, async (t) => {
      const namespace = `test-${randomUUID()}`
      const server = await serve(t, setup, { broker: () => redisBroker({ url, namespace }) })
      const got: number[] = []
      let lastId: () => string | undefined
      if (transport === 'ws') {
        const rt = createWsClient<Feed>(`${server.url.replace('http', 'ws')}/ws`, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0 })
        t.teardown(() => rt.close())
        const lobby = rt.subscribe('lobby')
        lobby.on('tick', (data) => { got.push(data.n) })
        await lobby.ready
        lastId = () => lobby.lastId
      } else {
        const feedClient = createSseClient<Feed>(`${server.url}/sse`, { backoff: FAST })
        t.teardown(() => feedClient.close())
        feedClient.on('tick', (data) => { got.push(data.n) })
        await until(() => feedClient.state === 'open', 5000, 'open')
        lastId = () => feedClient.lastEventId
      }
      for (let n = 1; n <= 3; n++) await topic(server.app).publish('tick', { n })
      await until(() => got.length === 3, 5000, 'live events')
      await server.stop()
      await server.restart(async (app) => {
        for (let n = 4; n <= 6; n++) await topic(app).publish('tick', { n })
      })
      await until(() => got.length === 6, 10000, 'the gap')
      const last = await topic(server.app).publish('tick', { n: 7 })
      await until(() => got.length === 7, 5000, 'live on the new instance')
      t.same(got, [1, 2, 3, 4, 5, 6, 7])
      t.equal(lastId(), last)
    })
  }

  t.test('no uncaught error, no unhandled rejection', async (t) => {
    t.same(escaped.map(String), [])
  })
}

withRedisUrl(t, suite)
