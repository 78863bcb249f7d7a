// The ticks page in a real browser: createSseClient from fastify-realtime/client, loaded from the
// built package, against examples/counter.js's resumable topic, over loopback, in Chromium: every
// tick once, in order, across a server restart and across going offline and online. They import
// the built package (dist/), so `npm run build` must run first (npm test does).
import type { FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { memoryBroker, type Broker } from 'fastify-realtime'
import counter, { ticksContract } from '../../examples/counter.js'
import { attemptsFailedOffline, launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'
import { serveSse, type Seen } from '../helpers/examples.js'

const browser = await launchBrowser(t)

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
  return serveSse((app) => app.register(counter, { intervalMs: 60000 }), { port, broker })
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
}
