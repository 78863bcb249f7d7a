// Client-driven subscriptions: realtime.subscribe (replay or reset, then the reply, then live),
// realtime.unsubscribe, realtime.ping, the route's `topics` with authorize, and maxSubscriptions.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Connection, type FastifyWsOptions, type WsRouteOptions } from '../../lib/index.js'
import type { ConnectedWS, WsFrame } from '../../lib/testing/index.js'
import { captureLogs, recordEscapes, slowHistoryBroker } from '../helpers/index.js'
import { buildWs, deferred, openWS, sleep, until } from '../helpers/ws.js'
import { chat, frames } from '../helpers/ws-messages.js'

const escaped = recordEscapes(t)

const handlers = { say: () => ({ id: 'x' }), note: () => {} }
const feed = defineContract({ events: { tick: Type.Object({ n: Type.Integer() }) } })

/** An app with one route `/rt` of the chat contract, client topics `lobby` and `room:*` unless the route options say otherwise. */
async function serve (t: Test, route: Partial<WsRouteOptions<typeof chat>> = {}, plugin: FastifyWsOptions = {}) {
  const app = await buildWs(t, plugin)
  const conns: Array<Connection<typeof chat>> = []
  app.ws('/rt', {
    contract: chat,
    handlers,
    topics: { lobby: true, 'room:*': true },
    ...route,
    onOpen (conn) {
      conns.push(conn)
      return route.onOpen?.(conn)
    }
  })
  await app.ready()
  const publish = (topic: string, text: string): Promise<string> => app.realtime.topic(topic, { contract: chat }).publish('message', { text })
  return { app, conns, publish, hub: app.realtime as any, open: () => openWS(app, '/rt') }
}

/** Sends a message with an id as a raw frame, so that every frame it causes can be read in order. */
function sendRaw (ws: ConnectedWS, type: string, id: string | number | undefined, data?: unknown): void {
  ws.sendRaw(JSON.stringify({ type, id, data }))
}

const event = (topic: string, id: string, text: string): WsFrame => ({ type: 'event', topic, id, event: 'message', data: { text } })
const reply = (id: string | number, data: unknown): WsFrame => ({ type: 'reply', id, data })

t.test('subscribe with after: the replay, then the reply { topic, position, resumed: true }, then live', async (t) => {
  const { publish, open } = await serve(t)
  const ids = [await publish('room:42', 'a'), await publish('room:42', 'b'), await publish('room:42', 'c')]
  const newest = await publish('lobby', 'elsewhere')
  const ws = await open()
  sendRaw(ws, 'realtime.subscribe', 7, { topic: 'room:42', after: ids[0] })
  t.same(await frames(ws, 3), [
    event('room:42', ids[1] as string, 'b'),
    event('room:42', ids[2] as string, 'c'),
    reply(7, { topic: 'room:42', position: newest, resumed: true })
  ], 'the missed events, then the reply with the newest id of the log')
  const live = await publish('room:42', 'd')
  t.same(await ws.nextFrame(), event('room:42', live, 'd'), 'then live')
})

t.test('subscribe without after: no replay, the reply carries the position of the log and resumed: false', async (t) => {
  const { publish, open } = await serve(t)
  const ws = await open()
  t.same(await ws.subscribe('lobby'), { topic: 'lobby', position: '0-0', resumed: false }, 'the position of a log with no event yet')
  await publish('room:1', 'not mine')
  const live = await publish('lobby', 'hi')
  t.same(await ws.nextFrame(), event('lobby', live, 'hi'))
  t.same(await ws.subscribe('room:7'), { topic: 'room:7', position: live, resumed: false }, 'later: the newest id')
})

