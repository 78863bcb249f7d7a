// Exactly once across a deploy: a new app on the same port, the same broker, events published in the gap.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Topic } from '../../lib/index.js'
import { createWsClient } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { FAST, NodeWebSocket, serve, until } from '../helpers/client.js'

const feed = defineContract({ events: { tick: Type.Object({ n: Type.Number() }) } })
type Feed = typeof feed
const escaped = recordEscapes(t)

function topic (app: any, name: string): Topic<Feed> {
  return app.realtime.topic(name, { contract: feed })
}

function route (app: any): void {
  app.ws('/feed', { contract: feed, topics: { lobby: true, quiet: true }, handlers: {} })
}

t.test('a server restart mid-stream delivers every event once and in order, also on a topic that had sent nothing', async (t) => {
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  const server = await serve(t, route, { broker })
  const rt = createWsClient<Feed>(`${server.url.replace('http', 'ws')}/feed`, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const lobby = rt.subscribe('lobby')
  const quiet = rt.subscribe('quiet')
  const got: Record<string, Array<[number, string | undefined]>> = { lobby: [], quiet: [] }
  lobby.on('tick', (data, { id }) => { got.lobby.push([data.n, id]) })
  quiet.on('tick', (data, { id }) => { got.quiet.push([data.n, id]) })
  t.same(await lobby.ready, { resumed: false })
  await quiet.ready
  t.not(quiet.lastId, undefined, 'the position is the resume point of a topic with no event yet')

  const published: Record<string, Array<[number, string]>> = { lobby: [], quiet: [] }
  const publish = async (app: any, name: 'lobby' | 'quiet', n: number): Promise<void> => {
    published[name].push([n, await topic(app, name).publish('tick', { n })])
  }
  for (let n = 1; n <= 3; n++) await publish(server.app, 'lobby', n)
  await until(() => got.lobby.length === 3, 5000, 'live events')

  await server.stop()
  await server.restart(async (app) => {
    await publish(app, 'lobby', 4)
    await publish(app, 'quiet', 5)
    await publish(app, 'lobby', 6)
  })
  await until(() => got.lobby.length === 5 && got.quiet.length === 1, 5000, 'the gap, replayed')
  await publish(server.app, 'quiet', 7)
  await publish(server.app, 'lobby', 8)
  await until(() => got.lobby.length === 6 && got.quiet.length === 2, 5000, 'live after the restart')
  t.same(got, published, 'every event once, in order, with its id')
  t.equal(lobby.lastId, published.lobby.at(-1)![1])
  t.equal(server.seen.upgrades, 2)
})

t.test('a subscription after an id that left the history: onReset, then live from the position', async (t) => {
  const broker = memoryBroker({ maxLen: 2 })
  t.teardown(() => broker.close())
  const server = await serve(t, route, { broker })
  const lobby = topic(server.app, 'lobby')
  const first = await lobby.publish('tick', { n: 1 })
  for (let n = 2; n <= 4; n++) await lobby.publish('tick', { n })
  const rt = createWsClient<Feed>(`${server.url.replace('http', 'ws')}/feed`, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  const sub = rt.subscribe('lobby', { after: first })
  const resets: unknown[] = []
  sub.onReset((info) => { resets.push(info) })
  t.same(await sub.ready, { resumed: false })
  t.same(resets, [{ topics: ['lobby'] }])
  const got: number[] = []
  sub.on('tick', (data) => { got.push(data.n) })
  await lobby.publish('tick', { n: 5 })
  await until(() => got.length === 1, 5000, 'live')
  t.same(got, [5])
})

t.test('a topic the route does not declare: ready rejects with FORBIDDEN', async (t) => {
  const server = await serve(t, route)
  const rt = createWsClient<Feed>(`${server.url.replace('http', 'ws')}/feed`, { WebSocket: NodeWebSocket, pingIntervalMs: 0 })
  t.teardown(() => rt.close())
  t.equal((await rt.subscribe('secret').ready.catch((err) => err)).code, 'FORBIDDEN')
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
