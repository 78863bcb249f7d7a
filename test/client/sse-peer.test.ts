// The SSE client against a scripted server: reserved events with data a correct server never sends.
import http from 'node:http'
import t from 'tap'
import { createSseClient } from '../../lib/client/index.js'
import { recordEscapes } from '../helpers/index.js'
import { FAST, states, until } from '../helpers/client.js'

const escaped = recordEscapes(t)

t.test('a reset without topics and an error without a code still reach their listeners', async (t) => {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/event-stream' })
    response.end('event: realtime.reset\ndata: {}\n\nevent: realtime.error\ndata: null\n\n')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { port } = server.address() as { port: number }
  const client = createSseClient(`http://127.0.0.1:${port}/`, { backoff: FAST })
  const resets: unknown[] = []
  client.onReset((info) => { resets.push(info) })
  const changes = states(client)
  await until(() => changes.some((change) => change.state === 'reconnecting'), 5000, 'the end of the stream')
  client.close()
  t.same(resets, [{ topics: [] }])
  t.equal(changes.find((change) => change.state === 'reconnecting')?.error?.name, 'RealtimeClientError')
})

t.test('no uncaught error, no unhandled rejection', async (t) => {
  t.same(escaped.map(String), [])
})
