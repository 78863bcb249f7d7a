// examples/metrics.js, scraped: gauges from stats(), counters and histograms from the diagnostics
// channels, labelled by transport and route pattern, never by topic or connection id. It imports
// the built package (dist/), so `npm run build` must run first (npm test does).
import Fastify from 'fastify'
import t from 'tap'
import client from 'prom-client'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs } from 'fastify-realtime'
import { connectWS, injectSSE } from 'fastify-realtime/testing'
import metrics from '../../examples/metrics.js'

const room = defineContract({
  events: { message: Type.Object({ text: Type.String() }) },
  messages: { say: Type.Object({ text: Type.String() }), slow: Type.Null() }
})

/** The sample lines of a scrape that start with `name`, as `line -> value`. */
function samples (text: string, name: string): Record<string, number> {
  return Object.fromEntries(text.split('\n')
    .filter((line) => line.startsWith(name) && !line.startsWith('#'))
    .map((line) => {
      const at = line.lastIndexOf(' ')
      return [line.slice(0, at), Number(line.slice(at + 1))]
    }))
}

t.test('a scrape shows the connections, their lifetimes, bad messages, handlers and publishes', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => ({ name: 'ann' }) })
  await app.register(fastifySse, { heartbeat: 0 })
  const registry = new client.Registry()
  await app.register(metrics, { registry })
  const lobby = app.realtime.topic('lobby:42', { contract: room })
  app.ws('/rooms/:room', {
    contract: room,
    onOpen (conn) { return conn.subscribe(lobby) },
    handlers: { say: () => {}, slow: async () => { await new Promise((resolve) => setTimeout(resolve, 5)) } }
  })
  app.get('/feed', { sse: { contract: room } }, async (request, reply) => {
    await reply.sse().subscribe(lobby)
    return reply
  })
  await app.ready()

  const ws = await connectWS(app, '/rooms/7')
  const sse = await injectSSE(app, { url: '/feed' })
  await ws.request('say', { text: 'hi' })
  await ws.request('slow', null)
  await t.rejects(ws.request('say', { text: 1 }))
  await lobby.publish('message', { text: 'hi' })
  await ws.nextEvent('message')
  await sse.next()

  let text = (await app.inject('/metrics')).body
  t.match((await app.inject('/metrics')).headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.same(samples(text, 'realtime_connections{'), { 'realtime_connections{transport="sse"}': 1, 'realtime_connections{transport="ws"}': 1 })
  t.same(samples(text, 'realtime_subscriptions '), { realtime_subscriptions: 2 })
  t.same(samples(text, 'realtime_topics '), { realtime_topics: 1 })
  t.same(samples(text, 'realtime_connections_opened_total'), {
    'realtime_connections_opened_total{transport="ws",route="/rooms/:room"}': 1,
    'realtime_connections_opened_total{transport="sse",route="/feed"}': 1
  })
  t.same(samples(text, 'realtime_messages_invalid_total'), { 'realtime_messages_invalid_total{route="/rooms/:room",code="VALIDATION"}': 1 })
  t.same(samples(text, 'realtime_messages_received_total'), { realtime_messages_received_total: 3 })
  t.same(samples(text, 'realtime_topic_publishes_total'), { realtime_topic_publishes_total: 1 })
  t.same(samples(text, 'realtime_ws_handler_duration_seconds_count'), {
    'realtime_ws_handler_duration_seconds_count{route="/rooms/:room",type="say"}': 1,
    'realtime_ws_handler_duration_seconds_count{route="/rooms/:room",type="slow"}': 1
  })
  t.notOk(text.includes('lobby'), 'no topic in any label')
  t.notOk(/connection_?id/i.test(text), 'no connection id')

  await ws.close()
  await sse.close()
  await new Promise((resolve) => setTimeout(resolve, 20))
  text = (await app.inject('/metrics')).body
  t.same(samples(text, 'realtime_connections{'), { 'realtime_connections{transport="sse"}': 0, 'realtime_connections{transport="ws"}': 0 })
  t.same(samples(text, 'realtime_connections_closed_total'), {
    'realtime_connections_closed_total{transport="ws",route="/rooms/:room",code="1005"}': 1,
    'realtime_connections_closed_total{transport="sse",route="/feed",code="1006"}': 1
  })
  t.same(samples(text, 'realtime_connection_duration_seconds_count'), {
    'realtime_connection_duration_seconds_count{transport="ws",route="/rooms/:room"}': 1,
    'realtime_connection_duration_seconds_count{transport="sse",route="/feed"}': 1
  })
})

t.test('refusals and resets are counted by their labels', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyWs, { heartbeat: 0, authenticate: () => null })
  await app.register(fastifySse, { heartbeat: 0 })
  const registry = new client.Registry()
  await app.register(metrics, { registry, path: '/internal/metrics' })
  const topic = app.realtime.topic('t')
  app.ws('/private', {})
  app.get('/resume', { sse: true }, async (request, reply) => {
    await reply.sse().subscribe(topic)
    return reply
  })
  app.get('/throw', { sse: true }, async () => { throw new Error('no') })
  await app.ready()
  await t.rejects(connectWS(app, '/private'))
  t.equal((await app.inject('/throw')).statusCode, 500)
  const sse = await injectSSE(app, { url: '/resume', lastEventId: 'gone' })
  t.equal((await sse.next()).event, 'realtime.reset')
  await sse.close()
  const text = (await app.inject('/internal/metrics')).body
  t.same(samples(text, 'realtime_connections_rejected_total'), {
    'realtime_connections_rejected_total{transport="ws",route="/private",status="401"}': 1,
    'realtime_connections_rejected_total{transport="sse",route="/throw",status="500"}': 1
  })
  t.same(samples(text, 'realtime_subscription_resumes_total'), { 'realtime_subscription_resumes_total{transport="sse",route="/resume",outcome="reset"}': 1 })
})

t.test('app.close() unsubscribes from the channels: a second app counts only its own', async (t) => {
  const first = Fastify()
  await first.register(fastifySse)
  const firstRegistry = new client.Registry()
  await first.register(metrics, { registry: firstRegistry })
  await first.close()
  const second = Fastify()
  t.teardown(() => second.close())
  await second.register(fastifySse, { heartbeat: 0 })
  await second.register(metrics, { registry: new client.Registry() })
  second.get('/s', (request, reply) => { reply.sse().close() })
  await (await injectSSE(second, { url: '/s' })).ended
  t.same(samples(await firstRegistry.metrics(), 'realtime_connections_opened_total'), {}, 'the closed app saw nothing')
  t.same(samples((await second.inject('/metrics')).body, 'realtime_connections_opened_total'), { 'realtime_connections_opened_total{transport="sse",route="/s"}': 1 })
})
