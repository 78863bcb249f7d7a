// Tokens per attempt, refusals and expiry: never in the URL, and never a retry storm.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { bearerToken, defineContract } from '../../lib/index.js'
import { createWsClient, type TokenReason, type WsClientOptions } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { FAST, NodeWebSocket, serve, states, until, type Served } from '../helpers/client.js'

const escaped = recordEscapes(t)
const whoami = defineContract({ messages: { who: Type.Null() }, replies: { who: Type.String() } })

/** Tokens: `good` lives long, `short` expires 50 ms after the upgrade, `forbidden` gets 403, anything else 401. */
async function authServer (t: Test): Promise<Served & { urls: string[], protocols: string[] }> {
  const urls: string[] = []
  const protocols: string[] = []
  const served = await serve(t, (app) => {
    app.ws('/a', { contract: whoami, handlers: { who: (data, conn) => conn.user as string } })
  }, {
    ws: {
      authenticate: (request) => {
        urls.push(request.url)
        protocols.push(String(request.headers['sec-websocket-protocol']))
        const token = bearerToken(request)
        if (token === 'good') return 'ann'
        if (token?.startsWith('short')) return { user: 'ann', expiresAt: Date.now() + 50 }
        if (token?.startsWith('forbidden') === true) throw Object.assign(new Error('no'), { statusCode: 403 })
        return null
      }
    }
  })
  return Object.assign(served, { urls, protocols })
}

function client (t: Test, server: Served, tokens: (reason: TokenReason) => string | undefined, options: WsClientOptions = {}) {
  const reasons: TokenReason[] = []
  const rt = createWsClient<any>(`${server.url.replace('http', 'ws')}/a`, {
    WebSocket: NodeWebSocket,
    backoff: FAST,
    pingIntervalMs: 0,
    token: ({ reason }) => { reasons.push(reason); return tokens(reason) },
    ...options
  })
  t.teardown(() => rt.close())
  return Object.assign(rt, { reasons })
}

t.test('the token travels as a bearer.<token> subprotocol next to realtime.v1, never in the URL', async (t) => {
  const server = await authServer(t)
  const rt = client(t, server, () => 'good', { pingIntervalMs: undefined })
  t.equal(await rt.request('who', null), 'ann')
  t.same(server.protocols, ['realtime.v1,bearer.good'])
  t.same(server.urls, ['/a'])
})

t.test('401: token({ reason: "rejected" }) once, then open with the new token', async (t) => {
  const server = await authServer(t)
  const rt = client(t, server, (reason) => reason === 'rejected' ? 'good' : 'stale')
  await until(() => rt.state === 'open', 5000, 'open')
  t.same(rt.reasons, ['connect', 'rejected'])
  t.equal(server.seen.upgrades, 2)
})

for (const token of ['bad', 'forbidden']) {
  t.test(`${token === 'bad' ? 401 : 403} again after a new token: stop with UNAUTHORIZED, no storm`, async (t) => {
    const server = await authServer(t)
    let n = 0
    const rt = client(t, server, () => `${token}${++n}`)
    const closed = await rt.closed
    t.equal(closed.error?.code, 'UNAUTHORIZED')
    t.equal(closed.status, token === 'bad' ? 401 : 403)
    t.same(rt.reasons, ['connect', 'rejected'])
    t.equal(server.seen.upgrades, 2)
  })
}

t.test('401 without token(): stop at once', async (t) => {
  const server = await authServer(t)
  const rt = createWsClient(`${server.url.replace('http', 'ws')}/a`, { WebSocket: NodeWebSocket })
  t.equal((await rt.closed).error?.code, 'UNAUTHORIZED')
  t.equal(server.seen.upgrades, 1)
})

t.test('4401: token({ reason: "expired" }) and reconnect at once', async (t) => {
  const server = await authServer(t)
  const rt = client(t, server, (reason) => reason === 'expired' ? 'good' : 'short')
  const changes = states(rt)
  await until(() => changes.length === 3, 5000, 'the refresh')
  t.same(changes.names(), ['open', 'reconnecting', 'open'])
  t.equal(changes[1].code, 4401)
  t.equal(changes[1].retryInMs, 0)
  t.same(rt.reasons, ['connect', 'expired'])
  t.equal(server.seen.upgrades, 2)
})

t.test('4401 again before the new connection proved stable: stop with UNAUTHORIZED, no storm', async (t) => {
  const server = await authServer(t)
  let n = 0
  const rt = client(t, server, () => `short${++n}`)
  const closed = await rt.closed
  t.equal(closed.code, 4401)
  t.equal(closed.error?.code, 'UNAUTHORIZED')
  t.same(rt.reasons, ['connect', 'expired'])
  t.equal(server.seen.upgrades, 2)
})

t.test('4401 and the same token again: stop without another attempt', async (t) => {
  const server = await authServer(t)
  const rt = client(t, server, () => 'short')
  t.equal((await rt.closed).error?.code, 'UNAUTHORIZED')
  t.same(rt.reasons, ['connect', 'expired'])
  t.equal(server.seen.upgrades, 1)
})

t.test('4401, then a server that is down (a deploy): the same, still valid token keeps being offered', async (t) => {
  const server = await authServer(t)
  const reasons: TokenReason[] = []
  let tokens = 0
  const rt = createWsClient<any>(`${server.url.replace('http', 'ws')}/a`, {
    WebSocket: NodeWebSocket,
    backoff: FAST,
    pingIntervalMs: 0,
    token: ({ reason }) => {
      reasons.push(reason)
      return ++tokens === 1 ? 'short' : 'good'
    }
  })
  t.teardown(() => rt.close())
  const changes = states(rt)
  // The refresh is at once: by the time this looks, the second connection may be open already.
  await until(() => changes.filter((change) => change.state === 'open').length === 2, 5000, 'the refreshed connection')
  await server.stop()
  await until(() => changes.filter((change) => change.state === 'reconnecting').length >= 4, 5000, 'attempts while down')
  await server.restart()
  await until(() => rt.state === 'open', 5000, 'open again')
  t.same(reasons.slice(0, 3), ['connect', 'expired', 'connect'], '1001 after the refresh: a routine reconnect')
  t.ok(reasons.slice(3).includes('rejected'), 'the masked failures while down ask again, and the same token is still tried')
})

t.test('4401 without token(): stop', async (t) => {
  const server = await authServer(t)
  const rt = createWsClient(`${server.url.replace('http', 'ws')}/a`, { WebSocket: NodeWebSocket, pingIntervalMs: 0, backoff: FAST })
  t.equal(rt.state, 'connecting')
  t.equal((await rt.closed).error?.code, 'UNAUTHORIZED')
})

t.test('a token that is not an RFC 7230 token (base64 "=") stops with a message that says so', async (t) => {
  const server = await authServer(t)
  const rt = client(t, server, () => 'a=b')
  const { error } = await rt.closed
  t.equal(error?.code, 'CLOSED')
  t.match(error?.message, /base64url/)
  t.equal(server.seen.upgrades, 0)
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