t.test('an after that cannot be resumed: the reset message, the reply with resumed: false, then live', async (t) => {
  const { publish, open } = await serve(t, {}, { broker: memoryBroker({ maxLen: 2 }) })
  const ids = [await publish('lobby', '1'), await publish('lobby', '2'), await publish('lobby', '3'), await publish('lobby', '4')]
  const ws = await open()
  for (const [n, after] of [ids[0] as string, '0-0', '1-0', '9999999999999-0'].entries()) {
    sendRaw(ws, 'realtime.subscribe', n, { topic: 'lobby', after })
    t.same(await frames(ws, 2), [{ type: 'reset', topic: 'lobby' }, reply(n, { topic: 'lobby', position: ids[3], resumed: false })], after)
    await ws.unsubscribe('lobby')
  }
  sendRaw(ws, 'realtime.subscribe', 'ok', { topic: 'lobby', after: ids[2] })
  t.same(await frames(ws, 2), [event('lobby', ids[3] as string, '4'), reply('ok', { topic: 'lobby', position: ids[3], resumed: true })], 'an id in the history resumes')
})

t.test('events published during the replay come once each, before the reply, whose position follows them', async (t) => {
  const broker = slowHistoryBroker()
  t.teardown(() => broker.close())
  const { publish, open } = await serve(t, {}, { broker })
  const [start, before] = [await publish('lobby', 'start'), await publish('lobby', 'before')]
  const ws = await open()
  sendRaw(ws, 'realtime.subscribe', 1, { topic: 'lobby', after: start })
  await broker.asked
  const during = [await publish('lobby', 'd1'), await publish('room:1', 'other topic'), await publish('lobby', 'd2')]
  broker.release()
  t.same(await frames(ws, 4), [
    event('lobby', before as string, 'before'),
    event('lobby', during[0] as string, 'd1'),
    event('lobby', during[2] as string, 'd2'),
    reply(1, { topic: 'lobby', position: during[2], resumed: true })
  ])
  const live = await publish('lobby', 'live')
  t.same(await ws.nextFrame(), event('lobby', live, 'live'), 'no duplicate, no gap')
})

t.test('subscribing twice is a no-op that answers with where the client stands', async (t) => {
  const { publish, open, hub } = await serve(t)
  const ws = await open()
  const first = await ws.subscribe('room:1')
  const id = await publish('room:1', 'once')
  t.same(await ws.nextFrame(), event('room:1', id, 'once'))
  t.same(await ws.subscribe('room:1', { after: first.position as string }), { topic: 'room:1', position: id, resumed: false }, 'no replay: the last event sent')
  t.equal(hub.subscriberCount('room:1'), 1, 'one subscription')
  const live = await publish('room:1', 'live')
  t.same(await ws.nextFrame(), event('room:1', live, 'live'), 'delivered once')
})

t.test('a topic the server subscribed the connection to answers the no-op reply; a client cannot unsubscribe it', async (t) => {
  const { app, publish } = await serve(t, {
    async onOpen (conn) { await conn.subscribe(app.realtime.topic('lobby', { contract: chat })) }
  })
  const ws = await openWS(app, '/rt')
  const id = await publish('lobby', 'pushed')
  t.same(await ws.nextFrame(), event('lobby', id, 'pushed'))
  t.same(await ws.subscribe('lobby'), { topic: 'lobby', position: id, resumed: false })
  await ws.unsubscribe('lobby')
  const after = await publish('lobby', 'still')
  t.same(await ws.nextFrame(), event('lobby', after, 'still'), 'the server\'s subscription stays')
})

t.test('unsubscribe stops the topic\'s events and replies {}; a topic not held replies {} too', async (t) => {
  const { publish, open } = await serve(t)
  const ws = await open()
  await ws.subscribe('room:1')
  await ws.subscribe('room:2')
  sendRaw(ws, 'realtime.unsubscribe', 'u', { topic: 'room:1' })
  t.same(await ws.nextFrame(), reply('u', {}))
  sendRaw(ws, 'realtime.unsubscribe', 'v', { topic: 'room:9' })
  t.same(await ws.nextFrame(), reply('v', {}), 'idempotent')
  await publish('room:1', 'gone')
  const kept = await publish('room:2', 'kept')
  t.same(await ws.nextFrame(), event('room:2', kept, 'kept'), 'only the topic still held')
})

