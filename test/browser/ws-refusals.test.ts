// Refused upgrades in a real browser, where a refusal looks like a dropped connection (1006 before
// open): createWsClient from fastify-realtime/client, loaded from the built package, keeps trying,
// as after a deploy, but spaced by its backoff, never a storm. The server counts the upgrades.
// They import the built package (dist/), so `npm run build` must run first (npm test does).
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import t from 'tap'
import browserClient, { CLIENT_URL } from '../../examples/browser-client.js'
import { memorySessions, type ChatSessions } from '../../examples/chat.js'
import { HTML, page as htmlPage } from '../../examples/page.js'
import { launchBrowser, openPage, waitForText } from '../helpers/browser.js'
import { serveChat, type Upgrade } from '../helpers/examples.js'

const browser = await launchBrowser(t)

// What the client does after a refused upgrade, which a browser shows as 1006 before open: backs
// off with full jitter from 500 ms, doubling. In WINDOW_MS from the first attempt that allows a
// handful of attempts (fewer than MAX_ATTEMPTS but for a vanishing chance); a loop without backoff
// makes one per round trip, hundreds.
const WINDOW_MS = 4000
const MAX_ATTEMPTS = 12

/** Resolves once `upgrades` holds at least one entry, then waits `ms` more: the window counted. */
async function firstThenWindow (upgrades: Upgrade[], ms: number): Promise<void> {
  while (upgrades.length === 0) await sleep(20)
  await sleep(ms)
}

if (browser !== undefined) {
  t.test('a WebSocket from a page of another origin is refused with 403 by the default origin policy, even with a valid token, and the client does not storm', async (t) => {
    const { url, upgrades, login } = await serveChat(t)
    const elsewhere = Fastify()
    t.teardown(() => elsewhere.close())
    const elsewhereHtml = htmlPage('Another site', '<p>A page on another origin than the chat, with the client.</p>')
    elsewhere.get('/', (request, reply) => reply.type(HTML).send(elsewhereHtml))
    await elsewhere.register(browserClient)
    const otherOrigin = await elsewhere.listen({ host: '127.0.0.1', port: 0 })
    const token = await login('mallory')

    const { page, errors } = await openPage(t, browser)
    await page.goto(`${otherOrigin}/`)
    await page.evaluate(async ([clientUrl, socketUrl, token]) => {
      const { createWsClient } = await import(clientUrl as string)
      const w = window as any
      w.states = []
      w.rt = createWsClient(socketUrl, { token: () => token })
      w.rt.onState((change: unknown) => w.states.push(change))
    }, [CLIENT_URL, `${url.replace('http:', 'ws:')}/chat/ws`, token])
    await firstThenWindow(upgrades, WINDOW_MS)
    const states = await page.evaluate(() => (window as any).states as Array<{ state: string, code?: number }>)
    await page.evaluate(() => (window as any).rt.close())

    t.ok(upgrades.length >= 2 && upgrades.length <= MAX_ATTEMPTS, `${upgrades.length} upgrades in ${WINDOW_MS} ms: it keeps trying, as after a deploy, but backs off`)
    t.same(upgrades[0], { origin: otherOrigin, protocols: `realtime.v1, bearer.${token}`, refusedWith: 403 }, 'the server answered 403 before any upgrade')
    t.ok(upgrades.every((upgrade) => upgrade.refusedWith === 403), 'every time')
    t.notOk(states.some((change) => change.state === 'open'), 'the page never gets an open socket')
    t.ok(states.every((change) => change.state === 'reconnecting' && change.code === 1006), 'a browser sees the refusal as 1006')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('a refused upgrade does not loop: the chat page backs off, signing in again before each attempt', async (t) => {
    // A store that issues tokens and then accepts none, as after a server forgot them all.
    const issued = memorySessions()
    const refusing: ChatSessions = { create: issued.create, verify: async () => null }
    let logins = 0
    const { url, upgrades } = await serveChat(t, { sessions: { ...refusing, create: async (name) => { logins++; return issued.create(name) } } })
    const { page, errors } = await openPage(t, browser)
    await page.goto(`${url}/chat`)
    await page.fill('#name', 'ann')
    await page.click('#sign-in')
    await firstThenWindow(upgrades, WINDOW_MS)
    const counted = { upgrades: upgrades.length, logins }
    await waitForText(page, '#status', 'reconnecting in ')
    await page.evaluate(() => (window as any).rt.close())

    t.ok(counted.upgrades >= 2 && counted.upgrades <= MAX_ATTEMPTS, `${counted.upgrades} upgrades in ${WINDOW_MS} ms: bounded by the backoff, not a storm`)
    t.ok(upgrades.every((upgrade) => upgrade.refusedWith === 401), 'each refused with 401')
    t.ok(counted.logins <= counted.upgrades + 1, `${counted.logins} sign-ins: at most one per attempt`)
    t.equal(new Set(upgrades.map((upgrade) => upgrade.protocols)).size, upgrades.length, 'each attempt with the fresh token of a new sign-in')
    t.same(errors, [], 'no script error on the page')
  })
}
