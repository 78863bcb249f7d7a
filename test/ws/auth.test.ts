import { once } from 'node:events'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import { Type } from '@sinclair/typebox'
import type WebSocket from 'ws'
import {
  bearerToken,
  defineContract,
  fastifyWs,
  type Connection,
  type FastifyWsOptions,
  type WsRouteOptions
} from '../../lib/index.js'
import { connectWS } from '../../lib/testing/index.js'
import {
  buildWs,
  openWS,
  deferred,
  closePayload,
  listenWs,
  maskedFrame,
  rawWsClient,
  sleep,
  upgrade,
  upgradeRequest,
  within,
  type UpgradeResult
} from '../helpers/ws.js'
import { captureLogs } from '../helpers/index.js'

const proto = defineContract({
  messages: { echo: Type.Object({ n: Type.Number() }), whoami: Type.Object({}) },
  replies: { echo: Type.Object({ n: Type.Number() }), whoami: Type.Unknown() },
  events: { note: Type.Object({ n: Type.Number() }) }
})
type Proto = typeof proto

/** What a route saw: whether onOpen and handlers ran, and the connections it opened. */
interface Seen {
  opened: number
  handled: number
  closes: Array<{ code: number, reason: string }>
  conns: Array<Connection<Proto>>
  /** Resolves with the first connection's close, once onClose has run. */
  firstClose: Promise<{ code: number, reason: string }>
}

/** Registers the `proto` route at `url`, recording what runs. */
function route (app: FastifyInstance, url: string, extra: Partial<WsRouteOptions<Proto>> = {}): Seen {
  const first = deferred<{ code: number, reason: string }>()
  const seen: Seen = { opened: 0, handled: 0, closes: [], conns: [], firstClose: first.promise }
  app.ws(url, {
    contract: proto,
    handlers: {
      echo (data) {
        seen.handled++
        return data
      },
      whoami (_data, conn) {
        seen.handled++
        return conn.user ?? null
      }
    },
    onOpen (conn) {
      seen.opened++
      seen.conns.push(conn)
    },
    onClose (_conn, code, reason) {
      seen.closes.push({ code, reason })
      first.resolve({ code, reason })
    },
    ...extra
  })
  return seen
}

/** buildWs, without its default authenticate: here every test says what it authenticates with. */
async function build (t: Test, options: FastifyWsOptions = {}): Promise<FastifyInstance> {
  return buildWs(t, { authenticate: undefined, ...options })
}

/** A request-like object for the bearerToken unit cases. */
function requestWith (headers: Record<string, string>, url = '/'): FastifyRequest {
  return { headers, url, query: Object.fromEntries(new URL(url, 'http://x').searchParams) } as unknown as FastifyRequest
}

function opened (t: Test, result: UpgradeResult): WebSocket {
  t.equal(result.statusCode, 101, 'upgraded')
  if (!('socket' in result)) throw new Error(`expected 101, got ${result.statusCode}: ${(result as { body: string }).body}`)
  return result.socket
}

function refused (t: Test, result: UpgradeResult, statusCode: number, code?: string): void {
  t.equal(result.statusCode, statusCode, `refused with ${statusCode}`)
  if (code !== undefined && 'body' in result) t.equal(JSON.parse(result.body).code, code)
}

async function closeSocket (socket: WebSocket): Promise<void> {
  if (socket.readyState === socket.CLOSED) return
  const closed = once(socket, 'close')
  socket.close()
  await closed
}

t.test('bearerToken', async (t) => {
  t.test('Authorization: Bearer, any case, extra spaces', async (t) => {
    t.equal(bearerToken(requestWith({ authorization: 'Bearer abc' })), 'abc')
    t.equal(bearerToken(requestWith({ authorization: 'bearer abc' })), 'abc')
    t.equal(bearerToken(requestWith({ authorization: 'BEARER abc' })), 'abc')
    t.equal(bearerToken(requestWith({ authorization: 'Bearer    abc   ' })), 'abc')
    t.equal(bearerToken(requestWith({ authorization: 'Bearer eyJ.a-b_c.d+e/f=' })), 'eyJ.a-b_c.d+e/f=', 'token68 characters')
  })

  t.test('other schemes and empty tokens give undefined', async (t) => {
    t.equal(bearerToken(requestWith({ authorization: 'Basic YWxhZGRpbjpvcGVu' })), undefined)
    t.equal(bearerToken(requestWith({ authorization: 'Bearer' })), undefined)
    t.equal(bearerToken(requestWith({ authorization: 'Bearer ' })), undefined)
    t.equal(bearerToken(requestWith({ authorization: 'Bearerabc' })), undefined)
    t.equal(bearerToken(requestWith({ authorization: 'Bearer a b' })), undefined)
    t.equal(bearerToken(requestWith({})), undefined)
  })

  t.test('a bearer.<token> subprotocol next to realtime.v1', async (t) => {
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'realtime.v1, bearer.abc' })), 'abc')
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'bearer.abc, realtime.v1' })), 'abc', 'in any order')
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'realtime.v1,bearer.abc' })), 'abc', 'without spaces')
  })

  t.test('bearer.<token> without realtime.v1, or empty, gives undefined', async (t) => {
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'bearer.abc' })), undefined)
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'realtime.v10, bearer.abc' })), undefined, 'realtime.v1 is matched exactly')
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'realtime.v1, bearer.' })), undefined)
    t.equal(bearerToken(requestWith({ 'sec-websocket-protocol': 'realtime.v1' })), undefined)
  })

  t.test('Authorization wins over the subprotocol', async (t) => {
    t.equal(bearerToken(requestWith({ authorization: 'Bearer header', 'sec-websocket-protocol': 'realtime.v1, bearer.protocol' })), 'header')
  })

  t.test('the query string is never read', async (t) => {
    t.equal(bearerToken(requestWith({}, '/chat?token=abc&access_token=abc&bearer=abc')), undefined)
    const app = Fastify()
    t.teardown(() => app.close())
    app.get('/token', async (request) => ({ token: bearerToken(request) ?? null }))
    const response = await app.inject({ url: '/token?token=abc&access_token=abc' })
    t.same(response.json(), { token: null })
  })
})

