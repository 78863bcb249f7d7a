// Each close code produces what the table says, counted by the upgrades the server sees.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { RATE_LIMITED_MS, SOON_MS, SPREAD_MS } from '../../lib/protocol/close-codes.js'
import { createWsClient, type RealtimeClientError, type WsClientOptions } from '../../lib/client/index.js'
import { freePort, recordEscapes } from '../helpers/index.js'
import { FAST, NodeWebSocket, serve, states, until, type Served } from '../helpers/client.js'

const escaped = recordEscapes(t)

/** A route that closes its first `times` connections with `code` as soon as they open. */
async function closingServer (t: Test, code: number, times = 1): Promise<Served> {
  let opened = 0
  return serve(t, (app) => {
    app.ws('/c', { onOpen (conn) { if (++opened <= times) conn.close(code, 'test') }, handlers: {} })
  })
}

function client (t: Test, server: Served | string, options: WsClientOptions = {}) {
  const url = typeof server === 'string' ? server : `${server.url.replace('http', 'ws')}/c`
  const rt = createWsClient(url, { WebSocket: NodeWebSocket, backoff: FAST, pingIntervalMs: 0, ...options })
  t.teardown(() => rt.close())
  return rt
}

for (const code of [1011, 4000]) {
  t.test(`${code}: back off, reconnect`, async (t) => {
    const server = await closingServer(t, code)
    const rt = client(t, server)
    const changes = states(rt)
    await until(() => changes.length === 3, 5000, 'reconnected')
    t.same(changes.names(), ['open', 'reconnecting', 'open'])
    t.equal(changes[1].code, code)
    t.ok(changes[1].retryInMs! <= FAST.initialMs)
    t.equal(server.seen.upgrades, 2)
  })
}

t.test('1006 after open (the peer vanished without a close frame): back off, reconnect', async (t) => {
  const server = await serve(t, (app) => {
    app.ws('/c', {
      contract: defineContract({ messages: { vanish: Type.Null() } }),
      handlers: { vanish (data, conn) { conn.request.raw.socket.destroy() } }
    })
  })
  const rt = client(t, server)
  const changes = states(rt)
  t.equal((await rt.request('vanish', null).catch((err: RealtimeClientError) => err) as RealtimeClientError).code, 'DISCONNECTED')
  await until(() => changes.length === 3, 5000, 'reconnected')
  t.same(changes.names(), ['open', 'reconnecting', 'open'])
  t.equal(changes[1].code, 1006)
  t.equal(server.seen.upgrades, 2)
})

t.test('1008 (slow consumer): reconnect within 1 s', async (t) => {
  const server = await closingServer(t, 1008)
  const rt = client(t, server)
  const changes = states(rt)
  await until(() => changes.length === 3, 5000, 'reconnected')
  t.ok(changes[1].retryInMs! < SOON_MS)
  t.equal(server.seen.upgrades, 2)
})

for (const [code, errorCode] of [[1003, 'CLOSED'], [1009, 'PAYLOAD_TOO_LARGE'], [4400, 'CLOSED'], [4500, 'CLOSED'], [1000, undefined]] as const) {
  t.test(`${code}: stop; closed resolves with the code${errorCode === undefined ? '' : ' and an error'}`, async (t) => {
    const server = await closingServer(t, code)
    const rt = client(t, server)
    const closed = await rt.closed
    t.equal(closed.code, code)
    t.equal(closed.reason, 'test')
    t.equal(closed.error?.code, errorCode)
    t.equal(rt.state, 'closed')
    t.equal(server.seen.upgrades, 1, 'no second attempt')
  })
}

t.test('4429: back off, never sooner than 10 s', async (t) => {
  const server = await closingServer(t, 4429)
  const rt = client(t, server)
  const changes = states(rt)
  await until(() => changes.length === 2, 5000, 'the close')
  t.equal(changes[1].state, 'reconnecting')
  t.ok(changes[1].retryInMs! >= RATE_LIMITED_MS)
  rt.close()
  await rt.closed
  t.equal(server.seen.upgrades, 1)
})

t.test('1001 (a deploy): reconnect after a random 0-2 s to the new instance', async (t) => {
  const server = await serve(t, (app) => { app.ws('/c', { handlers: {} }) })
  const rt = client(t, server)
  const changes = states(rt)
  await until(() => rt.state === 'open', 5000, 'open')
  await server.stop()
  await server.restart()
  await until(() => changes.length === 3, 5000, 'reconnected')
  t.same(changes.names(), ['open', 'reconnecting', 'open'])
  t.equal(changes[1].code, 1001)
  t.ok(changes[1].retryInMs! <= SPREAD_MS)
})

t.test('shouldReconnect overrides the table; backoff: false never reconnects', async (t) => {
  const stopping = await closingServer(t, 1011)
  const stopped = client(t, stopping, { shouldReconnect: ({ code, opened }) => code === 1011 && opened ? false : undefined })
  t.equal((await stopped.closed).code, 1011)
  t.equal((await client(t, await closingServer(t, 1011), { backoff: false }).closed).error?.code, 'DISCONNECTED')
  const going = await closingServer(t, 4400)
  const goes = client(t, going, { shouldReconnect: () => true })
  await until(() => going.seen.upgrades === 2 && goes.state === 'open', 5000, 'reconnected')
})

t.test('a server that is down: back off and keep trying; each next attempt asks for a token with reason "rejected"', async (t) => {
  const port = await freePort()
  const reasons: string[] = []
  const rt = client(t, `ws://127.0.0.1:${port}/c`, { token: ({ reason }) => { reasons.push(reason); return 't' } })
  const changes = states(rt)
  await until(() => changes.length >= 3, 5000, 'attempts')
  rt.close()
  await rt.closed
  t.ok(changes.slice(0, 3).every((change) => change.state === 'reconnecting' && change.code === 1006))
  t.same(reasons.slice(0, 3), ['connect', 'rejected', 'rejected'], 'a refusal and a server that is down look the same')
})

t.test('the attempt count starts again after 5 s connected', async (t) => {
  let opened = 0
  const server = await serve(t, (app) => {
    app.ws('/c', {
      onOpen (conn) {
        opened++
        if (opened <= 2) conn.close(1011)
        else if (opened === 3) setTimeout(() => conn.close(1011), 5200)
      },
      handlers: {}
    })
  })
  const rt = client(t, server, { backoff: { initialMs: 10, factor: 10, maxMs: 100_000 } })
  const changes = states(rt)
  await until(() => opened === 4, 10_000, 'four connections')
  const delays = changes.filter((change) => change.state === 'reconnecting').map((change) => change.retryInMs!)
  t.ok(delays[1] <= 100 && delays[2] <= 10, `after a stable connection the delay bound is initialMs again (${delays.join(', ')})`)
})

t.test('without the WebSocket option on Node 20, the client stops with a message naming it', async (t) => {
  const rt = createWsClient('ws://127.0.0.1:1/c')
  const { error } = await rt.closed
  t.equal(error?.code, 'CLOSED')
  t.match(error?.message, /WebSocket option/)
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