t.test('realtime.ping replies {}; without an id it is answered by nothing', async (t) => {
  const { open } = await serve(t)
  const ws = await open()
  ws.send('realtime.ping')
  sendRaw(ws, 'realtime.ping', 9)
  t.same(await ws.nextFrame(), reply(9, {}))
  await ws.ping()
})

t.test('subscribe and unsubscribe without an id work, unanswered', async (t) => {
  const { publish, open, hub } = await serve(t)
  const ws = await open()
  ws.send('realtime.subscribe', { topic: 'room:1' })
  await ws.ping() // answers in arrival order: the subscription is live
  t.equal(hub.subscriberCount('room:1'), 1)
  const id = await publish('room:1', 'x')
  t.same(await ws.nextFrame(), event('room:1', id, 'x'))
  ws.send('realtime.unsubscribe', { topic: 'room:1' })
  await ws.ping()
  t.equal(hub.subscriberCount('room:1'), 0)
})

t.test('undeclared, refused, throwing, rejecting, and on a route without topics: the same FORBIDDEN', async (t) => {
  const logs = captureLogs()
  const calls: unknown[] = []
  const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
  app.ws('/rt', {
    contract: chat,
    handlers,
    topics: {
      open: true,
      'no:*': { authorize: (conn, topic, options) => { calls.push([typeof conn.id, topic, options]); return false } },
      'truthy:*': { authorize: () => 1 as unknown as boolean },
      'throws:*': { authorize: () => { throw new Error('authorize bug') } },
      'rejects:*': { authorize: async () => { throw new Error('authorize bug') } },
      'yes:*': { authorize: async () => true }
    }
  })
  app.ws('/none', { contract: chat, handlers })
  const ws = await openWS(app, '/rt')
  const errors = []
  for (const topic of ['undeclared', 'no:1', 'truthy:1', 'throws:1', 'rejects:1']) {
    sendRaw(ws, 'realtime.subscribe', topic, { topic, after: '1-0' })
    errors.push(await ws.nextFrame())
  }
  const none = await openWS(app, '/none')
  sendRaw(none, 'realtime.subscribe', 'x', { topic: 'open' })
  errors.push(await none.nextFrame())
  const forbidden = { code: 'FORBIDDEN', message: 'This topic cannot be subscribed to.' }
  t.same(errors.map((frame) => frame.error), Array(6).fill(forbidden), 'one answer, whatever the reason')
  t.same(errors.map((frame) => frame.id), ['undeclared', 'no:1', 'truthy:1', 'throws:1', 'rejects:1', 'x'])
  t.same(calls, [['string', 'no:1', { after: '1-0' }]], 'authorize gets the connection, the topic and after')
  t.equal(logs.lines.filter((line) => /authorize failed/.test(line.msg) && line.err?.message === 'authorize bug').length, 2, 'a failing authorize is logged')
  t.same(await ws.subscribe('yes:1'), { topic: 'yes:1', position: '0-0', resumed: false }, 'authorize may be async')
  t.same(await ws.subscribe('open'), { topic: 'open', position: '0-0', resumed: false })
})

t.test('an exact key wins over any prefix, a longer prefix over a shorter one; "*" matches every name', async (t) => {
  const { open } = await serve(t, {
    topics: {
      'room:*': { authorize: () => false },
      'room:open:*': true,
      'room:vip': true
    }
  })
  const ws = await open()
  t.match(await ws.subscribe('room:open:1'), { topic: 'room:open:1' }, 'the longer prefix')
  t.match(await ws.subscribe('room:vip'), { topic: 'room:vip' }, 'the exact key')
  await t.rejects(ws.subscribe('room:vip2'), { code: 'FORBIDDEN' }, 'the shorter prefix')
  await t.rejects(ws.subscribe('lobby'), { code: 'FORBIDDEN' }, 'no key')
  const any = await serve(t, { topics: { '*': true } })
  const anyWs = await any.open()
  t.match(await anyWs.subscribe('any.name:at-all_1'), { topic: 'any.name:at-all_1' })
})

