// The dashboard demo in Chromium: uPlot (served from node_modules) plots the server's own stats as
// they arrive over SSE, and after a dropped connection the page resumes with Last-Event-ID and the
// series has no gap. It imports the built package (dist/), so `npm run build` must run first.
import t from 'tap'
import { build } from '../../examples/dashboard.js'
import { launchBrowser, openPage, screenshot, waitForText } from '../helpers/browser.js'
import { listen } from '../helpers/index.js'

const browser = await launchBrowser(t)

if (browser !== undefined) {
  t.test('the plot moves, and resumes after a dropped connection without a gap', async (t) => {
    const app = await build({ intervalMs: 100 })
    t.teardown(() => app.close())
    const url = await listen(app)
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/dashboard`)
    await waitForText(page, '#status', 'open')
    await page.waitForFunction(() => (window as any).dashboard.data[0].length >= 3)
    const before = await page.evaluate(() => {
      const { plot, data } = (window as any).dashboard
      return { plotted: plot !== undefined, max: plot.scales.x.max as number, points: data[0].length as number, sse: data[1].at(-1) as number }
    })
    t.ok(before.plotted, 'uPlot drew the plot')
    t.equal(before.sse, 1, 'the page\'s own stream is an open SSE connection')
    await page.waitForFunction((max) => (window as any).dashboard.plot.scales.x.max > max, before.max)
    t.pass('the x axis moves on as samples arrive')
    t.equal(await page.locator('#plot canvas').count(), 1, 'drawn on a canvas')

    const dropped = await app.inject({ method: 'POST', url: '/dashboard/drop' })
    t.same(dropped.json(), { dropped: 1 })
    await waitForText(page, '#reconnects', '1')
    const seenAtReconnect = await page.evaluate(() => (window as any).dashboard.seen.length as number)
    await page.waitForFunction((count) => (window as any).dashboard.seen.length >= count + 5, seenAtReconnect)
    const seen = await page.evaluate(() => (window as any).dashboard.seen as number[])
    t.same(seen, seen.map((_, i) => (seen[0] as number) + i), `samples ${seen[0]} to ${seen.at(-1)}, none missing, none twice`)
    t.equal(await page.locator('#gaps').textContent(), '0')
    await screenshot(page, 'dashboard')
    t.same(errors, [], 'no script error on the page')
  })
}
