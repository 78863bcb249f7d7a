// The SSE examples in a real browser: Chromium's own EventSource against the example pages and
// servers (examples/counter.js, examples/cors.js), over loopback. They import the built package
// (dist/), so `npm run build` must run first (npm test does).
import Fastify from 'fastify'
import t from 'tap'
import counter from '../../examples/counter.js'
import cors, { corsPage } from '../../examples/cors.js'
import { launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'
import { serveSse as serve } from '../helpers/examples.js'
import { freePort } from '../helpers/index.js'

const browser = await launchBrowser(t)

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