t.test('VALIDATION for a bad topic name or after, or data that is no object: a bad message each', async (t) => {
  const { open, conns } = await serve(t)
  const ws = await open()
  const cases: Array<[unknown, string]> = [
    [undefined, ''], [null, ''], ['lobby', ''], [['lobby'], ''], [{}, '/topic'], [{ topic: '' }, '/topic'],
    [{ topic: 'realtime.x' }, '/topic'], [{ topic: 'a b' }, '/topic'], [{ topic: 'x'.repeat(65) }, '/topic'], [{ topic: 7 }, '/topic'],
    [{ topic: 'lobby', after: 'garbage' }, '/after'], [{ topic: 'lobby', after: 12 }, '/after'], [{ topic: 'lobby', after: '01-0' }, '/after']
  ]
  for (const [n, [data, path]] of cases.entries()) {
    sendRaw(ws, 'realtime.subscribe', n, data)
    const frame = await ws.nextFrame()
    t.match(frame, { type: 'error', id: n, error: { code: 'VALIDATION', message: 'The data of "realtime.subscribe" does not match its schema.', details: [{ path }] } }, JSON.stringify(data))
    await ws.ping() // a good message: the count of bad ones starts over
  }
  sendRaw(ws, 'realtime.unsubscribe', 'u', { topic: 'not a name' })
  t.match(await ws.nextFrame(), { type: 'error', id: 'u', error: { code: 'VALIDATION', details: [{ path: '/topic' }] } }, 'unsubscribe too')
  for (let i = 0; i < 9; i++) ws.send('realtime.subscribe', { topic: '' })
  t.equal((await ws.closed).code, 4400, 'bad messages: the 10th in a row closes the connection')
  t.equal(conns[0]?.signal.aborted, true)
})

t.test('TOO_MANY_SUBSCRIPTIONS past maxSubscriptions, counting the server\'s own; unsubscribing makes room', async (t) => {
  const { app, open } = await serve(t, {
    maxSubscriptions: 3,
    onOpen (conn) { return conn.subscribe(app.realtime.topic('pushed', { contract: chat })) }
  })
  const ws = await open()
  await ws.subscribe('room:1')
  await ws.subscribe('room:2')
  await t.rejects(ws.subscribe('room:3'), { code: 'TOO_MANY_SUBSCRIPTIONS', message: 'At most 3 subscriptions per connection.' })
  t.match(await ws.subscribe('room:2'), { topic: 'room:2' }, 'a topic held already is no extra subscription')
  await ws.unsubscribe('room:1')
  t.match(await ws.subscribe('room:3'), { topic: 'room:3' })
})

t.test('maxSubscriptions: 100 by default, the plugin\'s unless the route overrides it', async (t) => {
  const byDefault = await serve(t, { rateLimit: false })
  const ws = await byDefault.open()
  for (let i = 0; i < 100; i++) ws.send('realtime.subscribe', { topic: `room:${i}` })
  await t.rejects(ws.subscribe('room:100'), { code: 'TOO_MANY_SUBSCRIPTIONS' }, 'the 101st')
  const plugin = await serve(t, {}, { maxSubscriptions: 1 })
  const one = await plugin.open()
  await one.subscribe('room:1')
  await t.rejects(one.subscribe('room:2'), { code: 'TOO_MANY_SUBSCRIPTIONS' }, 'the plugin\'s')
  const route = await serve(t, { maxSubscriptions: 2 }, { maxSubscriptions: 1 })
  const two = await route.open()
  await two.subscribe('room:1')
  t.match(await two.subscribe('room:2'), { topic: 'room:2' }, 'the route\'s')
})

t.test('subscribe messages count toward the rate limit like any other', async (t) => {
  const { open } = await serve(t, { rateLimit: { messages: 2, intervalMs: 60000 } })
  const ws = await open()
  await ws.subscribe('room:1')
  await ws.ping()
  await t.rejects(ws.subscribe('room:2'), { code: 'RATE_LIMITED' })
})

