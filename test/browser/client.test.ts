// fastify-realtime/client in Chromium: the built ESM (dist/esm/client and dist/esm/protocol, served
// as they are), Chromium's own WebSocket and fetch. `npm run build` must run first (npm test does).
import { readFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, memoryBroker, type Topic } from '../../lib/index.js'
import { launchBrowser, openPage } from '../helpers/browser.js'
import { serve, type Served } from '../helpers/client.js'

const browser = await launchBrowser(t)
const feed = defineContract({ events: { tick: Type.Object({ n: Type.Number() }) } })
const DIST = new URL('../../dist/esm/', import.meta.url)

function lobby (app: any): Topic<typeof feed> {
  return app.realtime.topic('lobby', { contract: feed })
}

/** The page: the client, and what it received, in `window.got`. */
const PAGE = `<!doctype html><meta charset="utf-8"><title>client</title><script type="module">
import { createWsClient, createSseClient } from '/dist/client/index.js'
const params = new URLSearchParams(location.search)
window.got = []
window.states = []
window.reasons = []
const token = ({ reason }) => { window.reasons.push(reason); return params.get('token') }
const backoff = params.has('slow') ? { initialMs: 60000, maxMs: 60000 } : { initialMs: 20, maxMs: 200 }
if (params.get('transport') === 'sse') {
  const client = createSseClient('/events', { backoff })
  client.on('tick', (data, { id }) => window.got.push([data.n, id]))
  client.onState(({ state }) => window.states.push(state))
} else {
  const url = params.get('url') ?? new URL('/feed', location.href).href.replace('http', 'ws')
  const client = createWsClient(url, { backoff, token })
  client.onState(({ state, code }) => window.states.push([state, code]))
  client.subscribe('lobby').on('tick', (data, { id }) => window.got.push([data.n, id]))
}
</script>`

function setup (app: any): void {
  app.get('/', (request: any, reply: any) => reply.type('text/html').send(PAGE))
  app.get('/dist/:folder/:file', async (request: any, reply: any) => {
    const { folder, file } = request.params
    if (!['client', 'protocol'].includes(folder) || !/^[a-z-]+\.js$/.test(file)) return reply.code(404).send()
    return reply.type('text/javascript').send(await readFile(new URL(`${folder}/${file}`, DIST)))
  })
  app.ws('/feed', { contract: feed, topics: { lobby: true }, handlers: {} })
  app.get('/events', (request: any, reply: any) => { reply.sse({ contract: feed }).subscribe(lobby(app)) })
}

async function restartMidStream (t: Test, transport: 'ws' | 'sse'): Promise<void> {
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  const server: Served = await serve(t, setup, { broker })
  const { page, errors } = await openPage(t, browser!)
  await page.goto(`${server.url}/?transport=${transport}`)
  const count = (n: number) => page.waitForFunction((n) => (window as any).got.length === n, n)
  const ids: Array<[number, string]> = []
  const publish = async (app: any, n: number): Promise<void> => { ids.push([n, await lobby(app).publish('tick', { n })]) }
  await page.waitForFunction(() => (window as any).states.some((state: unknown) => state === 'open' || (Array.isArray(state) && state[0] === 'open')))
  for (let n = 1; n <= 3; n++) await publish(server.app, n)
  await count(3)
  await server.stop()
  await server.restart(async (app) => { for (let n = 4; n <= 6; n++) await publish(app, n) })
  await count(6)
  for (let n = 7; n <= 8; n++) await publish(server.app, n)
  await count(8)
  t.same(await page.evaluate(() => (window as any).got), ids, 'every event once, in order, with its id')
  t.same(errors, [])
}

if (browser !== undefined) {
  t.test('WebSocket: a server restart mid-stream delivers every event once and in order', (t) => restartMidStream(t, 'ws'))
  t.test('SSE: a server restart mid-stream delivers every event once and in order', (t) => restartMidStream(t, 'sse'))

  t.test('offline, then online: no attempt while offline, one at once when back online, and nothing lost', async (t) => {
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    const server = await serve(t, setup, { broker })
    const { page } = await openPage(t, browser!)
    await page.goto(`${server.url}/?slow`)
    await page.waitForFunction(() => (window as any).states.some((state: unknown[]) => state[0] === 'open'))
    await lobby(server.app).publish('tick', { n: 1 })
    await page.waitForFunction(() => (window as any).got.length === 1)
    await page.context().setOffline(true)
    // Offline does not close an open socket by itself: the server going away does, as a network loss would.
    await server.stop()
    // 1001, then an attempt that fails offline (1006): the next waits a minute of backoff.
    await page.waitForFunction(() => (window as any).states.some((state: unknown[]) => state[0] === 'reconnecting' && state[1] === 1006))
    await server.restart(async (app) => { await lobby(app).publish('tick', { n: 2 }) })
    const upgrades = server.seen.upgrades
    await page.context().setOffline(false)
    await page.waitForFunction(() => (window as any).got.length === 2)
    t.equal(server.seen.upgrades, upgrades + 1, 'one attempt, at once, on online (the backoff was a minute)')
    t.same((await page.evaluate(() => (window as any).got)).map(([n]: [number]) => n), [1, 2])
  })

  t.test('a refused upgrade looks like 1006 to a browser: the client keeps backing off, asking for a token with reason "rejected"', async (t) => {
    const server = await serve(t, setup, { ws: { authenticate: () => null } })
    const { page } = await openPage(t, browser!)
    await page.goto(`${server.url}/?token=bad`)
    await page.waitForFunction(() => (window as any).reasons.length >= 3)
    const states: Array<[string, number]> = await page.evaluate(() => (window as any).states)
    t.ok(states.every(([state, code]) => state === 'reconnecting' && code === 1006), 'the status is hidden: 1006 before open')
    t.same((await page.evaluate(() => (window as any).reasons)).slice(0, 3), ['connect', 'rejected', 'rejected'])
    t.ok(server.seen.upgrades >= 3)
  })

  t.test('a socket to another origin is refused before the upgrade', async (t) => {
    let opened = 0
    const server = await serve(t, (app) => {
      setup(app)
      app.ws('/other', { onOpen () { opened++ }, handlers: {} })
    }, { ws: { authenticate: () => 'ann' } })
    const { page } = await openPage(t, browser!)
    const other = server.url.replace('127.0.0.1', 'localhost').replace('http', 'ws')
    await page.goto(`${server.url}/?url=${encodeURIComponent(`${other}/other`)}&token=t`)
    await page.waitForFunction(() => (window as any).states.length >= 2)
    t.equal(opened, 0, 'no connection')
    t.ok(server.seen.upgrades >= 1)
  })
}