t.test('subprotocols: the server selects realtime.v1 and never echoes the token', async (t) => {
  t.test('real ws client', async (t) => {
    const app = await build(t, { authenticate: (request) => bearerToken(request) === 's3cret' ? { name: 'ann' } : null })
    route(app, '/chat')
    const port = await listenWs(app)
    const result = await upgrade(t, `ws://127.0.0.1:${port}/chat`, { protocols: ['realtime.v1', 'bearer.s3cret'] })
    const socket = opened(t, result)
    t.equal(socket.protocol, 'realtime.v1')
    t.equal(result.headers['sec-websocket-protocol'], 'realtime.v1')
    t.notMatch(JSON.stringify(result.headers), /s3cret|bearer\./)
    await closeSocket(socket)
  })

  t.test('raw 101 response head', async (t) => {
    const app = await build(t, { authenticate: (request) => bearerToken(request) ?? null })
    route(app, '/chat')
    const port = await listenWs(app)
    const raw = await rawWsClient(t, port, upgradeRequest(port, '/chat', { 'Sec-WebSocket-Protocol': 'realtime.v1, bearer.s3cret' }))
    const head = await raw.head
    t.match(head, /^HTTP\/1\.1 101 /)
    t.match(head, /\r\nSec-WebSocket-Protocol: realtime\.v1(\r\n|$)/i)
    t.notMatch(head, /s3cret/)
    t.notMatch(head, /bearer\./i)
    raw.socket.destroy()
  })

  t.test('through connectWS: the token authenticates, conn.user is set', async (t) => {
    const app = await build(t, { authenticate: (request) => bearerToken(request) === 's3cret' ? { name: 'ann' } : null })
    route(app, '/chat')
    // injectWS never reads the 101's headers, so ws.socket.protocol stays '' here; real sockets check the selection above.
    const ws = await openWS(app, '/chat', { protocols: ['realtime.v1', 'bearer.s3cret'] })
    t.same(await ws.request('whoami', {}), { name: 'ann' })
    await ws.close()
  })

  t.test('Authorization: Bearer through a real socket', async (t) => {
    const app = await build(t, { authenticate: (request) => bearerToken(request) === 's3cret' ? 'ann' : null })
    route(app, '/chat')
    const port = await listenWs(app)
    const socket = opened(t, await upgrade(t, `ws://127.0.0.1:${port}/chat`, { headers: { authorization: 'Bearer s3cret' } }))
    t.equal(socket.protocol, '', 'no subprotocol offered, none selected')
    await closeSocket(socket)
  })
})

