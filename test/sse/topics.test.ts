import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Broker, type BrokerEvent, type SseStream } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build, captureLogs, nextPosition, slowHistoryBroker } from '../helpers/index.js'

const chat = defineContract({
  events: { message: Type.Object({ text: Type.String() }) }
})

async function publishAll (topic: { publish: (event: 'message', data: { text: string }) => Promise<string> }, texts: string[]): Promise<string[]> {
  const ids: string[] = []
  for (const text of texts) ids.push(await topic.publish('message', { text }))
  return ids
}

t.test('a subscription delivers live events with their id, event and JSON data', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  app.get('/e', async (request, reply) => {
    await reply.sse().subscribe(lobby)
    return reply
  })
  const sse = await injectSSE(app, { url: '/e' })
  t.equal(await nextPosition(sse), '0-0', 'the position of a log with no event yet')
  const id = await lobby.publish('message', { text: 'hi' })
  t.match(id, /^\d+-\d+$/)
  t.same(await sse.next(), { event: 'message', data: '{"text":"hi"}', id })
  t.equal(sse.lastEventId, id)
  await sse.close()
})

t.test('a reconnect with Last-Event-ID replays exactly the missed events of the topic, then goes live', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  const other = app.realtime.topic('other', { contract: chat })
  app.get('/e', (request, reply) => { reply.sse().subscribe(lobby) })
  const [first, ...missed] = await publishAll(lobby, ['a', 'b', 'c'])
  const newest = await other.publish('message', { text: 'not mine' })
  const sse = await injectSSE(app, { url: '/e', lastEventId: first })
  t.same(await sse.next(), { event: 'message', data: '{"text":"b"}', id: missed[0] })
  t.same(await sse.next(), { event: 'message', data: '{"text":"c"}', id: missed[1] })
  t.equal(await nextPosition(sse), newest, 'then the newest id of the log, of any topic')
  const live = await lobby.publish('message', { text: 'd' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"d"}', id: live })
  await sse.close()
})

t.test('resuming from the newest id replays nothing', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  app.get('/e', (request, reply) => { reply.sse().subscribe(lobby) })
  const ids = await publishAll(lobby, ['a', 'b'])
  const sse = await injectSSE(app, { url: '/e', lastEventId: ids[1] })
  t.equal(await nextPosition(sse), ids[1])
  const live = await lobby.publish('message', { text: 'c' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"c"}', id: live })
  await sse.close()
})

t.test('an id that cannot be resumed sends one realtime.reset per subscribe() call, naming its topics, then a position', async (t) => {
  const app = await build(t, { broker: memoryBroker({ maxLen: 2 }) })
  const a = app.realtime.topic('a', { contract: chat })
  const b = app.realtime.topic('b', { contract: chat })
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    await stream.subscribe(a)
    await stream.subscribe(b)
  })
  const ids = await publishAll(a, ['1', '2', '3'])
  let newest = ids[2] as string
  for (const lastEventId of ['garbage', '99999999999999-0', ids[0] as string, '1'.repeat(300)]) {
    const sse = await injectSSE(app, { url: '/e', lastEventId })
    if (lastEventId.length > 256) {
      // Over 256 chars the id is ignored: a fresh subscription, no reset.
      t.equal(await nextPosition(sse), newest)
      t.equal(await nextPosition(sse), newest)
      const live = await b.publish('message', { text: 'live' })
      t.same(await sse.next(), { event: 'message', data: '{"text":"live"}', id: live })
    } else {
      t.same(await sse.next(), { event: 'realtime.reset', data: '{"topics":["a"]}', id: undefined }, `reset for ${lastEventId}`)
      t.equal(await nextPosition(sse), newest, 'then the position: the client resumes from there')
      t.same(await sse.next(), { event: 'realtime.reset', data: '{"topics":["b"]}', id: undefined }, 'one per subscribe() call')
      t.equal(await nextPosition(sse), newest)
      newest = await a.publish('message', { text: 'live' })
      t.same(await sse.next(), { event: 'message', data: '{"text":"live"}', id: newest })
    }
    await sse.close()
  }
})

t.test('an array of topics replays their events merged in id order', async (t) => {
  const app = await build(t)
  const a = app.realtime.topic('a', { contract: chat })
  const b = app.realtime.topic('b', { contract: chat })
  app.get('/e', (request, reply) => { reply.sse().subscribe([a, b, a]) })
  const start = await a.publish('message', { text: 'start' })
  const expected = [
    await b.publish('message', { text: 'b1' }),
    await a.publish('message', { text: 'a1' }),
    await b.publish('message', { text: 'b2' })
  ]
  const sse = await injectSSE(app, { url: '/e', lastEventId: start })
  const got = [await sse.next(), await sse.next(), await sse.next()]
  t.same(got.map((event) => event.id), expected)
  t.same(got.map((event) => JSON.parse(event.data).text), ['b1', 'a1', 'b2'])
  t.equal(await nextPosition(sse), expected[2])
  const live = await a.publish('message', { text: 'once' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"once"}', id: live }, 'a topic listed twice is delivered once')
  await sse.close()
})

t.test('events published during the replay arrive once each, in order: no gap, no duplicate', async (t) => {
  const broker = slowHistoryBroker()
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => { subscribed = reply.sse().subscribe(lobby) })
  const [start, ...before] = await publishAll(lobby, ['start', 'b1', 'b2'])
  const sse = await injectSSE(app, { url: '/e', lastEventId: start })
  await broker.asked
  const during = await publishAll(lobby, ['d1', 'd2'])
  broker.release()
  await subscribed
  const after = await publishAll(lobby, ['a1'])
  const got = []
  for (let i = 0; i < 6; i++) got.push((await sse.next()).id)
  t.same(got, [...before, ...during, during[1], ...after], 'the position after the events of the replay, never older')
  await sse.close()
  await broker.close()
})

