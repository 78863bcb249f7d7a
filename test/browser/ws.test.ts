// The chat example in a real browser: Chromium's own WebSocket and EventSource against the chat
// page and server (examples/chat.js), over loopback. They import the built package (dist/), so
// `npm run build` must run first (npm test does).
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { fastifySse, fastifyWs } from 'fastify-realtime'
import chat from '../../examples/chat.js'
import { HTML, page as htmlPage } from '../../examples/page.js'
import { launchBrowser, openPage, screenshot, textsOf, waitForText } from '../helpers/browser.js'

const browser = await launchBrowser(t)

/** An upgrade request to the chat socket, as the server saw it, and the status of a refusal. */
interface Upgrade { origin?: string, protocols?: string, refusedWith?: number }

/**
 * The chat composed as examples/demo.js composes it (fastifySse and fastifyWs at the root, the
 * default origin policy), recording the upgrade requests it gets. Closed when the test ends.
 */
async function serveChat (t: Test) {
  const app = Fastify()
  t.teardown(() => app.close())
  const upgrades: Upgrade[] = []
  const seen = new WeakMap<object, Upgrade>()
  app.addHook('onRequest', async (request) => {
    if (request.url !== '/chat/ws') return
    const upgrade = { origin: request.headers.origin, protocols: request.headers['sec-websocket-protocol'] }
    upgrades.push(upgrade)
    seen.set(request, upgrade)
  })
  // A refused upgrade is answered over HTTP; an accepted one never gets an HTTP response.
  app.addHook('onResponse', async (request, reply) => {
    const upgrade = seen.get(request)
    if (upgrade !== undefined) upgrade.refusedWith = reply.statusCode
  })
  await app.register(fastifySse)
  await app.register(fastifyWs)
  await app.register(chat)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  const login = async (name: string): Promise<string> => {
    const response = await fetch(`${url}/chat/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })
    return ((await response.json()) as { token: string }).token
  }
  return { url, upgrades, login }
}

/** Signs in on the chat page and joins `room`: the page's own forms, as a person would use them. */
async function signInAndJoin (chatPage: import('playwright-core').Page, url: string, name: string, room = 'lobby'): Promise<void> {
  await chatPage.goto(`${url}/chat`)
  await chatPage.fill('#name', name)
  await chatPage.click('#sign-in')
  await waitForText(chatPage, '#status', `connected as ${name}`)
  await chatPage.fill('#room', room)
  await chatPage.click('#join-room')
  await waitForText(chatPage, '#status', `connected as ${name}, in ${room}`)
}

async function say (chatPage: import('playwright-core').Page, text: string): Promise<void> {
  await chatPage.fill('#input', text)
  await chatPage.click('#send')
  // The page clears the input once the server replied to the say message.
  await chatPage.waitForFunction(() => (document.querySelector('#input') as HTMLInputElement).value === '')
}

if (browser !== undefined) {
  t.test('a WebSocket from a page of another origin is refused by the default origin policy, even with a valid token', async (t) => {
    const { url, upgrades, login } = await serveChat(t)
    const elsewhere = Fastify()
    t.teardown(() => elsewhere.close())
    const elsewhereHtml = htmlPage('Another site', '<p>A page on another origin than the chat.</p>')
    elsewhere.get('/', (request, reply) => reply.type(HTML).send(elsewhereHtml))
    const otherOrigin = await elsewhere.listen({ host: '127.0.0.1', port: 0 })
    const token = await login('mallory')

    const { page, errors } = await openPage(t, browser)
    await page.goto(`${otherOrigin}/`)
    const outcome = await page.evaluate(([socketUrl, token]) => new Promise<{ opened: boolean, code: number }>((resolve) => {
      const socket = new WebSocket(socketUrl as string, ['realtime.v1', `bearer.${token as string}`])
      let opened = false
      socket.onopen = () => { opened = true }
      socket.onclose = (event) => resolve({ opened, code: event.code })
    }), [`${url.replace('http:', 'ws:')}/chat/ws`, token])
    t.same(outcome, { opened: false, code: 1006 }, 'the page never gets an open socket')
    t.same(upgrades, [{ origin: otherOrigin, protocols: `realtime.v1, bearer.${token}`, refusedWith: 403 }], 'the server answered 403 before any upgrade')
    t.same(errors, [], 'no script error on the page')
  })

  t.test('from the chat page\'s own origin, the bearer.<token> subprotocol authenticates and the chat works', async (t) => {
    const { url, upgrades } = await serveChat(t)
    const { page, errors } = await openPage(t, browser)
    await signInAndJoin(page, url, 'ann')
    t.equal(upgrades.length, 1)
    const [upgrade] = upgrades as [Upgrade]
    t.equal(upgrade.origin, url, 'a same-origin upgrade')
    t.match(upgrade.protocols, /^realtime\.v1, bearer\.[0-9a-f]{32}$/, 'the token rode as a subprotocol')
    t.equal(upgrade.refusedWith, undefined, 'accepted')
    t.equal(await page.evaluate('socket.protocol'), 'realtime.v1', 'the server selected realtime.v1, never the token')
    t.equal(await page.locator('#members').textContent(), 'ann')
    await say(page, 'hello, anyone?')
    await waitForText(page, '#messages', 'ann: hello, anyone?')
    t.same(await textsOf(page, '#messages li'), ['ann: hello, anyone?'])
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

    await signInAndJoin(ann.page, url, 'ann')
    await signInAndJoin(bob.page, url, 'bob')
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
}
