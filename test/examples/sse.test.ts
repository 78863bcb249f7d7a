// The runnable examples, driven through the builders they export. They import the built package
// (dist/), so `npm run build` must run first (npm test does).
import Fastify from 'fastify'
import t from 'tap'
import { build as buildAiAnswer, answerTo } from '../../examples/ai-answer.js'
import { CLIENT_URL } from '../../examples/browser-client.js'
import { build as buildCors, corsPage } from '../../examples/cors.js'
import { build as buildCounter } from '../../examples/counter.js'
import { injectSSE } from '../../lib/testing/index.js'
import { nextPosition } from '../helpers/index.js'

const pageOrigin = 'http://127.0.0.1:3001'

t.test('counter: plain messages carry the count, ping events carry a JSON time', async (t) => {
  const app = await buildCounter({ intervalMs: 5, pingEvery: 2 })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/counter/events' })
  t.equal(sse.statusCode, 200)
  t.equal(sse.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.same(await sse.next(), { event: 'message', data: '1', id: undefined })
  t.same(await sse.next(), { event: 'message', data: '2', id: undefined })
  const ping = await sse.next()
  t.equal(ping.event, 'ping')
  const { time } = JSON.parse(ping.data)
  t.type(time, 'string')
  t.notOk(Number.isNaN(Date.parse(time)), 'time is a date')
  t.same(await sse.next(), { event: 'message', data: '3', id: undefined })
  await sse.close()
})

t.test('counter: each connection counts from 1', async (t) => {
  const app = await buildCounter({ intervalMs: 5 })
  t.teardown(() => app.close())
  const first = await injectSSE(app, { url: '/counter/events' })
  await first.next()
  await first.next()
  await first.close()
  const second = await injectSSE(app, { url: '/counter/events' })
  t.same(await second.next(), { event: 'message', data: '1', id: undefined })
  await second.close()
})

t.test('counter: app.close() ends an open stream', async (t) => {
  const app = await buildCounter({ intervalMs: 5 })
  const sse = await injectSSE(app, { url: '/counter/events' })
  await sse.next()
  await app.close()
  await sse.ended
  t.pass('the stream ended')
})

t.test('counter: /counter/stop answers 204, which stops EventSource reconnection', async (t) => {
  const app = await buildCounter()
  t.teardown(() => app.close())
  const response = await app.inject('/counter/stop')
  t.equal(response.statusCode, 204)
  t.equal(response.body, '')
})

t.test('counter: the pages are HTML that open the streams', async (t) => {
  const app = await buildCounter()
  t.teardown(() => app.close())
  for (const [url, opens] of [['/counter', "new EventSource('/counter/events')"], ['/ticks', "createSseClient('/ticks/events')"]]) {
    const response = await app.inject(url)
    t.equal(response.statusCode, 200, url)
    t.match(response.headers['content-type'], /^text\/html/, url)
    t.match(response.body, opens, url)
  }
})

t.test('ticks: the page imports the built client, which the example serves', async (t) => {
  const app = await buildCounter()
  t.teardown(() => app.close())
  const page = (await app.inject('/ticks')).body
  t.match(page, `<script type="module">\n  import { createSseClient } from '${CLIENT_URL}'`)
  t.notMatch(page, 'new EventSource', 'no hand-written reconnection')
  const client = await app.inject(CLIENT_URL)
  t.equal(client.statusCode, 200)
  t.match(client.body, 'export { createSseClient }')
})

t.test('ticks: a reconnect with Last-Event-ID resumes after that tick, with no gap', async (t) => {
  const app = await buildCounter({ intervalMs: 5 })
  t.teardown(() => app.close())
  const first = await injectSSE(app, { url: '/ticks/events' })
  t.equal(first.statusCode, 200)
  t.match(await nextPosition(first), /^\d+-\d+$/, 'the position comes first')
  const seen = [await first.next(), await first.next(), await first.next()]
  await first.close()
  t.equal(first.retry, 1000, 'the browser is told to come back after a second')
  for (const tick of seen) {
    t.equal(tick.event, 'tick')
    t.match(tick.id, /^\d+-\d+$/)
  }
  const ns = seen.map((tick) => JSON.parse(tick.data).n)
  t.same(ns, [ns[0], ns[0] + 1, ns[0] + 2], 'consecutive ticks')

  const resumed = await injectSSE(app, { url: '/ticks/events', lastEventId: seen[0].id })
  t.same(await resumed.next(), seen[1], 'the first tick after Last-Event-ID, replayed as it was')
  t.same(await resumed.next(), seen[2])
  let next = await resumed.next()
  if (next.event === 'realtime.position') next = await resumed.next() // the replay may end here, or hold more ticks
  t.equal(JSON.parse(next.data).n, ns[2] + 1, 'then the next one')
  await resumed.close()
})

t.test('ticks: an unknown Last-Event-ID gets realtime.reset, then live ticks', async (t) => {
  const app = await buildCounter({ intervalMs: 5 })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/ticks/events', lastEventId: '1-0' })
  t.same(await sse.next(), { event: 'realtime.reset', data: '{"topics":["ticks"]}', id: undefined })
  await nextPosition(sse)
  t.equal((await sse.next()).event, 'tick')
  await sse.close()
})

t.test('ticks: POST /ticks/drop ends every open ticks stream', async (t) => {
  const app = await buildCounter({ intervalMs: 5 })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/ticks/events' })
  await sse.next()
  const response = await app.inject({ method: 'POST', url: '/ticks/drop' })
  t.same(response.json(), { dropped: 1 })
  await sse.ended
  t.pass('the stream ended')
})

t.test('cors: an allowed origin is echoed with credentials', async (t) => {
  const app = await buildCors({ allowedOrigins: [pageOrigin] })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/cors/events', headers: { origin: pageOrigin } })
  t.equal(sse.statusCode, 200)
  t.equal(sse.headers['access-control-allow-origin'], pageOrigin)
  t.equal(sse.headers['access-control-allow-credentials'], 'true')
  t.equal(sse.headers.vary, 'Origin')
  t.equal(sse.headers['content-type'], 'text/event-stream; charset=utf-8', 'the SSE headers are set too')
  t.match(sse.headers['set-cookie'], /^visitor=[\w-]+; Path=\/cors; HttpOnly; SameSite=Lax/)
  const hello = await sse.next()
  t.equal(hello.event, 'hello')
  t.match(JSON.parse(hello.data), { returning: false, origin: pageOrigin })
  await sse.close()
})

t.test('cors: a foreign origin gets no access-control-allow-origin', async (t) => {
  const app = await buildCors({ allowedOrigins: [pageOrigin] })
  t.teardown(() => app.close())
  for (const origin of ['https://elsewhere.example', 'http://127.0.0.1:30011', 'null']) {
    const sse = await injectSSE(app, { url: '/cors/events', headers: { origin } })
    t.notOk('access-control-allow-origin' in sse.headers, origin)
    t.notOk('access-control-allow-credentials' in sse.headers, origin)
    t.equal(sse.headers.vary, 'Origin', origin)
    await sse.close()
  }
})

t.test('cors: a request without Origin (curl, a same-origin page) gets no CORS headers', async (t) => {
  const app = await buildCors({ allowedOrigins: [pageOrigin] })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/cors/events' })
  t.notOk('access-control-allow-origin' in sse.headers)
  t.match(JSON.parse((await sse.next()).data), { returning: false, origin: null })
  await sse.close()
})

t.test('cors: a request that carries the cookie is a returning visitor', async (t) => {
  const app = await buildCors({ allowedOrigins: [pageOrigin] })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/cors/events', headers: { origin: pageOrigin, cookie: 'theme=dark; visitor=ab12cd34' } })
  t.notOk('set-cookie' in sse.headers)
  t.same(JSON.parse((await sse.next()).data), { visitor: 'ab12cd34', returning: true, origin: pageOrigin })
  await sse.close()
})

t.test('cors: the page, served from its own origin, opens a credentialed EventSource on the stream origin', async (t) => {
  const pageServer = Fastify()
  t.teardown(() => pageServer.close())
  await pageServer.register(corsPage, { streamOrigin: 'http://127.0.0.1:3000' })
  const response = await pageServer.inject('/cors')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/html/)
  t.match(response.body, 'new EventSource("http://127.0.0.1:3000/cors/events", { withCredentials: true })')
})

