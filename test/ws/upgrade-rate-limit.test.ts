import { once } from 'node:events'
import t, { type Test } from 'tap'
import { buildWs, listenWs, openWS, rawUpgrade, within, type RawUpgrade } from '../helpers/ws.js'

/** A route whose authenticate and onOpen record who got through. */
async function room (t: Test, upgradeRateLimit?: unknown) {
  const opened: string[] = []
  const authenticated: string[] = []
  const app = await buildWs(t, {
    authenticate: (request) => {
      authenticated.push(request.ip)
      return { name: 'ann' }
    },
    ...(upgradeRateLimit === undefined ? {} : { upgradeRateLimit: upgradeRateLimit as any })
  })
  app.ws('/room', { onOpen: (conn) => { opened.push(conn.id) } })
  const port = await listenWs(app)
  return { app, url: `http://127.0.0.1:${port}`, opened, authenticated }
}

t.test('upgrades over an address\'s budget get 429 with Retry-After, before authenticate and before any 101', async (t) => {
  const { url, opened, authenticated } = await room(t, { upgrades: 3, intervalMs: 60000 })
  const attempts: RawUpgrade[] = []
  for (let i = 0; i < 5; i++) attempts.push(await rawUpgrade(url, '/room'))
  t.teardown(() => { for (const attempt of attempts) attempt.socket.destroy() })
  t.same(attempts.map((attempt) => attempt.statusCode), [101, 101, 101, 429, 429], 'the first three upgraded, the rest refused')
  for (const refused of attempts.slice(3)) {
    t.match(refused.head, /\r\nRetry-After: \d+\r\n/i, 'a refusal says when to retry')
    refused.socket.resume()
    if (!refused.socket.destroyed) await within(once(refused.socket, 'close'), 3000, 'a refused socket to close')
  }
  t.equal(authenticated.length, 3, 'authenticate ran for the admitted upgrades only')
  t.equal(opened.length, 3, 'onOpen ran for the admitted upgrades only')
})

t.test('the budget is refilled when its interval ends', async (t) => {
  const { url } = await room(t, { upgrades: 1, intervalMs: 200 })
  const first = await rawUpgrade(url, '/room')
  const second = await rawUpgrade(url, '/room')
  t.teardown(() => { first.socket.destroy(); second.socket.destroy() })
  t.same([first.statusCode, second.statusCode], [101, 429])
  await new Promise((resolve) => setTimeout(resolve, 250))
  const third = await rawUpgrade(url, '/room')
  t.teardown(() => third.socket.destroy())
  t.equal(third.statusCode, 101, 'the address may upgrade again in the next interval')
})

t.test('off by default and with upgradeRateLimit: false, every upgrade is served; injected connections are never counted', async (t) => {
  for (const option of [undefined, false]) {
    const off = await room(t, option)
    const attempts = await Promise.all(Array.from({ length: 60 }, () => rawUpgrade(off.url, '/room')))
    t.teardown(() => { for (const attempt of attempts) attempt.socket.destroy() })
    t.ok(attempts.every((attempt) => attempt.statusCode === 101), `${String(option)}: all 60 upgraded`)
  }
  const limited = await room(t, { upgrades: 1, intervalMs: 60000 })
  for (let i = 0; i < 3; i++) {
    const ws = await openWS(limited.app, '/room')
    await ws.close()
  }
  t.equal(limited.opened.length, 3, 'three injected connections opened past a budget of one')
})

t.test('upgradeRateLimit is checked at registration', async (t) => {
  for (const value of [{}, { upgrades: 0, intervalMs: 1000 }, { upgrades: 5 }, 10, null]) {
    await t.rejects(room(t, value), { code: 'FRT_ERR_INVALID_OPTION' }, `rejects ${JSON.stringify(value)}`)
  }
})
