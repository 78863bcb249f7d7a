import t from 'tap'
import { createSseClient } from '../../lib/client/index.js'
import { freePort, recordEscapes } from '../helpers/index.js'
import { serve, states, until } from '../helpers/client.js'

t.test('in a browser, going back online retries at once instead of waiting for the backoff', async (t) => {
  // A browser's global is an EventTarget that fires 'online'; Node's is not.
  const target = new EventTarget()
  const host = globalThis as any
  host.addEventListener = target.addEventListener.bind(target)
  host.removeEventListener = target.removeEventListener.bind(target)
  t.teardown(() => {
    delete host.addEventListener
    delete host.removeEventListener
  })
  const port = await freePort()
  const client = createSseClient(`http://127.0.0.1:${port}/s`, { backoff: { initialMs: 600_000, maxMs: 600_000 } })
  const changes = states(client)
  target.dispatchEvent(new Event('online'))
  await until(() => changes.length === 1, 5000, 'the first failure')
  t.equal(changes[0].state, 'reconnecting')
  target.dispatchEvent(new Event('online'))
  await until(() => changes.length === 2, 5000, 'an attempt at once, then a failure')
  client.close()
  await client.closed
  target.dispatchEvent(new Event('online'))
  t.equal(changes.length, 3, 'a closed client no longer listens')
  t.equal(changes[2].state, 'closed')
})

t.test('a listener that throws does not stop the others nor the client: its error is reported on its own', async (t) => {
  const escaped = recordEscapes(t)
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => {
      const stream = reply.sse()
      stream.send('x', 'one')
      stream.send('x', 'two')
    })
  }, { ws: false })
  const client = createSseClient(`${server.url}/s`)
  t.teardown(() => client.close())
  const got: unknown[] = []
  const remove = client.on('x', () => { throw new Error('listener bug') })
  client.on('x', (data) => { got.push(data) })
  await until(() => got.length === 2, 5000, 'both events')
  remove()
  t.same(got, ['one', 'two'])
  t.equal(escaped.length, 2)
  t.match((escaped[0] as Error).message, 'listener bug')
  escaped.length = 0
})

t.test('close() while token() is pending: no attempt is made', async (t) => {
  const server = await serve(t, (app) => { app.get('/s', (request, reply) => { reply.sse() }) }, { ws: false })
  let release!: (token: string | null) => void
  const client = createSseClient(`${server.url}/s`, { token: () => new Promise((resolve) => { release = resolve }) })
  await until(() => release !== undefined, 5000, 'token() called')
  client.close()
  release('late')
  t.same(await client.closed, { code: 1000 })
  t.equal(server.seen.requests, 0)
})

t.test('token() returning null sends no Authorization', async (t) => {
  const seen: unknown[] = []
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => { seen.push(request.headers.authorization); reply.sse().send('ok', '1') })
  }, { ws: false })
  const client = createSseClient(`${server.url}/s`, { token: () => null })
  t.teardown(() => client.close())
  await new Promise((resolve) => client.on('ok', resolve))
  t.same(seen, [undefined])
})

t.test('a listener that closes the client: the rest of the chunk is not delivered, and nothing is left running', async (t) => {
  const server = await serve(t, (app) => {
    app.get('/s', (request, reply) => {
      const stream = reply.sse()
      stream.send('x', 'one')
      stream.send('x', 'two')
    })
  }, { ws: false })
  const got: unknown[] = []
  const client = createSseClient(`${server.url}/s`)
  client.on('x', (data) => { got.push(data); client.close() })
  t.same(await client.closed, { code: 1000 })
  t.same(got, ['one'])
})

t.test('a listener that closes the client when it opens: nothing is read', async (t) => {
  const server = await serve(t, (app) => { app.get('/s', (request, reply) => { reply.sse().send('x', 'one') }) }, { ws: false })
  const client = createSseClient(`${server.url}/s`)
  const got: unknown[] = []
  client.on('x', (data) => { got.push(data) })
  client.onState(({ state }) => { if (state === 'open') client.close() })
  t.same(await client.closed, { code: 1000 })
  t.same(got, [])
})