t.test('authenticate', async (t) => {
  t.test('null -> 401 before any 101; no onOpen, no handler, no state (connectWS)', async (t) => {
    let calls = 0
    const app = await build(t, { authenticate: () => { calls++; return null } })
    const seen = route(app, '/chat')
    await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
    t.equal(calls, 1)
    t.equal(seen.opened, 0, 'onOpen never ran')
    t.equal(seen.handled, 0)
    t.equal(seen.closes.length, 0, 'onClose never ran')
    t.equal(app.websocketServer.clients.size, 0, 'no socket')
  })

  t.test('null and undefined -> 401 over a real socket, with a pipelined frame never handled', async (t) => {
    for (const answer of [null, undefined]) {
      const app = await build(t, { authenticate: () => answer })
      const seen = route(app, '/chat')
      const port = await listenWs(app)
      refused(t, await upgrade(t, `ws://127.0.0.1:${port}/chat`), 401, 'FRT_ERR_WS_UNAUTHORIZED')
      const raw = await rawWsClient(t, port, Buffer.concat([
        Buffer.from(upgradeRequest(port, '/chat')),
        maskedFrame('{"type":"echo","id":1,"data":{"n":1}}')
      ]))
      t.match(await raw.head, /^HTTP\/1\.1 401 /)
      await raw.ended
      t.equal(raw.frames.length, 0, 'nothing after the 401')
      t.equal(JSON.parse(raw.body).code, 'FRT_ERR_WS_UNAUTHORIZED')
      t.equal(seen.opened + seen.handled + seen.closes.length, 0, 'no onOpen, handler or onClose')
      t.equal(app.websocketServer.clients.size, 0)
    }
  })

  t.test('a thrown error with statusCode 403 -> 403', async (t) => {
    const app = await build(t, {
      authenticate: () => { throw Object.assign(new Error('banned'), { code: 'FRT_ERR_TESTING', statusCode: 403 }) }
    })
    const seen = route(app, '/chat')
    await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 403 })
    const port = await listenWs(app)
    refused(t, await upgrade(t, `ws://127.0.0.1:${port}/chat`), 403)
    t.equal(seen.opened, 0)
    t.equal(app.websocketServer.clients.size, 0)
  })

  t.test('a plain thrown error -> 500', async (t) => {
    const app = await build(t, { authenticate: async () => { throw new Error('database down') } })
    const seen = route(app, '/chat')
    await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 500 })
    const port = await listenWs(app)
    refused(t, await upgrade(t, `ws://127.0.0.1:${port}/chat`), 500)
    t.equal(seen.opened, 0)
  })

  t.test('an async authenticate works', async (t) => {
    const app = await build(t, {
      authenticate: async (request) => {
        await sleep(10)
        return request.headers['x-user'] ?? null
      }
    })
    const seen = route(app, '/chat')
    const ws = await openWS(app, '/chat', { headers: { 'x-user': 'ann' } })
    t.equal(await ws.request('whoami', {}), 'ann')
    t.equal(seen.conns[0]?.user, 'ann')
    await ws.close()
    await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
  })

  t.test('{ user, expiresAt } sets conn.user to user and closes with 4401 at expiry', async (t) => {
    const user = { name: 'ann' }
    let expiresAt = 0
    const app = await build(t, {
      authenticate: () => {
        expiresAt = Date.now() + 50
        return { user, expiresAt }
      }
    })
    const seen = route(app, '/chat')
    const ws = await openWS(app, '/chat')
    t.equal(seen.conns[0]?.user, user, 'conn.user is the user, not the wrapper')
    t.same(await ws.request('whoami', {}), { name: 'ann' })
    const closed = await within(ws.closed, 2000, 'the 4401 close')
    t.equal(closed.code, 4401)
    t.ok(Date.now() >= expiresAt, 'not before expiresAt')
    // Over injectWS the server's socket ends only after ws's close timeout: wait for onClose.
    t.equal((await within(seen.firstClose, 3000, 'onClose')).code, 4401, 'onClose saw 4401')
    t.equal(seen.closes.length, 1, 'once')
  })

  t.test('expiresAt as a Date works', async (t) => {
    const app = await build(t, { authenticate: () => ({ user: 'ann', expiresAt: new Date(Date.now() + 50) }) })
    const seen = route(app, '/chat')
    const ws = await openWS(app, '/chat')
    t.equal(seen.conns[0]?.user, 'ann')
    t.equal((await within(ws.closed, 2000, 'the 4401 close')).code, 4401)
  })

  t.test('an expiresAt already past -> 401', async (t) => {
    for (const expiresAt of [Date.now() - 1000, new Date(Date.now() - 1), 0]) {
      const app = await build(t, { authenticate: () => ({ user: 'ann', expiresAt }) })
      const seen = route(app, '/chat')
      await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
      t.equal(seen.opened, 0)
    }
  })

  t.test('an expiresAt far ahead (past the 24.8-day timer limit) does not close at once', async (t) => {
    const app = await build(t, { authenticate: () => ({ user: 'ann', expiresAt: Date.now() + 40 * 24 * 3600 * 1000 }) })
    route(app, '/chat')
    const ws = await openWS(app, '/chat')
    await sleep(30)
    t.same(await ws.request('echo', { n: 1 }), { n: 1 }, 'still open')
    await ws.close()
  })

  t.test('{ user, expiresAt: "soon" } -> 500 FRT_ERR_INVALID_OPTION', async (t) => {
    for (const expiresAt of ['soon', Number.NaN, new Date('not a date'), null]) {
      const app = await build(t, { authenticate: () => ({ user: 'ann', expiresAt }) })
      const seen = route(app, '/chat')
      await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 500 })
      const port = await listenWs(app)
      refused(t, await upgrade(t, `ws://127.0.0.1:${port}/chat`), 500, 'FRT_ERR_INVALID_OPTION')
      t.equal(seen.opened, 0)
    }
  })

  t.test('an object with other keys is the user itself', async (t) => {
    const answers: unknown[] = [{ user: 'a', role: 'x' }, { user: 'a' }, { user: 'a', expiresAt: Date.now() + 60000, role: 'x' }, { expires: 1 }, 'ann', 0, false]
    for (const answer of answers) {
      const app = await build(t, { authenticate: () => answer })
      const seen = route(app, '/chat')
      const ws = await openWS(app, '/chat')
      t.equal(seen.conns[0]?.user, answer, `${JSON.stringify(answer)} is the user`)
      await ws.close()
    }
  })

  t.test('authenticate gets the upgrade request', async (t) => {
    let seenRequest: FastifyRequest | undefined
    const app = await build(t, { authenticate: (request) => { seenRequest = request; return 'ann' } })
    route(app, '/chat')
    const ws = await openWS(app, '/chat?room=1', { headers: { 'x-test': 'yes' } })
    t.equal(seenRequest?.url, '/chat?room=1')
    t.equal(seenRequest?.headers['x-test'], 'yes')
    t.equal(seenRequest?.ws, true)
    await ws.close()
  })
})

