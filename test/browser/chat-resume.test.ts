// The chat pages across a server restart and across going offline and online, in Chromium:
// createWsClient resubscribes to the room after the last id it saw, createSseClient resumes by
// Last-Event-ID, and each page shows every message once, in order. They import the built package
// (dist/), so `npm run build` must run first (npm test does).
import t from 'tap'
import { memoryBroker } from 'fastify-realtime'
import { attemptsFailedOffline, launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'
import { messagesOn, say, serveChat, signInAndEnter } from '../helpers/examples.js'

const browser = await launchBrowser(t)

if (browser !== undefined) {
  t.test('chat pages: the server restarts (a new app on the same port, the same broker, messages in the gap); the WebSocket and SSE pages show every message once, in order', async (t) => {
    // One broker for both lives of the server, as a shared log outlives any one instance. Sessions
    // are the default, in memory: the restarted server forgot ann's token, and her page signs in again.
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    const first = await serveChat(t, { broker })
    const port = Number(new URL(first.url).port)
    const ann = await openPage(t, browser)
    const view = await openPage(t, browser)
    await view.page.goto(`${first.url}/chat/view?room=lobby`)
    await waitForText(view.page, '#status', 'open')
    await signInAndEnter(ann.page, first.url, 'ann')
    await say(ann.page, 'before the restart')
    await first.say('lobby', 'bob', 'also before')
    for (const { page } of [ann, view]) await waitForText(page, '#messages', 'bob: also before')

    await first.app.close()
    for (const { page } of [ann, view]) await waitForText(page, '#status', 'reconnecting in ')
    // Said while no server listens: another instance on the shared log would do this.
    for (const text of ['gap 1', 'gap 2', 'gap 3']) {
      await broker.publish('room:lobby', 'message', JSON.stringify({ room: 'lobby', user: 'bob', text }))
    }

    const second = await serveChat(t, { broker, port })
    await waitForText(ann.page, '#status', 'connected as ann, in lobby')
    await waitForText(view.page, '#messages', 'bob: gap 3')
    await say(ann.page, 'after the restart')
    await second.say('lobby', 'bob', 'welcome back')
    for (const { page } of [ann, view]) await waitForText(page, '#messages', 'bob: welcome back')

    const conversation = ['ann: before the restart', 'bob: also before', 'bob: gap 1', 'bob: gap 2', 'bob: gap 3', 'ann: after the restart', 'bob: welcome back']
    t.same(await messagesOn(ann.page), conversation, 'the WebSocket page: every message once, in order')
    t.same(await messagesOn(view.page), conversation, 'the SSE view too')
    t.ok((await textsOf(ann.page, '#messages li.note')).includes('(reconnected: what was said meanwhile follows)'))
    t.ok(second.upgrades.some((upgrade) => upgrade.refusedWith === undefined), 'the page connected to the new server')
    t.equal(await ann.page.locator('#members').textContent(), 'ann', 'and said again that ann is in the room')
    t.equal(second.streams.at(-1) !== undefined, true, 'the view resumed with a Last-Event-ID')
    await screenshot(ann.page, 'chat-after-restart')
    for (const { errors } of [ann, view]) t.same(errors, [], 'no script error on the pages')
  })

  t.test('chat pages: the connections drop while the browser is offline; nothing reaches the server until it is online, then every message once', async (t) => {
    const server = await serveChat(t)
    const ann = await openPage(t, browser)
    const view = await openPage(t, browser)
    await view.page.goto(`${server.url}/chat/view?room=lobby`)
    await waitForText(view.page, '#status', 'open')
    await signInAndEnter(ann.page, server.url, 'ann')
    await say(ann.page, 'online')
    for (const { page } of [ann, view]) await waitForText(page, '#messages', 'ann: online')

    // Chromium's offline mode fails new connections only: open ones outlive it, so the server
    // drops them, as a network that went away would.
    const socketAttempts = attemptsFailedOffline(ann.page, '/chat/ws')
    const streamAttempts = attemptsFailedOffline(view.page, '/chat/rooms/lobby/events')
    for (const { page } of [ann, view]) await page.context().setOffline(true)
    const before = { upgrades: server.upgrades.length, streams: server.streams.length }
    server.cut()
    for (const text of ['while offline 1', 'while offline 2']) await server.say('lobby', 'bob', text)
    // Both pages try again, and the browser fails the attempts.
    await socketAttempts.reached(1)
    await streamAttempts.reached(1)
    t.same({ upgrades: server.upgrades.length, streams: server.streams.length }, before,
      `none of their attempts (${socketAttempts.count()} and ${streamAttempts.count()} so far) reached the server`)

    for (const { page } of [ann, view]) await page.context().setOffline(false)
    for (const { page } of [ann, view]) await waitForText(page, '#messages', 'bob: while offline 2')
    await waitForText(ann.page, '#status', 'connected as ann, in lobby')
    await say(ann.page, 'back')
    for (const { page } of [ann, view]) await waitForText(page, '#messages', 'ann: back')
    const conversation = ['ann: online', 'bob: while offline 1', 'bob: while offline 2', 'ann: back']
    t.same(await messagesOn(ann.page), conversation, 'the WebSocket page: every message once, in order')
    t.same(await messagesOn(view.page), conversation, 'the SSE view too')
    for (const { errors } of [ann, view]) t.same(errors, [], 'no script error on the pages')
  })
}
