// `realtime.position`: after each subscribe() has replayed (or reset) and gone live, the stream sends
// the newest id of the log as its last event id, so a client that has had no event yet resumes.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Broker, type BrokerEvent } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build, deferred, nextPosition } from '../helpers/index.js'

const chat = defineContract({
  events: { message: Type.Object({ text: Type.String() }) }
})

/** A memory broker with parts replaced. */
function brokerWith (inner: Broker, parts: Partial<Broker>): Broker {
  return {
    publish: (topic, event, data) => inner.publish(topic, event, data),
    listen: (listener) => inner.listen(listener),
    history: (after, topics) => inner.history(after, topics),
    position: () => (inner.position as () => Promise<string>)(),
    close: () => inner.close(),
    ...parts
  }
}

t.test('a fresh subscription sends the newest id of the log before any live event', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  const other = app.realtime.topic('other', { contract: chat })
  app.get('/e', (request, reply) => { reply.sse().subscribe(lobby) })
  const newest = await other.publish('message', { text: 'elsewhere' })
  const sse = await injectSSE(app, { url: '/e' })
  t.equal(await nextPosition(sse), newest)
  t.equal(sse.lastEventId, newest, 'the client\'s last event id')
  const live = await lobby.publish('message', { text: 'live' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"live"}', id: live })
})

t.test('an event published in the same tick as subscribe() is sent, and the position follows it', async (t) => {
  const app = await build(t)
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let published!: Promise<string>
  app.get('/e', (request, reply) => {
    reply.sse().subscribe(lobby)
    published = lobby.publish('message', { text: 'at once' })
  })
  const sse = await injectSSE(app, { url: '/e' })
  const id = await published
  t.same(await sse.next(), { event: 'message', data: '{"text":"at once"}', id })
  t.equal(await nextPosition(sse), id, 'never older than an event the stream sent')
})

t.test('the position is never older than an event that another subscription of the stream wrote already', async (t) => {
  const inner = memoryBroker()
  const gate = deferred()
  const asked = deferred()
  const broker = brokerWith(inner, {
    async history (after, topics) {
      const events = await inner.history(after, topics)
      if (topics.has('b')) {
        asked.resolve()
        await gate.promise
      }
      return events
    }
  })
  t.teardown(() => inner.close())
  const app = await build(t, { broker })
  const a = app.realtime.topic('a', { contract: chat })
  const b = app.realtime.topic('b', { contract: chat })
  let subscribed!: Promise<void>
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    await stream.subscribe(a)
    subscribed = stream.subscribe(b)
  })
  const start = await a.publish('message', { text: 'start' })
  const sse = await injectSSE(app, { url: '/e', lastEventId: start })
  t.equal(await nextPosition(sse), start, 'a is live')
  await asked.promise // b has read its position, its history waits
  const live = await a.publish('message', { text: 'during b\'s replay' })
  t.same((await sse.next()).id, live, 'a delivers live meanwhile')
  gate.resolve()
  await subscribed
  t.equal(await nextPosition(sse), live, 'b\'s position is the event a wrote, not the older position b read')
})

t.test('a lagging feed that brings, after the switch to live, events up to the position: none is sent', async (t) => {
  const inner = memoryBroker()
  const listeners = new Set<(event: BrokerEvent) => void>()
  const feed: BrokerEvent[] = []
  inner.listen((event) => feed.push(event))
  const broker = brokerWith(inner, {
    listen (listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    }
  })
  t.teardown(() => inner.close())
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => { subscribed = reply.sse().subscribe(lobby) })
  const old = await lobby.publish('message', { text: 'older than the subscription' })
  const sse = await injectSSE(app, { url: '/e' })
  await subscribed
  t.equal(await nextPosition(sse), old)
  const fresh = await lobby.publish('message', { text: 'new' })
  for (const event of feed) for (const listener of listeners) listener(event)
  t.same(await sse.next(), { event: 'message', data: '{"text":"new"}', id: fresh }, 'the event at the position is not sent')
})

/** An app whose /e subscribes its stream to `lobby`, then sends `subscribed`: what comes before it is the subscribe's. */
async function subscribedMarkerApp (t: Test, broker: Broker) {
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    await stream.subscribe(lobby)
    stream.send('message', { text: 'subscribed' })
  })
  return { app, lobby }
}

t.test('a broker without position() sends no position: the stream resumes from event ids only', async (t) => {
  const inner = memoryBroker()
  const broker = brokerWith(inner, {})
  delete broker.position
  t.teardown(() => inner.close())
  const { app, lobby } = await subscribedMarkerApp(t, broker)
  const first = await lobby.publish('message', { text: 'first' })
  for (const lastEventId of [undefined, first, 'unknown']) {
    const sse = await injectSSE(app, { url: '/e', lastEventId })
    if (lastEventId === 'unknown') t.same(await sse.next(), { event: 'realtime.reset', data: '{"topics":["lobby"]}', id: undefined })
    t.same(await sse.next(), { event: 'message', data: '{"text":"subscribed"}', id: undefined }, `no position (${String(lastEventId)})`)
    await sse.close()
  }
})

t.test('a position that is not an event id is not sent', async (t) => {
  const inner = memoryBroker()
  const broker = brokerWith(inner, { position: async () => 'latest' })
  t.teardown(() => inner.close())
  const { app } = await subscribedMarkerApp(t, broker)
  const sse = await injectSSE(app, { url: '/e' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"subscribed"}', id: undefined })
})

t.test('a position that cannot be read: the stream goes live without one, and stays open', async (t) => {
  const inner = memoryBroker()
  const broker = brokerWith(inner, { position: () => Promise.reject(new Error('down')) })
  t.teardown(() => inner.close())
  const app = await build(t, { broker })
  const lobby = app.realtime.topic('lobby', { contract: chat })
  let subscribed!: Promise<void>
  app.get('/e', (request, reply) => { subscribed = reply.sse().subscribe(lobby) })
  const sse = await injectSSE(app, { url: '/e' })
  await t.resolves(subscribed)
  const live = await lobby.publish('message', { text: 'live' })
  t.same(await sse.next(), { event: 'message', data: '{"text":"live"}', id: live }, 'no position, then live')
})
