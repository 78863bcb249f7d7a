// The secure echo example in a real browser: Chromium's own WebSocket over wss:// against the echo
// page and server (examples/echo-secure.js) with its self-signed, test-only certificate. A browser
// of its own, started with --ignore-certificate-errors (the person's "accept the certificate once"),
// so no other test runs with that flag. It imports the built package (dist/), so `npm run build`
// must run first (npm test does).
import t from 'tap'
import { build as buildEcho, WELCOME } from '../../examples/echo-secure.js'
import { launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'

const browser = await launchBrowser(t, ['--ignore-certificate-errors'])

if (browser !== undefined) {
  t.test('secure echo over wss://: welcome, "Server received: …", close', async (t) => {
    const logged: Array<Record<string, any>> = []
    let onDisconnect!: (line: Record<string, any>) => void
    const disconnected = new Promise<Record<string, any>>((resolve) => { onDisconnect = resolve })
    const stream = {
      write (text: string) {
        const line = JSON.parse(text)
        logged.push(line)
        if (line.msg === 'echo: client disconnected') onDisconnect(line)
      }
    }
    const app = await buildEcho({ https: true, logger: { level: 'info', stream } })
    t.teardown(() => app.close())
    const url = await app.listen({ host: '127.0.0.1', port: 0 })
    t.match(url, /^https:\/\/127\.0\.0\.1:\d+$/)

    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/`)
    await waitForText(page, '#status', 'open (subprotocol realtime.v1)')
    t.equal(await page.evaluate('socket.url'), `${url.replace('https:', 'wss:')}/echo`, 'over wss://')
    await waitForText(page, '#messages', 'welcome: ')
    t.same(await textsOf(page, '#messages li'), [`welcome: ${WELCOME}`], 'greeted first')

    for (const [i, text] of ['hello', 'ünïcødé ✓'].entries()) {
      await page.fill('#input', text)
      await page.click('#send')
      await waitForText(page, '#messages', `reply to #${i + 1}: `)
    }
    t.same(await textsOf(page, '#messages li'), [
      `welcome: ${WELCOME}`,
      'sent #1: hello',
      'reply to #1: Server received: hello',
      'sent #2: ünïcødé ✓',
      'reply to #2: Server received: ünïcødé ✓'
    ], 'each message answered with its id')
    await screenshot(page, 'echo-secure')

    await page.evaluate('socket.close(1000, "bye")')
    await waitForText(page, '#status', 'closed (1000')
    t.equal(await page.locator('#send').isDisabled(), true, 'the page cannot send on a closed socket')
    const gone = await disconnected
    const connected = logged.filter((line) => line.msg === 'echo: client connected')
    t.equal(connected.length, 1, 'one connection')
    t.match(gone, { connection: connected[0]?.connection, code: 1000 }, 'the server saw the browser\'s close code')
    t.same(errors, [], 'no script error on the page')
  })
}