t.test('a lagging live feed that repeats replayed events does not duplicate them', async (t) => {
  // A Redis tail reader can deliver, after the switch to live, an event the replay already wrote.
  const inner = memoryBroker()
  const listeners = new Set<(event: BrokerEvent) => void>()
  const broker: Broker = {
    publish: (topic, event, data) => inner.publish(topic, event, data),
    listen (listener) { listeners.add(listener); return () => listeners.delete(listener) },
    history: (after, topics) => inner.history(after, topics),
    close: () => inner.close()
  }
  const feed: BrokerEvent[] = []
  inner.listen((event) => feed.push(event))
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => { subscribed = reply.sse().subscribe(lobby) })
  const ids = await publishAll(lobby, ['start', 'r1', 'r2'])
  const sse = await injectSSE(app, { url: '/e', lastEventId: ids[0] })
  await subscribed
  // Now the late feed catches up: all three, then a new one.
  const fresh = await lobby.publish('message', { text: 'new' })
  for (const event of feed) for (const listener of listeners) listener(event)
  const got = [await sse.next(), await sse.next(), await sse.next()]
  t.same(got.map((event) => event.id), [ids[1], ids[2], fresh])
  await sse.close()
  await inner.close()
})

t.test('a history that cannot be read closes the stream (the client retries) and subscribe() resolves', async (t) => {
  const logs = captureLogs()
  const inner = memoryBroker()
  const broker: Broker = {
    publish: (topic, event, data) => inner.publish(topic, event, data),
    listen: (listener) => inner.listen(listener),
    history: () => Promise.reject(new Error('down')),
    close: () => inner.close()
  }
  const app = await build(t, { broker }, { logger: { stream: logs.stream } })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let stream!: SseStream
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    subscribed = stream.subscribe(lobby)
  })
  const sse = await injectSSE(app, { url: '/e', lastEventId: '1-0' })
  await t.resolves(subscribed)
  await sse.ended
  await stream.closed
  t.equal(app.realtime.broker, broker)
  t.ok(logs.lines.some((line) => /cannot read the history/.test(line.msg)))
  await inner.close()
})

t.test('a stream closed while its replay is pending subscribes nothing', async (t) => {
  const broker = slowHistoryBroker()
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let stream!: SseStream
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => {
    stream = reply.sse()
    subscribed = stream.subscribe(lobby)
  })
  const start = await lobby.publish('message', { text: 'start' })
  const sse = await injectSSE(app, { url: '/e', lastEventId: start })
  await broker.asked
  await sse.close()
  broker.release()
  await subscribed
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
  await broker.close()
})

t.test('subscribe() checks its argument synchronously', async (t) => {
  const app = await build(t)
  const codes: string[] = []
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    for (const bad of [undefined, 'lobby', [], [{ name: 'x' }]]) {
      try { stream.subscribe(bad as any) } catch (err) { codes.push((err as { code: string }).code) }
    }
    stream.close()
  })
  await (await injectSSE(app, { url: '/e' })).ended
  t.same(codes, Array(4).fill('FRT_ERR_INVALID_OPTION'))
})

t.test('the end of a stream removes its subscriptions', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  const streams: SseStream[] = []
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    await stream.subscribe(lobby)
  })
  const clients = await Promise.all([injectSSE(app, { url: '/e' }), injectSSE(app, { url: '/e' })])
  await lobby.publish('message', { text: 'x' })
  t.equal((app.realtime as any).subscriberCount('lobby'), 2)
  for (const client of clients) await client.close()
  await Promise.all(streams.map((stream) => stream.closed))
  t.equal((app.realtime as any).subscriberCount('lobby'), 0)
})

t.test('one published event is framed once, whatever the number of streams', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  app.get('/e', async (request, reply) => { await reply.sse().subscribe(lobby) })
  const clients = await Promise.all(Array.from({ length: 5 }, () => injectSSE(app, { url: '/e' })))
  // Every encoding of a text to bytes measures it first.
  const byteLength = Buffer.byteLength
  let framed = 0
  Buffer.byteLength = ((...args: Parameters<typeof byteLength>) => {
    if (typeof args[0] === 'string' && args[0].includes('"once"')) framed++
    return (byteLength as any)(...args)
  }) as typeof Buffer.byteLength
  t.teardown(() => { Buffer.byteLength = byteLength })
  await lobby.publish('message', { text: 'once' })
  Buffer.byteLength = byteLength
  for (const client of clients) {
    await nextPosition(client)
    t.equal(JSON.parse((await client.next()).data).text, 'once')
  }
  t.equal(framed, 1)
  for (const client of clients) await client.close()
})

t.test('a forged id that looks valid but was never issued is a reset, not a partial replay', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  app.get('/e', (request, reply) => { reply.sse().subscribe(lobby) })
  const ids = await publishAll(lobby, ['a', 'b'])
  const [ms, seq] = (ids[0] as string).split('-').map(Number) as [number, number]
  for (const forged of [`${ms}-${seq + 1000}`, `${ms - 1}-0`, `0${ids[0]}`, `${ms}-0${seq}`]) {
    const sse = await injectSSE(app, { url: '/e', lastEventId: forged })
    t.equal((await sse.next()).event, 'realtime.reset', forged)
    t.equal(await nextPosition(sse), ids[1])
    await sse.close()
  }
})