t.test('origins', async (t) => {
  t.test('default policy over a real socket: same host allowed, other origins and null refused, no Origin allowed', async (t) => {
    let calls = 0
    const app = await build(t, { authenticate: () => { calls++; return 'ann' } })
    const seen = route(app, '/chat')
    const port = await listenWs(app)
    const url = `ws://127.0.0.1:${port}/chat`

    await closeSocket(opened(t, await upgrade(t, url, { headers: { origin: `http://127.0.0.1:${port}` } })))
    await closeSocket(opened(t, await upgrade(t, url)))
    t.equal(seen.opened, 2)

    calls = 0
    refused(t, await upgrade(t, url, { headers: { origin: 'http://evil.example' } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    refused(t, await upgrade(t, url, { headers: { origin: 'null' } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    refused(t, await upgrade(t, url, { headers: { origin: `http://127.0.0.1:${port + 1}` } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    refused(t, await upgrade(t, url, { headers: { origin: 'http://127.0.0.1' } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    refused(t, await upgrade(t, url, { headers: { origin: `http://127.0.0.1:${port}.evil.example` } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    t.equal(calls, 0, 'authenticate is not called for a forbidden origin')
    t.equal(seen.opened, 2, 'no connection opened')
  })

  t.test('default policy through connectWS compares with the Host header', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    const ok = await openWS(app, '/chat', { headers: { host: 'App.Example.com:8443', origin: 'https://app.example.com:8443' } })
    await ok.close()
    await t.rejects(openWS(app, '/chat', { headers: { host: 'app.example.com', origin: 'https://evil.example' } }), { code: 'FRT_ERR_TESTING', statusCode: 403 })
    await t.rejects(openWS(app, '/chat', { headers: { origin: 'https://app.example.com' } }), { code: 'FRT_ERR_TESTING', statusCode: 403 }, 'no Host header: refused')
    await t.rejects(openWS(app, '/chat', { headers: { host: 'app.example.com', origin: 'not a url' } }), { code: 'FRT_ERR_TESTING', statusCode: 403 })
  })

  t.test('an exact allowlist', async (t) => {
    const app = await build(t, { authenticate: () => 'ann', origins: ['https://app.example.com'] })
    route(app, '/chat')
    const port = await listenWs(app)
    const url = `ws://127.0.0.1:${port}/chat`
    await closeSocket(opened(t, await upgrade(t, url, { headers: { origin: 'https://app.example.com' } })))
    await closeSocket(opened(t, await upgrade(t, url)))
    for (const origin of ['https://app.example.com.evil.example', 'http://app.example.com', 'https://app.example.com/', 'https://app.example.com:443x', `http://127.0.0.1:${port}`, 'null']) {
      refused(t, await upgrade(t, url, { headers: { origin } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    }
  })

  t.test('a predicate gets the origin and the request', async (t) => {
    const calls: Array<[string, string]> = []
    const app = await build(t, {
      authenticate: () => 'ann',
      origins: (origin, request) => {
        calls.push([origin, request.url])
        return origin.endsWith('.example.com')
      }
    })
    route(app, '/chat')
    const port = await listenWs(app)
    const url = `ws://127.0.0.1:${port}/chat?x=1`
    await closeSocket(opened(t, await upgrade(t, url, { headers: { origin: 'https://a.example.com' } })))
    refused(t, await upgrade(t, url, { headers: { origin: 'https://a.example.org' } }), 403, 'FRT_ERR_WS_FORBIDDEN_ORIGIN')
    await closeSocket(opened(t, await upgrade(t, url)))
    t.same(calls, [['https://a.example.com', '/chat?x=1'], ['https://a.example.org', '/chat?x=1']], 'not called without an Origin')
  })

  t.test('a predicate that throws refuses the upgrade', async (t) => {
    const app = await build(t, { authenticate: () => 'ann', origins: () => { throw new Error('boom') } })
    const seen = route(app, '/chat')
    const port = await listenWs(app)
    const result = await upgrade(t, `ws://127.0.0.1:${port}/chat`, { headers: { origin: 'https://a.example.com' } })
    t.not(result.statusCode, 101)
    t.equal(seen.opened, 0)
  })

  t.test("a route's origins override the plugin's", async (t) => {
    const app = await build(t, { authenticate: () => 'ann', origins: ['https://a.example'] })
    route(app, '/a')
    route(app, '/b', { origins: ['https://b.example'] })
    route(app, '/any', { origins: () => true })
    const port = await listenWs(app)
    await closeSocket(opened(t, await upgrade(t, `ws://127.0.0.1:${port}/a`, { headers: { origin: 'https://a.example' } })))
    refused(t, await upgrade(t, `ws://127.0.0.1:${port}/a`, { headers: { origin: 'https://b.example' } }), 403)
    await closeSocket(opened(t, await upgrade(t, `ws://127.0.0.1:${port}/b`, { headers: { origin: 'https://b.example' } })))
    refused(t, await upgrade(t, `ws://127.0.0.1:${port}/b`, { headers: { origin: 'https://a.example' } }), 403)
    await closeSocket(opened(t, await upgrade(t, `ws://127.0.0.1:${port}/any`, { headers: { origin: 'https://c.example' } })))
  })
})

t.test('routes', async (t) => {
  t.test('authenticate: false makes a public route', async (t) => {
    let pluginCalls = 0
    const app = await build(t, { authenticate: () => { pluginCalls++; return null } })
    const seen = route(app, '/public', { authenticate: false })
    const ws = await openWS(app, '/public')
    t.equal(await ws.request('whoami', {}), null, 'conn.user is undefined')
    t.equal(seen.conns[0]?.user, undefined)
    t.equal(pluginCalls, 0, "the plugin's authenticate is not called")
    await ws.close()
    await t.rejects(openWS(app, '/public', { headers: { host: 'app.example', origin: 'https://evil.example' } }), { code: 'FRT_ERR_TESTING', statusCode: 403 }, 'a public route still checks the Origin')
  })

  t.test('authenticate: false without a plugin authenticate', async (t) => {
    const app = await build(t)
    route(app, '/public', { authenticate: false })
    const ws = await openWS(app, '/public')
    t.same(await ws.request('echo', { n: 2 }), { n: 2 })
    await ws.close()
  })

  t.test('no authenticate anywhere: app.ws throws FRT_ERR_WS_AUTH_REQUIRED at once', async (t) => {
    const app = await build(t)
    t.throws(() => route(app, '/chat'), { code: 'FRT_ERR_WS_AUTH_REQUIRED', message: /\/chat/ })
    t.throws(() => route(app, '/chat2', { authenticate: undefined }), { code: 'FRT_ERR_WS_AUTH_REQUIRED' })
    await app.ready()
    t.notOk(app.hasRoute({ method: 'GET', url: '/chat' }), 'no route was registered')
    await t.rejects(openWS(app, '/chat'), { code: 'FRT_ERR_TESTING', statusCode: 404 })
  })

  t.test("a route's authenticate overrides the plugin's", async (t) => {
    let pluginCalls = 0
    const app = await build(t, { authenticate: () => { pluginCalls++; return 'plugin' } })
    route(app, '/plugin')
    route(app, '/route', { authenticate: () => 'route' })
    route(app, '/closed', { authenticate: () => null })
    const ws = await openWS(app, '/route')
    t.equal(await ws.request('whoami', {}), 'route')
    t.equal(pluginCalls, 0)
    await ws.close()
    await t.rejects(openWS(app, '/closed'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
    const other = await openWS(app, '/plugin')
    t.equal(await other.request('whoami', {}), 'plugin')
    await other.close()
  })

  t.test('a plain HTTP GET to a ws route -> 404, authenticate not called', async (t) => {
    let calls = 0
    const app = await build(t, { authenticate: () => { calls++; return 'ann' } })
    const seen = route(app, '/chat')
    const response = await app.inject({ url: '/chat', headers: { origin: 'http://evil.example' } })
    t.equal(response.statusCode, 404)
    const port = await listenWs(app)
    const plain = await fetch(`http://127.0.0.1:${port}/chat`)
    t.equal(plain.status, 404)
    await plain.arrayBuffer()
    t.equal(calls, 0)
    t.equal(seen.opened, 0)
  })

  t.test('bad route options are registration errors', async (t) => {
    const app = await build(t, { authenticate: () => 'ann', maxPayload: 1024 })
    t.throws(() => route(app, '/a', { authenticate: 1 as any }), { code: 'FRT_ERR_INVALID_OPTION' })
    t.throws(() => route(app, '/b', { origins: 'x' as any }), { code: 'FRT_ERR_INVALID_OPTION' })
    t.throws(() => route(app, '/c', { maxPayload: 2048 }), { code: 'FRT_ERR_INVALID_OPTION' }, 'a route may not raise maxPayload')
    t.throws(() => route(app, '/d', { rateLimit: { messages: 0, intervalMs: 1000 } }), { code: 'FRT_ERR_INVALID_OPTION' })
  })
})

t.test('messages pipelined during an async authenticate are not lost', async (t) => {
  t.test('in the same TCP write as the upgrade request', async (t) => {
    let authDone = false
    const app = await build(t, {
      authenticate: async () => {
        await sleep(50)
        authDone = true
        return 'ann'
      }
    })
    const handledAfterAuth: boolean[] = []
    route(app, '/chat', {
      handlers: {
        echo (data) { handledAfterAuth.push(authDone); return data },
        whoami: (_data, conn) => conn.user
      }
    })
    const port = await listenWs(app)
    const raw = await rawWsClient(t, port, Buffer.concat([
      Buffer.from(upgradeRequest(port, '/chat')),
      maskedFrame('{"type":"echo","id":1,"data":{"n":1}}'),
      maskedFrame(JSON.stringify({ type: 'echo', id: 'two', data: { n: 2, pad: 'x'.repeat(200) } })),
      maskedFrame('{"type":"whoami","id":3,"data":{}}')
    ]))
    t.match(await raw.head, /^HTTP\/1\.1 101 /)
    const replies = [await raw.next(), await raw.next(), await raw.next()]
    t.same(replies.map((frame) => frame.opcode), [1, 1, 1], 'text frames')
    t.same(replies.map((frame) => JSON.parse(frame.payload.toString())), [
      { type: 'reply', id: 1, data: { n: 1 } },
      { type: 'reply', id: 'two', data: { n: 2, pad: 'x'.repeat(200) } },
      { type: 'reply', id: 3, data: 'ann' }
    ], 'every message answered, in order')
    t.same(handledAfterAuth, [true, true], 'handled only after authenticate resolved')
    raw.socket.write(maskedFrame(Buffer.from([0x03, 0xe8]), { opcode: 0x8 }))
    const close = await raw.next()
    t.equal(close.opcode, 0x8)
    t.equal(closePayload(close.payload).code, 1000)
  })

  t.test('in a later TCP write, while authenticate is still running', async (t) => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => { release = resolve })
    let authStarted!: () => void
    const started = new Promise<void>((resolve) => { authStarted = resolve })
    const app = await build(t, {
      authenticate: async () => {
        authStarted()
        await gate
        return 'ann'
      }
    })
    route(app, '/chat')
    const port = await listenWs(app)
    const raw = await rawWsClient(t, port, Buffer.concat([
      Buffer.from(upgradeRequest(port, '/chat')),
      maskedFrame('{"type":"echo","id":1,"data":{"n":1}}')
    ]))
    await started
    raw.socket.write(maskedFrame('{"type":"echo","id":2,"data":{"n":2}}'))
    await sleep(20)
    raw.socket.write(maskedFrame('{"type":"echo","id":3,"data":{"n":3}}'))
    await sleep(20)
    release()
    t.match(await raw.head, /^HTTP\/1\.1 101 /)
    const replies = [await raw.next(), await raw.next(), await raw.next()]
    t.same(replies.map((frame) => JSON.parse(frame.payload.toString())), [
      { type: 'reply', id: 1, data: { n: 1 } },
      { type: 'reply', id: 2, data: { n: 2 } },
      { type: 'reply', id: 3, data: { n: 3 } }
    ])
    raw.socket.destroy()
  })
})

t.test('an expired connection gets nothing after 4401: no topic event, no late reply, no send', async (t) => {
  const app = await build(t, { authenticate: () => ({ user: 'ann', expiresAt: Date.now() + 200 }) })
  const news = app.realtime.topic('news', { contract: proto })
  const subscribed = deferred()
  const replied = deferred<boolean>()
  const seen = route(app, '/chat', {
    async onOpen (conn) {
      seen.conns.push(conn)
      await conn.subscribe(news)
      subscribed.resolve()
    },
    handlers: {
      // Still running when the connection expires; its reply must not go out.
      async echo (data) {
        await sleep(data.n)
        replied.resolve(true)
        return data
      },
      whoami: (_data, conn) => conn.user
    }
  })
  const port = await listenWs(app)
  // A raw client never answers the close frame, so the server's socket stays half-closed for up to a second.
  const raw = await rawWsClient(t, port, upgradeRequest(port, '/chat'))
  t.match(await raw.head, /^HTTP\/1\.1 101 /)
  await subscribed.promise
  const id = await news.publish('note', { n: 1 })
  const before = await raw.next()
  t.same(JSON.parse(before.payload.toString()), { type: 'event', topic: 'news', id, event: 'note', data: { n: 1 } }, 'delivered before expiry')
  raw.socket.write(maskedFrame('{"type":"echo","id":"late","data":{"n":400}}'))

  const close = await raw.next(3000)
  t.equal(close.opcode, 0x8, 'a close frame')
  t.same(closePayload(close.payload), { code: 4401, reason: 'authentication expired' })
  const conn = seen.conns[0] as Connection<Proto>
  await news.publish('note', { n: 2 })
  t.equal(conn.send('note', { n: 3 }), false, 'send returns false')
  t.ok(await within(replied.promise, 2000, 'the slow handler'), 'the slow handler finished after the expiry')
  await sleep(20)
  t.equal(raw.frames.length, 2, 'no frame after the close frame')
  raw.socket.destroy()
  await raw.ended
  t.same((await within(seen.firstClose, 2000, 'onClose')).code, 4401)
})

t.test('the upgrade itself', async (t) => {
  t.test('a token offered as the only subprotocol is never echoed, and bearerToken ignores it', async (t) => {
    const app = await build(t, { authenticate: (request) => bearerToken(request) ?? null })
    route(app, '/chat')
    route(app, '/public', { authenticate: false })
    const port = await listenWs(app)
    const refusedRaw = await rawWsClient(t, port, upgradeRequest(port, '/chat', { 'Sec-WebSocket-Protocol': 'bearer.s3cret' }))
    t.match(await refusedRaw.head, /^HTTP\/1\.1 401 /)
    const publicRaw = await rawWsClient(t, port, upgradeRequest(port, '/public', { 'Sec-WebSocket-Protocol': 'bearer.s3cret' }))
    const head = await publicRaw.head
    t.match(head, /^HTTP\/1\.1 101 /)
    t.notMatch(head, /sec-websocket-protocol/i, 'no subprotocol selected')
    t.notMatch(head, /s3cret/)
    publicRaw.socket.destroy()
  })

  t.test('realtime.v1 is selected among other offers', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    const port = await listenWs(app)
    const result = await upgrade(t, `ws://127.0.0.1:${port}/chat`, { protocols: ['chat', 'realtime.v1', 'bearer.x'] })
    t.equal(opened(t, result).protocol, 'realtime.v1')
    await closeSocket(opened(t, result))
  })

  t.test('no Sec-WebSocket-Key, or an unsupported version -> 400, no connection', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    const seen = route(app, '/chat')
    const port = await listenWs(app)
    const noKey = upgradeRequest(port, '/chat').replace(/Sec-WebSocket-Key: [^\r]*\r\n/, '')
    const noKeyRaw = await rawWsClient(t, port, noKey)
    t.match(await noKeyRaw.head, /^HTTP\/1\.1 400 /)
    const badVersion = upgradeRequest(port, '/chat').replace('Sec-WebSocket-Version: 13', 'Sec-WebSocket-Version: 12')
    const badVersionRaw = await rawWsClient(t, port, badVersion)
    const head = await badVersionRaw.head
    t.match(head, /^HTTP\/1\.1 400 /)
    t.match(head, /\r\nSec-WebSocket-Version: 13/i, 'lists the supported versions')
    await Promise.all([noKeyRaw.ended, badVersionRaw.ended])
    t.equal(seen.opened, 0)
    t.equal(app.websocketServer.clients.size, 0)
  })

  t.test('an upgrade to an unknown path -> 404', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    const port = await listenWs(app)
    refused(t, await upgrade(t, `ws://127.0.0.1:${port}/nowhere`), 404)
  })

  // Catalogue item 10: an upgrade to an HTTP-only route must get a 4xx, not a 101 and a codeless close.
  t.test('an upgrade to an HTTP-only route -> 4xx, the HTTP handler does not run', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    let handled = 0
    app.get('/http', async () => { handled++; return { ok: true } })
    const port = await listenWs(app)
    const raw = await rawWsClient(t, port, upgradeRequest(port, '/http'))
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(await raw.head)?.[1])
    t.ok(status >= 400 && status < 500, `answered ${status}`)
    t.equal(handled, 0, 'the HTTP handler did not run')
    raw.socket.destroy()
  })

  t.test('a client that leaves while authenticate runs leaves no connection behind', async (t) => {
    const gate = deferred()
    const started = deferred()
    const app = await build(t, {
      authenticate: async () => {
        started.resolve()
        await gate.promise
        return 'ann'
      }
    })
    const seen = route(app, '/chat')
    const port = await listenWs(app)
    const raw = await rawWsClient(t, port, upgradeRequest(port, '/chat'))
    await started.promise
    raw.socket.destroy()
    await raw.ended
    gate.resolve()
    // The server cannot know the peer left (it stops reading at the upgrade): it may open, then must close at once.
    await sleep(50)
    t.equal(seen.closes.length, seen.opened, 'every onOpen has its onClose')
    if (seen.opened > 0) t.same(seen.closes, [{ code: 1006, reason: '' }], 'the peer vanished: 1006')
    t.equal(app.websocketServer.clients.size, 0)
  })

  t.test('tokens are not written to the logs', async (t) => {
    const logs = captureLogs()
    const app = await buildWs(t, { authenticate: (request) => bearerToken(request) === 's3cret' ? 'ann' : null }, { logger: { level: 'trace', stream: logs.stream } })
    route(app, '/chat')
    const port = await listenWs(app)
    const url = `ws://127.0.0.1:${port}/chat`
    await closeSocket(opened(t, await upgrade(t, url, { protocols: ['realtime.v1', 'bearer.s3cret'] })))
    await closeSocket(opened(t, await upgrade(t, url, { headers: { authorization: 'Bearer s3cret' } })))
    refused(t, await upgrade(t, url, { protocols: ['realtime.v1', 'bearer.n0pe-s3cret'] }), 401)
    refused(t, await upgrade(t, url, { headers: { authorization: 'Bearer n0pe-s3cret' } }), 401)
    await app.close()
    t.ok(logs.lines.length > 0, 'something was logged')
    t.notMatch(JSON.stringify(logs.lines), /s3cret/, 'no token in any log line')
  })
})

t.test('registration errors', async (t) => {
  t.test('FRT_ERR_WS_CONFLICT when @fastify/websocket is registered first', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyWebsocket)
    await t.rejects(async () => { await app.register(fastifyWs, { authenticate: () => 'ann' }) }, { code: 'FRT_ERR_WS_CONFLICT' })
  })

  t.test('FRT_ERR_INVALID_OPTION for bad plugin options', async (t) => {
    const bad: Array<Record<string, unknown>> = [
      { origins: 'x' },
      { origins: [1] },
      { authenticate: 1 },
      { rateLimit: { messages: 0 } },
      { rateLimit: { messages: 0, intervalMs: 1000 } },
      { rateLimit: { messages: 10, intervalMs: -1 } },
      { rateLimit: true },
      { maxPayload: -1 },
      { maxPayload: 1.5 },
      { heartbeat: 1.5 },
      { heartbeat: -1 },
      { perMessageDeflate: 'yes' },
      { maxBufferedBytes: 0 }
    ]
    for (const options of bad) {
      const app = Fastify()
      t.teardown(() => app.close())
      await t.rejects(async () => { await app.register(fastifyWs, options as FastifyWsOptions) }, { code: 'FRT_ERR_INVALID_OPTION' }, JSON.stringify(options))
    }
  })

  t.test('heartbeat false and 0 turn it off; good options register', async (t) => {
    for (const options of [{ heartbeat: false }, { heartbeat: 0 }, { rateLimit: false }, { perMessageDeflate: true }, { origins: [] }] as FastifyWsOptions[]) {
      const app = Fastify()
      t.teardown(() => app.close())
      await app.register(fastifyWs, options)
      await app.ready()
      t.pass(JSON.stringify(options))
    }
  })
})

t.test('connectWS', async (t) => {
  t.test('rejects with statusCode 401 and 403 on refused upgrades', async (t) => {
    const app = await build(t, { authenticate: (request) => request.headers['x-user'] ?? null, origins: ['https://ok.example'] })
    route(app, '/chat')
    await app.ready()
    const unauthorized = await connectWS(app, '/chat').catch((err: unknown) => err)
    t.match(unauthorized, { code: 'FRT_ERR_TESTING', statusCode: 401, message: /401/ })
    const forbidden = await connectWS(app, '/chat', { headers: { 'x-user': 'ann', origin: 'https://evil.example' } }).catch((err: unknown) => err)
    t.match(forbidden, { code: 'FRT_ERR_TESTING', statusCode: 403 })
    await t.rejects(connectWS(app, '/nowhere'), { code: 'FRT_ERR_TESTING', statusCode: 404 })
  })

  t.test('request() times out with FRT_ERR_TESTING when the server never answers', async (t) => {
    const hang = defineContract({ messages: { hang: Type.Object({}) } })
    const app = await build(t, { authenticate: () => 'ann' })
    app.ws('/hang', { contract: hang, handlers: { hang: () => new Promise<void>(() => {}) } })
    await app.ready()
    const ws = await connectWS(app, '/hang', { timeout: 50 })
    await t.rejects(ws.request('hang', {}), { code: 'FRT_ERR_TESTING', message: /hang/ })
    await ws.close()
  })

  t.test('nextFrame and nextEvent reject after the connection closes', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    await app.ready()
    const ws = await connectWS(app, '/chat', { timeout: 2000 })
    const waitingFrame = ws.nextFrame()
    const waitingEvent = ws.nextEvent('note')
    const waitingRequest = ws.request('echo', { n: 1 }).then(() => 'answered', (err: { code?: string }) => String(err.code))
    ws.socket.close()
    await t.rejects(waitingFrame, { code: 'FRT_ERR_TESTING' }, 'a pending nextFrame rejects at close')
    await t.rejects(waitingEvent, { code: 'FRT_ERR_TESTING' }, 'a pending nextEvent rejects at close')
    t.ok(['answered', 'FRT_ERR_TESTING'].includes(await waitingRequest), 'a pending request settles')
    t.same(await ws.closed, { code: 1005, reason: '' })
    await t.rejects(ws.nextFrame(), { code: 'FRT_ERR_TESTING' }, 'after close: at once')
    await t.rejects(ws.nextEvent(), { code: 'FRT_ERR_TESTING' })
    await t.rejects(ws.request('echo', { n: 1 }), { code: 'FRT_ERR_TESTING' })
  })

  t.test('nextFrame and nextEvent time out', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    await app.ready()
    const ws = await connectWS(app, '/chat', { timeout: 30 })
    await t.rejects(ws.nextFrame(), { code: 'FRT_ERR_TESTING' })
    await t.rejects(ws.nextEvent('note'), { code: 'FRT_ERR_TESTING' })
    await ws.close()
  })

  // Regression: connectWS before app.ready() never settled, even with a timeout, while app.inject()
  // (and so injectSSE) readies the app itself.
  t.test('connectWS before app.ready() connects, or at least settles within its timeout', async (t) => {
    const app = await build(t, { authenticate: () => 'ann' })
    route(app, '/chat')
    const outcome = await within(
      connectWS(app, '/chat', { timeout: 200 }).then((ws) => { ws.socket.terminate(); return 'connected' }, (err: Error) => err.message),
      2000,
      'connectWS before ready()'
    ).catch((err: Error) => err.message)
    t.equal(outcome, 'connected')
  })
})

t.test('{ user, expiresAt: undefined } is a user without expiry; { user: null, expiresAt } is unauthenticated', async (t) => {
  let result: unknown
  const app = await build(t, { authenticate: () => result })
  const users: unknown[] = []
  app.ws('/who', { onOpen (conn) { users.push(conn.user) } })
  result = { user: 'ann', expiresAt: undefined }
  const ws = await connectWS(app, '/who')
  t.same(users, ['ann'])
  await ws.close()
  result = { user: null, expiresAt: Date.now() + 60000 }
  await t.rejects(connectWS(app, '/who'), { code: 'FRT_ERR_TESTING', statusCode: 401 })
  t.same(users, ['ann'], 'no connection opened')
})
