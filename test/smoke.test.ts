import t from 'tap'
import { build } from './helpers.js'
import { injectSSE } from '../lib/testing.js'

t.test('a push stream sends an event', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => {
    const stream = reply.sse()
    stream.send('hello', 'world')
  })
  const sse = await injectSSE(app, { url: '/e' })
  t.equal(sse.statusCode, 200)
  t.same(await sse.next(), { event: 'hello', data: 'world', id: undefined })
  await sse.close()
})