t.test('answers keep arrival order: a subscribe waiting on authorize holds back the answers after it', async (t) => {
  const gate = deferred<boolean>()
  const { open } = await serve(t, { topics: { 'slow:*': { authorize: () => gate.promise } } })
  const ws = await open()
  sendRaw(ws, 'realtime.subscribe', 1, { topic: 'slow:1' })
  sendRaw(ws, 'say', 2, { text: 'hi' })
  sendRaw(ws, 'realtime.ping', 3)
  await sleep(20)
  gate.resolve(true)
  t.same((await frames(ws, 3)).map((frame) => frame.id), [1, 2, 3])
})

t.test('a connection that closes while authorize runs subscribes nothing', async (t) => {
  const gate = deferred<boolean>()
  const asked = deferred()
  const { open, conns, hub } = await serve(t, { topics: { 'slow:*': { authorize: () => { asked.resolve(); return gate.promise } } } })
  const ws = await open()
  ws.send('realtime.subscribe', { topic: 'slow:1' })
  await asked.promise
  await ws.close()
  await until(() => conns[0]?.signal.aborted === true, 2000, 'the server sees the close')
  gate.resolve(true)
  await sleep(10)
  t.equal(hub.subscriberCount('slow:1'), 0)
  t.notOk(hub.hasTopic('slow:1'), 'and the hub holds no topic for it')
})

t.test('a topic\'s contract: the route\'s by default, or the one its key gives; the app publishes with the same one', async (t) => {
  const logs = captureLogs()
  const app = await buildWs(t, {}, { logger: { stream: logs.stream } })
  app.ws('/rt', { contract: chat, handlers, topics: { 'feed:*': { contract: feed }, 'chat:*': true } })
  const ws = await openWS(app, '/rt')
  await ws.subscribe('feed:1')
  await ws.subscribe('chat:1')
  const tick = await app.realtime.topic('feed:1', { contract: feed }).publish('tick', { n: 1 })
  t.same(await ws.nextFrame(), { type: 'event', topic: 'feed:1', id: tick, event: 'tick', data: { n: 1 } })
  t.throws(() => app.realtime.topic('chat:1', { contract: feed }), { code: 'FRT_ERR_TOPIC_CONTRACT' }, 'the topic has the route\'s contract')
  // The app made a topic with another contract than the route declares: refused, and logged.
  app.realtime.topic('feed:2', { contract: chat })
  await t.rejects(ws.subscribe('feed:2'), { code: 'FORBIDDEN', message: 'This topic cannot be subscribed to.' })
  t.ok(logs.lines.some((line) => /exists with another contract/.test(line.msg) && line.err?.code === 'FRT_ERR_TOPIC_CONTRACT' && line.topic === 'feed:2'))
})

t.test('a client\'s topic is forgotten by the hub once no connection holds it; one the app asked for by name stays', async (t) => {
  const { app, open, hub } = await serve(t)
  const [ann, bob] = [await open(), await open()]
  await ann.subscribe('room:1')
  await bob.subscribe('room:1')
  app.realtime.topic('room:app', { contract: chat })
  await ann.subscribe('room:app')
  t.ok(hub.hasTopic('room:1'))
  await ann.unsubscribe('room:1')
  t.ok(hub.hasTopic('room:1'), 'still held by another connection')
  await bob.close()
  await until(() => !hub.hasTopic('room:1'), 2000, 'the topic forgotten')
  await ann.unsubscribe('room:app')
  t.ok(hub.hasTopic('room:app'), 'the app\'s own topic stays')
  await ann.subscribe('room:1')
  t.ok(hub.hasTopic('room:1'), 'a name can be subscribed to again')
})

t.test('an unknown realtime.* type is UNKNOWN_TYPE', async (t) => {
  const { open } = await serve(t)
  const ws = await open()
  await t.rejects(ws.request('realtime.refresh', {}), { code: 'UNKNOWN_TYPE' })
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