t.test('ai: the answer streams token by token, then done', async (t) => {
  let stopped = false
  const app = await buildAiAnswer({ delayMs: 1, onStopped: () => { stopped = true } })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/ai/answer?q=why%20SSE%3F' })
  t.equal(sse.statusCode, 200)
  const events = []
  for await (const event of sse.events()) events.push(event)
  const expected = answerTo('why SSE?')
  t.same(events.pop(), { event: 'done', data: JSON.stringify({ tokens: expected.length }), id: undefined }, 'done comes last, then the stream ends')
  t.same(events.map((event) => event.event), expected.map(() => 'token'))
  t.same(events.map((event) => JSON.parse(event.data).text), expected)
  t.notOk(stopped, 'a complete answer is not reported as stopped')
})

t.test('ai: a reader that leaves stops the generator', async (t) => {
  let resolveStopped!: (tokens: number) => void
  const stopped = new Promise<number>((resolve) => { resolveStopped = resolve })
  const app = await buildAiAnswer({ delayMs: 5, onStopped: resolveStopped })
  t.teardown(() => app.close())
  const sse = await injectSSE(app, { url: '/ai/answer?q=hi' })
  await sse.next()
  await sse.next()
  await sse.close()
  const tokens = await stopped
  t.ok(tokens >= 2, `at least the tokens read (${tokens})`)
  t.ok(tokens < answerTo('hi').length, 'fewer than the whole answer')
})

t.test('ai: the question is bounded by the route schema', async (t) => {
  const app = await buildAiAnswer()
  t.teardown(() => app.close())
  const response = await app.inject(`/ai/answer?q=${'x'.repeat(501)}`)
  t.equal(response.statusCode, 400)
})

t.test('ai: the page opens the stream', async (t) => {
  const app = await buildAiAnswer()
  t.teardown(() => app.close())
  const response = await app.inject('/ai')
  t.equal(response.statusCode, 200)
  t.match(response.body, "new EventSource('/ai/answer?q='")
})
