// The SSE examples in a real browser: Chromium's own EventSource against the example pages and
// servers (examples/counter.js, examples/cors.js), over loopback. They import the built package
// (dist/), so `npm run build` must run first (npm test does).
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { fastifySse, memoryBroker, type Broker } from 'fastify-realtime'
import browserClient from '../../examples/browser-client.js'
import counter, { ticksContract } from '../../examples/counter.js'
import cors, { corsPage } from '../../examples/cors.js'
import type { Page } from 'playwright-core'
import { attemptsFailedOffline, launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'
import { freePort } from '../helpers/index.js'

const browser = await launchBrowser(t)

/** Every request's path and headers, in arrival order, recorded before any route runs. */
type Seen = Array<{ url: string, origin?: string, cookie?: string, lastEventId?: string }>

/**
 * An app composed as examples/demo.js composes it: fastifySse at the root, then the example.
 * `seen` records the requests it gets.
 */
async function serve (plugin: (app: FastifyInstance) => unknown, { port = 0, broker }: { port?: number, broker?: Broker } = {}) {
  const app = Fastify()
  const seen: Seen = []
  app.addHook('onRequest', async (request) => {
    const { origin, cookie } = request.headers
    const lastEventId = request.headers['last-event-id'] as string | undefined
    seen.push({ url: request.url, origin, cookie, lastEventId })
  })
  await app.register(fastifySse, broker === undefined ? {} : { broker })
  await app.register(browserClient)
  await plugin(app)
  const url = await app.listen({ host: '127.0.0.1', port })
  return { app, url, seen }
}

/** Chromium on the ticks page: "tick <n>, id <id>, <time>" items, oldest first. */
async function ticksShown (page: Page): Promise<Array<{ n: number, id: string, text: string }>> {
  const items = (await textsOf(page, '#ticks li')).reverse()
  return items.flatMap((text) => {
    const match = /^tick (\d+), id (\S+), /.exec(text)
    return match === null ? [] : [{ n: Number(match[1]), id: match[2] as string, text }]
  })
}

/** Compares two `<ms>-<seq>` event ids in log order. */
function compareIds (a: string, b: string): number {
  const [msA, seqA] = a.split('-').map(Number) as [number, number]
  const [msB, seqB] = b.split('-').map(Number) as [number, number]
  return msA - msB || seqA - seqB
}

/** The requests for the ticks stream, in arrival order. */
const eventRequests = (seen: Seen) => seen.filter((request) => request.url === '/ticks/events')

/**
 * The ticks example on its own server sharing `broker`, its own beat slowed to a minute so every
 * tick is one the test published.
 */
function startTicks ({ broker, port = 0 }: { broker: Broker, port?: number }) {
  return serve((app) => app.register(counter, { intervalMs: 60000 }), { port, broker })
}

/** Publishes ticks numbered from 1 on, through an app's topic or (no app: no server up) the broker itself; `ids` maps each n to its id. */
function ticksLog (broker: Broker) {
  const ids = new Map<number, string>()
  return {
    ids,
    async publish (app: FastifyInstance | undefined, count: number): Promise<void> {
      for (let i = 0; i < count; i++) {
        const n = ids.size + 1
        const tick = { n, time: new Date().toISOString() }
        ids.set(n, app === undefined
          ? await broker.publish('ticks', 'tick', JSON.stringify(tick))
          : await app.realtime.topic('ticks', { contract: ticksContract }).publish('tick', tick))
      }
    }
  }
}

/** The page showed every tick of `ids` once, in order, with its id, and saw no gap. */
async function assertEveryTickOnce (t: Test, page: Page, ids: Map<number, string>): Promise<void> {
  const shown = await ticksShown(page)
  t.same(shown.map((tick) => tick.n), [...ids.keys()], 'every tick once, in order: none lost, none repeated')
  t.same(shown.map((tick) => tick.id), [...ids.values()], 'each with the id it was published with')
  t.same(shown.map((tick) => tick.id).sort(compareIds), shown.map((tick) => tick.id), 'ids in log order')
  t.notOk(shown.some((tick) => tick.text.includes('gap!')), 'the page saw no gap')
}

if (browser !== undefined) {
  t.test('counter page: onmessage shows the count as it arrives, named ping events show their times', async (t) => {
    const { app, url } = await serve((app) => app.register(counter, { intervalMs: 50, pingEvery: 2 }))
    t.teardown(() => app.close())
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/counter`)
    await waitForText(page, '#status', 'open')
    await page.waitForFunction(() => Number(document.querySelector('#count')?.textContent) >= 3)
    const first = Number(await page.locator('#count').textContent())
    await page.waitForFunction((first) => Number(document.querySelector('#count')?.textContent) > first, first)
    t.pass(`the count moves on from ${first}`)
    await page.waitForFunction(() => document.querySelectorAll('#pings li').length >= 2)
    const pings = await textsOf(page, '#pings li')
    for (const time of pings) t.match(time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'a ping shows the ISO time from its JSON')
    t.ok(Date.parse(pings[0] as string) >= Date.parse(pings[1] as string), 'newest first')
    t.equal(await page.locator('#status').textContent(), 'open', 'one connection, never dropped')
    await screenshot(page, 'counter')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('counter page: /counter/stop answers 204, and that EventSource stops for good', async (t) => {
    const { app, url, seen } = await serve((app) => app.register(counter, { intervalMs: 50 }))
    t.teardown(() => app.close())
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/counter`)
    await waitForText(page, '#status', 'open')
    await page.click('#try-stop')
    await waitForText(page, '#stop-status', 'closed for good (readyState 2)')
    // The 204 is final: the browser asks once, and CLOSED is a state an EventSource never leaves.
    const stops = seen.filter((request) => request.url === '/counter/stop')
    t.equal(stops.length, 1, 'one request, no reconnection')
    t.equal(await page.locator('#status').textContent(), 'open', 'the counter stream is unaffected')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('ticks page: the server stops and restarts mid-stream; the client resumes by Last-Event-ID, every tick once, in order', async (t) => {
    // One broker for both lives of the server, as a shared log outlives any one instance: its
    // history is what the restarted server replays from.
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    const ticks = ticksLog(broker)

    const first = await startTicks({ broker })
    t.teardown(() => first.app.close())
    const port = Number(new URL(first.url).port)
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${first.url}/ticks`)
    await waitForText(page, '#status', 'open')
    await ticks.publish(first.app, 5)
    await waitForText(page, '#ticks', 'tick 5,')

    await first.app.close()
    await waitForText(page, '#status', 'reconnecting')
    // Published while no server listens: another instance on a shared log would do this.
    await ticks.publish(undefined, 5)

    const second = await startTicks({ broker, port })
    t.teardown(() => second.app.close())
    await waitForText(page, '#ticks', 'tick 10,')
    await ticks.publish(second.app, 5)
    await waitForText(page, '#ticks', 'tick 15,')
    await waitForText(page, '#status', 'open')

    t.same(eventRequests(first.seen).map((request) => request.lastEventId), [undefined], 'the first connection resumes nothing')
    t.same(eventRequests(second.seen).map((request) => request.lastEventId), [ticks.ids.get(5)],
      'the client reconnected by itself, once the server was back, with the id of the last tick it saw as Last-Event-ID')
    await assertEveryTickOnce(t, page, ticks.ids)
    t.ok((await textsOf(page, '#ticks li')).includes(`reconnected with Last-Event-ID: ${ticks.ids.get(5) as string}; any ticks missed meanwhile are replayed first`))
    await screenshot(page, 'ticks-after-restart')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('ticks page: dropped while offline, the client tries without reaching the server, and resumes once online, every tick once', async (t) => {
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    const ticks = ticksLog(broker)
    const { app, url, seen } = await startTicks({ broker })
    t.teardown(() => app.close())
    const { page, errors } = await openPage(t, browser)
    const attempts = attemptsFailedOffline(page, '/ticks/events')
    await page.goto(`${url}/ticks`)
    await waitForText(page, '#status', 'open')
    await ticks.publish(app, 3)
    await waitForText(page, '#ticks', 'tick 3,')

    // Chromium's offline mode fails new requests only: an open stream outlives it, so the server
    // ends it, as a network that went away would.
    await page.context().setOffline(true)
    const before = eventRequests(seen).length
    t.same((await app.inject({ method: 'POST', url: '/ticks/drop' })).json(), { dropped: 1 })
    await ticks.publish(app, 3)
    // The client tries again, and the browser fails the attempt.
    await attempts.reached(1)
    t.equal(eventRequests(seen).length, before, `none of its attempts (${attempts.count()} so far) reached the server`)
    await waitForText(page, '#status', 'reconnecting')

    await page.context().setOffline(false)
    await waitForText(page, '#ticks', 'tick 6,')
    await waitForText(page, '#status', 'open')
    await ticks.publish(app, 2)
    await waitForText(page, '#ticks', 'tick 8,')
    t.same(eventRequests(seen).slice(before).map((request) => request.lastEventId), [ticks.ids.get(3)],
      'back online: one request, resuming after the last tick shown')
    await assertEveryTickOnce(t, page, ticks.ids)
    t.same(errors, [], 'no script error on the page')
  })

  t.test('cors: a credentialed cross-origin EventSource works from the allowed origin and is refused from another', async (t) => {
    const allowedPort = await freePort()
    const allowedOrigin = `http://127.0.0.1:${allowedPort}`
    const streams = await serve((app) => app.register(cors, { allowedOrigins: [allowedOrigin] }))
    t.teardown(() => streams.app.close())
    const allowedPages = Fastify()
    t.teardown(() => allowedPages.close())
    await allowedPages.register(corsPage, { streamOrigin: streams.url })
    await allowedPages.listen({ host: '127.0.0.1', port: allowedPort })
    const otherPages = Fastify()
    t.teardown(() => otherPages.close())
    await otherPages.register(corsPage, { streamOrigin: streams.url })
    const otherOrigin = await otherPages.listen({ host: '127.0.0.1', port: 0 })
    const requestsFrom = (origin: string) => streams.seen.filter((request) => request.origin === origin)

    t.test('from the allowed origin the stream is read, and the cookie crosses origins', async (t) => {
      const { page, errors } = await openPage(t, browser)
      await page.goto(`${allowedOrigin}/cors`)
      await waitForText(page, '#status', 'open')
      await waitForText(page, '#hello', 'Hello, visitor ')
      const visitor = /visitor ([\w-]+):/.exec(await page.locator('#hello').textContent() ?? '')?.[1] as string
      t.match(visitor, /^[\w-]{8}$/, 'a new visitor got a cookie')
      await page.reload()
      await waitForText(page, '#hello', `Welcome back, visitor ${visitor}: your cookie came with the request.`)
      t.same(requestsFrom(allowedOrigin).map((request) => request.cookie), [undefined, `visitor=${visitor}`],
        'the second request carried the cookie set by the first')
      await screenshot(page, 'cors')
      t.same(errors, [], 'no script error on the page')
    })

    t.test('from another origin the browser refuses the stream: no access-control-allow-origin', async (t) => {
      const { page, errors, logged } = await openPage(t, browser)
      await page.goto(`${otherOrigin}/cors`)
      await waitForText(page, '#status', 'refused')
      t.equal(await page.locator('#hello').textContent(), '', 'the page read no event')
      t.equal(requestsFrom(otherOrigin).length, 1, 'the request reached the server once; refused, the EventSource does not retry')
      t.ok(logged.some((line) => /blocked by CORS policy.*Access-Control-Allow-Origin/.test(line)), 'Chromium says why')
      await screenshot(page, 'cors-refused')
      t.same(errors, [], 'no script error on the page')
    })
  })
}
