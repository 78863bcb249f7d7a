// The chat example in a real browser: createWsClient and createSseClient from
// fastify-realtime/client, loaded by the chat pages from the built package, against the chat
// server (examples/chat.js) over loopback, in Chromium. They import the built package (dist/), so
// `npm run build` must run first (npm test does).
import t from 'tap'
import { launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'
import { messagesOn, say, serveChat, signInAndEnter, type Upgrade } from '../helpers/examples.js'

const browser = await launchBrowser(t)

if (browser !== undefined) {
  t.test('from the chat page\'s own origin, the bearer.<token> subprotocol authenticates and the chat works', async (t) => {
    const { url, upgrades } = await serveChat(t)
    const { page, errors } = await openPage(t, browser)
    await signInAndEnter(page, url, 'ann')
    t.equal(upgrades.length, 1)
    const [upgrade] = upgrades as [Upgrade]
    t.equal(upgrade.origin, url, 'a same-origin upgrade')
    t.match(upgrade.protocols, /^realtime\.v1, bearer\.[0-9a-f]{32}$/, 'the token rode as a subprotocol')
    t.equal(upgrade.refusedWith, undefined, 'accepted')
    t.equal(await page.evaluate('rt.state'), 'open', 'the server selected realtime.v1 and said hello')
    t.equal(await page.locator('#members').textContent(), 'ann')
    await say(page, 'hello, anyone?')
    await waitForText(page, '#messages', 'ann: hello, anyone?')
    t.same(await textsOf(page, '#messages li'), ['ann: hello, anyone?'])
    t.same(errors, [], 'no script error on the page')
  })

  t.test('a topic the route does not allow is refused with FORBIDDEN, and the connection stays up', async (t) => {
    const { url } = await serveChat(t)
    const { page, errors } = await openPage(t, browser)
    await signInAndEnter(page, url, 'ann')
    const refused = await page.evaluate(async () => {
      const rt = (window as any).rt
      const outcomes = []
      for (const topic of ['secret', 'room:Not-A-Room', 'room:']) {
        outcomes.push(await rt.subscribe(topic).ready.then(() => 'subscribed', (error: { code: string }) => error.code))
      }
      return outcomes
    })
    t.same(refused, ['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN'], 'an undeclared topic and a refused one get the same answer')
    t.equal(await page.evaluate('rt.state'), 'open', 'the connection stays up')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('chat page: two browser contexts in one room see each other\'s messages; the SSE view of the room shows the same', async (t) => {
    const { url } = await serveChat(t)
    // Three contexts, so three separate sessions: nothing is shared but the server.
    const view = await openPage(t, browser)
    const ann = await openPage(t, browser)
    const bob = await openPage(t, browser)
    await view.page.goto(`${url}/chat/view?room=lobby`)
    await waitForText(view.page, '#status', 'open')
    t.equal(await view.page.locator('#url').textContent(), '/chat/rooms/lobby/events')

    await signInAndEnter(ann.page, url, 'ann')
    await signInAndEnter(bob.page, url, 'bob')
    await waitForText(ann.page, '#members', 'ann, bob')
    t.equal(await bob.page.locator('#members').textContent(), 'ann, bob')
    await waitForText(view.page, '#members', 'ann, bob')

    await say(ann.page, 'hi bob')
    await waitForText(bob.page, '#messages', 'ann: hi bob')
    await say(bob.page, 'hi ann, 👋 & <b>not bold</b>')
    await waitForText(ann.page, '#messages', 'bob: hi ann')
    await say(ann.page, 'bye')
    const conversation = ['ann: hi bob', 'bob: hi ann, 👋 & <b>not bold</b>', 'ann: bye']
    for (const { page } of [ann, bob, view]) await waitForText(page, '#messages', 'ann: bye')
    t.same(await textsOf(ann.page, '#messages li'), conversation, 'ann sees the whole conversation, in order')
    t.same(await textsOf(bob.page, '#messages li'), conversation, 'bob too')
    t.same(await textsOf(view.page, '#messages li'), conversation, 'the read-only SSE view shows the same messages')
    t.equal(await view.page.locator('#messages b').count(), 0, 'text stays text')

    await screenshot(ann.page, 'chat-ann')
    await screenshot(bob.page, 'chat-bob')
    await screenshot(view.page, 'chat-view')

    // A member leaving is a presence event for everyone in the room, the view included.
    await bob.page.close()
    for (const { page } of [ann, view]) await page.waitForFunction(() => document.querySelector('#members')?.textContent === 'ann')
    t.pass('bob left when his page closed')
    for (const { errors } of [ann, bob, view]) t.same(errors, [], 'no script error on the pages')
  })

  t.test('chat page: leaving a room and coming back replays what was said there meanwhile, once', async (t) => {
    const { url, say: sayAs } = await serveChat(t)
    const { page, errors } = await openPage(t, browser)
    await signInAndEnter(page, url, 'ann')
    await say(page, 'first')
    await waitForText(page, '#messages', 'ann: first')
    await page.fill('#room', 'help')
    await page.click('#join-room')
    await waitForText(page, '#status', 'in help')
    t.same(await messagesOn(page), [], 'help is empty')
    await sayAs('lobby', 'bob', 'said while ann was in help')
    await page.fill('#room', 'lobby')
    await page.click('#join-room')
    await waitForText(page, '#messages', 'bob: said while ann was in help')
    t.same(await messagesOn(page), ['ann: first', 'bob: said while ann was in help'])
    t.same(errors, [], 'no script error on the page')
  })
}
