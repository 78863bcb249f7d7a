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
