import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Topic } from '../../lib/index.js'
import { createSseClient } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { FAST, serve, until } from '../helpers/client.js'

const feed = defineContract({ events: { tick: Type.Object({ n: Type.Number() }) } })
const escaped = recordEscapes(t)

type FeedTopic = Topic<typeof feed>

function topicsOf (app: any): { lobby: FeedTopic, quiet: FeedTopic } {
  return { lobby: app.realtime.topic('lobby', { contract: feed }), quiet: app.realtime.topic('quiet', { contract: feed }) }
}

async function streamRoute (app: any): Promise<void> {
  const { lobby, quiet } = topicsOf(app)
  app.get('/feed', (request: any, reply: any) => { reply.sse({ contract: feed }).subscribe([lobby, quiet]) })
}

t.test('a server restart mid-stream delivers every event once, in order, on both topics', async (t) => {
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  const server = await serve(t, streamRoute, { broker, ws: false })
  const client = createSseClient<typeof feed>(`${server.url}/feed`, { backoff: FAST })
  t.teardown(() => client.close())
  const got: Array<{ n: number, id: string | undefined }> = []
  client.on('tick', (data, { id }) => { got.push({ n: data.n, id }) })
  await until(() => client.state === 'open', 5000, 'open')

  const published: Array<{ n: number, id: string }> = []
  const publish = async (topic: FeedTopic, n: number): Promise<void> => { published.push({ n, id: await topic.publish('tick', { n }) }) }
  const first = topicsOf(server.app)
  for (let n = 1; n <= 3; n++) await publish(first.lobby, n)
  await until(() => got.length === 3, 5000, 'three live events')

  await server.stop()
  await server.restart(async (app) => {
    const gap = topicsOf(app)
    await publish(gap.lobby, 4)
    await publish(gap.quiet, 5)
    await publish(gap.lobby, 6)
  })
  await until(() => got.length === 6, 5000, 'the events of the gap')
  const live = topicsOf(server.app)
  await publish(live.quiet, 7)
  await publish(live.lobby, 8)
  await until(() => got.length === 8, 5000, 'live events after the restart')
  t.same(got, published, 'every event once, in order, with its id')
  t.equal(client.lastEventId, published[7].id)
  t.equal(server.seen.requests, 2)
})

t.test('a stream that received nothing before the drop still resumes: the position is its resume point', async (t) => {
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  await broker.publish('elsewhere', 'tick', '{"n":0}')
  const server = await serve(t, streamRoute, { broker, ws: false })
  const client = createSseClient<typeof feed>(`${server.url}/feed`, { backoff: FAST })
  t.teardown(() => client.close())
  const got: number[] = []
  client.on('tick', (data) => { got.push(data.n) })
  await until(() => client.lastEventId !== undefined, 5000, 'the position')
  await server.stop()
  await server.restart(async (app) => { await topicsOf(app).quiet.publish('tick', { n: 1 }) })
  await until(() => got.length === 1, 5000, 'the event of the gap')
  await topicsOf(server.app).quiet.publish('tick', { n: 2 })
  await until(() => got.length === 2, 5000, 'a live event')
  t.same(got, [1, 2])
})

t.test('lastEventId resumes a stored position; a reset names its topics and starts from the new position', async (t) => {
  const broker = memoryBroker({ maxLen: 2 })
  t.teardown(() => broker.close())
  const server = await serve(t, streamRoute, { broker, ws: false })
  const { lobby } = topicsOf(server.app)
  const ids = [await lobby.publish('tick', { n: 1 }), await lobby.publish('tick', { n: 2 })]
  const resumed = createSseClient<typeof feed>(`${server.url}/feed`, { lastEventId: ids[0] })
  t.teardown(() => resumed.close())
  const got: number[] = []
  resumed.on('tick', (data) => { got.push(data.n) })
  await until(() => got.length === 1, 5000, 'the replay')
  t.same(got, [2])

  await lobby.publish('tick', { n: 3 })
  await lobby.publish('tick', { n: 4 })
  const stale = createSseClient<typeof feed>(`${server.url}/feed`, { lastEventId: ids[0] })
  t.teardown(() => stale.close())
  const resets: string[][] = []
  stale.onReset(({ topics }) => { resets.push(topics) })
  await until(() => resets.length === 1 && stale.lastEventId !== ids[0], 5000, 'the reset')
  t.same(resets, [['lobby', 'quiet']])
  t.not(stale.lastEventId, undefined, 'the position follows the reset')
})

t.test('events whose id is not after the last one are dropped; other ids and events without one pass', async (t) => {
  const server = await serve(t, (app) => {
    let connection = 0
    app.get('/replay', (request, reply) => {
      const stream = reply.sse()
      connection++
      if (connection === 1) {
        stream.send('tick', '{"n":1}', { id: '5-1' })
        stream.send('tick', '{"n":2}', { id: '5-2' })
        stream.close()
        return
      }
      // A source that replays too much: the client drops what it has had.
      stream.send('tick', '{"n":1}', { id: '5-1' })
      stream.send('tick', '{"n":2}', { id: '5-2' })
      stream.send('tick', '{"n":3}', { id: '5-3' })
      stream.send('tick', 'not json')
      stream.send('tick', '{"n":4}', { id: 'custom' })
      stream.send('tick', '{"n":5}', { id: '' })
      stream.send('tick', '{"n":6}', { id: '5-1' })
    })
  }, { ws: false })
  const client = createSseClient(`${server.url}/replay`, { backoff: FAST })
  t.teardown(() => client.close())
  const got: unknown[] = []
  client.on('tick', (data, { id }) => { got.push([data, id]) })
  await until(() => got.length === 7, 5000, 'both streams')
  t.same(got, [
    [{ n: 1 }, '5-1'], [{ n: 2 }, '5-2'], [{ n: 3 }, '5-3'], ['not json', undefined],
    [{ n: 4 }, 'custom'], [{ n: 5 }, ''], [{ n: 6 }, '5-1']
  ], 'an empty id clears the resume point, after which any id is new')
  t.equal(client.lastEventId, '5-1')
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
