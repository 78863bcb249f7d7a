// The fault catalogue's Redis cases under traffic, with the checks of fault-harness.ts: Redis
// paused (kill -STOP) and killed (SIGKILL, not restarted) while SSE and WebSocket clients are
// subscribed, a publish and a resume are in flight: app.close() and broker.close() each resolve
// within 2 s, what was in flight settles, and the broker leaves no socket or timer behind, even
// while Redis is still paused. Recovery after a pause or a restart is redis-faults.test.ts's part.
// Each case starts a redis-server of its own (it pauses and kills it), like redis-faults.test.ts.
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs } from '../../../lib/index.js'
import { redisBroker } from '../../../lib/brokers/redis/index.js'
import { RedisServer } from '../../helpers/redis.js'
import { CLOSE_WITHIN, excessAfter, fault, outcomeWithin, resourceCounts, sseGet, until, watchProcess, wsOpen, type Scope } from '../../helpers/faults.js'
import { sleep, within } from '../../helpers/ws.js'

const feed = defineContract({ events: { tick: Type.Object({ n: Type.Integer() }) } })

/**
 * An app on a redisBroker (passed in: the case closes it), no forceCloseConnections: GET /sse
 * subscribes to `lobby` (resuming after Last-Event-ID), WS /ws subscribes to it in onOpen.
 */
async function serve (scope: Scope, redisUrl: string) {
  const broker = redisBroker({ url: redisUrl, namespace: `faults-${randomUUID()}` })
  let brokerClosing: Promise<void> | undefined
  const closeBroker = (): Promise<void> => { brokerClosing ??= broker.close(); return brokerClosing }
  scope.defer(closeBroker)
  const app = Fastify({ forceCloseConnections: false, logger: false })
  scope.app(app)
  await app.register(fastifySse, { broker })
  await app.register(fastifyWs, { broker })
  const lobby = app.realtime.topic('lobby', { contract: feed })
  const subscribed: Promise<void>[] = []
  const closes: number[] = []
  app.get('/sse', (request, reply) => { subscribed.push(reply.sse({ contract: feed }).subscribe(lobby)) })
  app.ws('/ws', {
    contract: feed,
    authenticate: false,
    onOpen (conn) { subscribed.push(conn.subscribe(lobby)) },
    onClose (conn, code) { closes.push(code) }
  })
  const url = await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, broker, lobby, url, subscribed, closes, closeBroker }
}

/** A broker.close() that resolves within the bound of app.close(). */
async function closeBrokerWithin (t: Test, close: () => Promise<void>): Promise<void> {
  t.equal(await outcomeWithin(close(), CLOSE_WITHIN), 'resolved', `broker.close() resolves within ${CLOSE_WITHIN} ms`)
}

function suite (): void {
  watchProcess(t)

  fault(t, 'Redis paused (kill -STOP) under traffic: app.close() and broker.close() resolve within 2 s, what was in flight settles, nothing is left behind', async (t, scope) => {
    const redis = await RedisServer.start((cleanup) => scope.defer(cleanup))
    scope.defer(() => redis.resume()) // before the kill, so the server can exit
    const baseline = resourceCounts()
    const s = await serve(scope, redis.url)
    const sse = await sseGet(scope, `${s.url}/sse`)
    const ws = await wsOpen(scope, `${s.url}/ws`)
    await until(() => s.subscribed.length === 2, 3000, 'both subscriptions')
    await Promise.all(s.subscribed)
    const ids: string[] = []
    for (let n = 0; n < 3; n++) ids.push(await s.lobby.publish('tick', { n }))
    await sse.waitFor(3)
    await ws.waitFor((frame) => frame.data?.n === 2)

    redis.pause()
    const publish = s.lobby.publish('tick', { n: 3 }).then(() => 'resolved', (err: { code?: string }) => err.code)
    const resume = await sseGet(scope, `${s.url}/sse`, { 'last-event-id': ids[0] as string }) // its history read waits on Redis
    await until(() => s.subscribed.length === 3, 3000, 'the resume\'s subscribe()')
    await sleep(50)
    await scope.close(s.app)
    await closeBrokerWithin(t, s.closeBroker)
    t.equal(await within(publish, CLOSE_WITHIN, 'the publish in flight'), 'FRT_ERR_BROKER_UNAVAILABLE', 'the publish in flight rejects')
    await t.resolves(within(Promise.all(s.subscribed), CLOSE_WITHIN, 'every subscribe()'), 'every subscribe() settles, the resume\'s included')
    t.equal((await within(ws.closed, CLOSE_WITHIN, 'the WebSocket close')).code, 1001)
    t.same(s.closes, [1001])
    for (const client of [sse, resume]) {
      await within(client.ended, CLOSE_WITHIN, 'the SSE end')
      t.equal(client.complete, true, 'the SSE stream ended cleanly')
    }
    // broker.close() destroys its sockets instead of waiting for a paused Redis to answer their FIN.
    t.same(await excessAfter(baseline, 100), {}, 'the broker\'s sockets and timers are gone while Redis is still paused')
  })

  fault(t, 'Redis killed (SIGKILL), not restarted, under traffic: clients stay open, publishes reject, app.close() and broker.close() resolve within 2 s, nothing is left behind', async (t, scope) => {
    const redis = await RedisServer.start((cleanup) => scope.defer(cleanup))
    const s = await serve(scope, redis.url)
    const sse = await sseGet(scope, `${s.url}/sse`)
    const ws = await wsOpen(scope, `${s.url}/ws`)
    await until(() => s.subscribed.length === 2, 3000, 'both subscriptions')
    await Promise.all(s.subscribed)
    await s.lobby.publish('tick', { n: 0 })
    await sse.waitFor(1)
    await ws.waitFor((frame) => frame.data?.n === 0)

    await redis.stop('SIGKILL')
    await sleep(100) // the broker sees its connections close and starts reconnecting
    for (let n = 1; n <= 3; n++) {
      await t.rejects(within(s.lobby.publish('tick', { n }), CLOSE_WITHIN, 'a publish while Redis is down'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
    }
    const resume = await sseGet(scope, `${s.url}/sse`, { 'last-event-id': '1-0' })
    await within(resume.ended, 3000, 'the resume that cannot read the history')
    t.equal(resume.complete, true, 'a resume that cannot read the history ends cleanly, so the client retries')
    await sleep(600) // a few reconnect attempts and read retries
    t.equal(ws.socket.readyState, 1, 'the WebSocket stays open')
    t.equal(s.closes.length, 0)
    t.equal(sse.events.length, 1, 'the SSE stream stays open, with nothing new')
    await scope.close(s.app)
    await closeBrokerWithin(t, s.closeBroker)
    t.equal((await within(ws.closed, CLOSE_WITHIN, 'the WebSocket close')).code, 1001)
    await within(sse.ended, CLOSE_WITHIN, 'the SSE end')
    t.equal(sse.complete, true)
  })
}

if (spawnSync('redis-server', ['--version']).status !== 0) {
  if (process.env.CI) {
    t.fail('redis-server is not installed: in CI the Redis fault tests must run, never be skipped (.ci/run installs it)')
  } else {
    t.plan(0, 'redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
} else {
  suite()
}
