import net from 'node:net'
import t from 'tap'
import { createSseClient, type TokenReason } from '../../lib/client/index.js'
import { freePort, recordEscapes } from '../helpers/index.js'
import { FAST, serve, states, until } from '../helpers/client.js'

const escaped = recordEscapes(t)

/** A route that answers each request with the next status of `statuses`, then streams. */
function statusRoute (statuses: Array<number | [number, Record<string, string>]>) {
  return (app: any): void => {
    app.get('/s', (request: any, reply: any) => {
      const next = statuses.shift()
      if (next === undefined) {
        reply.sse().send('hello', 'world', { id: '1-0' })
        return
      }
      const [status, headers] = Array.isArray(next) ? next : [next, {}]
      reply.code(status).headers(headers).send(status === 204 ? undefined : 'no')
    })
  }
}

t.test('204 stops without an error', async (t) => {
  const server = await serve(t, statusRoute([204]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  t.same(await client.closed, { status: 204 })
  t.equal(client.state, 'closed')
  t.equal(server.seen.requests, 1)
})

t.test('other 4xx stop with CLOSED and the status', async (t) => {
  const server = await serve(t, statusRoute([404]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  const { status, error } = await client.closed
  t.equal(status, 404)
  t.equal(error?.code, 'CLOSED')
  t.equal(server.seen.requests, 1)
})

t.test('401 asks token() once with reason "rejected", then stops with UNAUTHORIZED', async (t) => {
  const server = await serve(t, statusRoute([401, 401, 401]), { ws: false })
  const reasons: TokenReason[] = []
  let n = 0
  const client = createSseClient(`${server.url}/s`, { backoff: FAST, token: ({ reason }) => { reasons.push(reason); return `t${++n}` } })
  const { status, error } = await client.closed
  t.equal(status, 401)
  t.equal(error?.code, 'UNAUTHORIZED')
  t.same(reasons, ['connect', 'rejected'])
  t.equal(server.seen.requests, 2, 'no retry storm')
})

t.test('401 and a new token that is accepted: the stream opens, with the token as a bearer', async (t) => {
  const seen: Array<string | undefined> = []
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => {
      seen.push(request.headers.authorization)
      if (request.headers.authorization !== 'Bearer good') return reply.code(401).send()
      reply.sse().send('hello', 'world')
    })
  }, { ws: false })
  const client = createSseClient(`${server.url}/s`, { token: ({ reason }) => reason === 'rejected' ? 'good' : 'stale' })
  t.teardown(() => client.close())
  const got = await new Promise((resolve) => client.on('hello', resolve))
  t.equal(got, 'world')
  t.same(seen, ['Bearer stale', 'Bearer good'])
  t.notOk(seen.some((header) => header === undefined))
})

t.test('401 with the same token again stops before asking the server twice', async (t) => {
  const server = await serve(t, statusRoute([401]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { token: () => 'same' })
  t.equal((await client.closed).error?.code, 'UNAUTHORIZED')
  t.equal(server.seen.requests, 1)
})

t.test('401 without a token() stops at once', async (t) => {
  const server = await serve(t, statusRoute([401]), { ws: false })
  const client = createSseClient(`${server.url}/s`)
  t.equal((await client.closed).error?.code, 'UNAUTHORIZED')
})

t.test('429 waits Retry-After seconds (never less than the backoff), then connects', async (t) => {
  const server = await serve(t, statusRoute([[429, { 'retry-after': '1' }]]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  t.teardown(() => client.close())
  const changes = states(client)
  await new Promise((resolve) => client.on('hello', resolve))
  t.same(changes.names(), ['reconnecting', 'open'])
  t.equal(changes[0].status, 429)
  t.ok(changes[0].retryInMs! >= 1000, 'the delay honours Retry-After')
  t.equal(server.seen.requests, 2)
})

t.test('503 with an HTTP-date Retry-After waits until then', async (t) => {
  const at = new Date(Date.now() + 60_000).toUTCString()
  const server = await serve(t, statusRoute([[503, { 'retry-after': at }]]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  const changes = states(client)
  await until(() => changes.length === 1, 5000, 'the 503')
  t.equal(changes[0].status, 503)
  t.ok(changes[0].retryInMs! > 30_000 && changes[0].retryInMs! <= 60_000)
  client.close()
  t.same(await client.closed, { code: 1000 })
  t.equal(server.seen.requests, 1)
})

t.test('5xx and an unreadable Retry-After back off and retry', async (t) => {
  const server = await serve(t, statusRoute([500, [503, { 'retry-after': 'soon' }], 502]), { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  t.teardown(() => client.close())
  const changes = states(client)
  await new Promise((resolve) => client.on('hello', resolve))
  t.same(changes.map((change) => change.status), [500, 503, 502, undefined])
  t.ok(changes.slice(0, 3).every((change) => change.retryInMs! <= FAST.maxMs))
})

t.test('a 200 that is not an event stream stops with BAD_RESPONSE', async (t) => {
  const server = await serve(t, (app) => { app.get('/s', async () => ({ not: 'a stream' })) }, { ws: false })
  const client = createSseClient(`${server.url}/s`)
  const { status, error } = await client.closed
  t.equal(status, 200)
  t.equal(error?.code, 'BAD_RESPONSE')
})

t.test('a stream the server ends is reconnected and resumed; the server\'s retry: is a floor', async (t) => {
  const lastIds: Array<string | undefined> = []
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => {
      lastIds.push(request.headers['last-event-id'] as string | undefined)
      const stream = reply.sse({ retry: 150 })
      stream.send('n', String(lastIds.length), { id: `1-${lastIds.length}` })
      if (lastIds.length === 1) stream.close()
    })
  }, { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  t.teardown(() => client.close())
  const changes = states(client)
  const got: string[] = []
  client.on('n', (data) => { got.push(data as string) })
  await until(() => got.length === 2, 5000, 'the second stream')
  t.same(lastIds, [undefined, '1-1'])
  t.same(changes.names(), ['open', 'reconnecting', 'open'])
  t.ok(changes[1].retryInMs! >= 150, 'retry: is a floor')
})

t.test('a stream silent for inactivityMs is dropped and reconnected', async (t) => {
  const server = await serve(t, (app) => { app.get('/s', (request, reply) => { reply.sse() }) }, { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST, inactivityMs: 30 })
  const changes = states(client)
  await until(() => server.seen.requests >= 3, 5000, 'reconnects')
  client.close()
  await client.closed
  t.same(changes.names().slice(0, 4), ['open', 'reconnecting', 'open', 'reconnecting'])
})

t.test('an attempt that gets no response within connectTimeoutMs is abandoned and retried', async (t) => {
  const sockets: net.Socket[] = []
  const silent = net.createServer((socket) => { sockets.push(socket) })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  const { port } = silent.address() as net.AddressInfo
  const client = createSseClient(`http://127.0.0.1:${port}/s`, { backoff: FAST, connectTimeoutMs: 30 })
  await until(() => sockets.length >= 2, 5000, 'a second attempt')
  client.close()
  t.same(await client.closed, { code: 1000 })
})

t.test('network errors back off; backoff: false stops with DISCONNECTED', async (t) => {
  const port = await freePort()
  const client = createSseClient(`http://127.0.0.1:${port}/s`, { backoff: FAST })
  const changes = states(client)
  await until(() => changes.length >= 3, 5000, 'retries')
  t.ok(changes.every((change) => change.state === 'reconnecting'))
  client.close()
  await client.closed
  const once = createSseClient(`http://127.0.0.1:${port}/s`, { backoff: false })
  t.equal((await once.closed).error?.code, 'DISCONNECTED')
})

t.test('shouldReconnect overrides the table both ways', async (t) => {
  const server = await serve(t, statusRoute([404, 500]), { ws: false })
  const infos: unknown[] = []
  const client = createSseClient(`${server.url}/s`, {
    backoff: FAST,
    shouldReconnect: (info) => { infos.push(info); return info.status === 404 ? true : info.status === 500 ? false : undefined }
  })
  const { status } = await client.closed
  t.equal(status, 500)
  t.same(infos, [{ code: undefined, status: 404, reason: undefined, opened: false }, { code: undefined, status: 500, reason: undefined, opened: false }])
})

t.test('a failing source: realtime.error reaches onState with its code, and the client reconnects', async (t) => {
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => reply.sse((async function * () {
      throw new Error('secret')
    })()))
  }, { ws: false })
  const client = createSseClient(`${server.url}/s`, { backoff: FAST })
  const changes = states(client)
  await until(() => changes.some((change) => change.state === 'reconnecting'), 5000, 'the end of the stream')
  client.close()
  const dropped = changes.find((change) => change.state === 'reconnecting')!
  t.equal(dropped.error?.code, 'SOURCE_ERROR')
  t.notMatch(dropped.error?.message, /secret/)
})

t.test('token() failing backs off with the error; headers are sent with every request', async (t) => {
  const seen: unknown[] = []
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => {
      seen.push([request.headers['x-app'], request.headers.authorization])
      reply.sse().send('ok', 'yes')
    })
  }, { ws: false })
  let calls = 0
  const client = createSseClient(`${server.url}/s`, {
    backoff: FAST,
    headers: { 'x-app': 'demo' },
    token: async () => { if (++calls === 1) throw new Error('auth server down'); return 'tok' }
  })
  t.teardown(() => client.close())
  const changes = states(client)
  await new Promise((resolve) => client.on('ok', resolve))
  t.equal(changes[0].error?.code, 'UNAUTHORIZED')
  t.match(changes[0].error?.message, /auth server down/)
  t.same(seen, [['demo', 'Bearer tok']])
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
