// @ts-check
// SSE baseline: node:http alone. GET /events answers 200 with the event-stream headers at once and
// joins the set of clients; publishing formats one `event: tick\ndata: <JSON>\n\n` string per event
// and writes it to every response (the usual broadcast loop).

import http from 'node:http'
import { EVENT, closeHttp, listenHttp, serve } from './harness.mjs'

await serve(async () => {
  /** @type {Set<http.ServerResponse>} */
  const clients = new Set()
  const server = http.createServer((request, response) => {
    if (request.url !== '/events') {
      response.writeHead(404).end()
      return
    }
    response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' })
    response.flushHeaders()
    clients.add(response)
    response.on('close', () => clients.delete(response))
  })
  return {
    server,
    listen: () => listenHttp(server),
    subscribers: () => clients.size,
    publish (event) {
      const frame = `event: ${EVENT}\ndata: ${JSON.stringify(event)}\n\n`
      for (const response of clients) response.write(frame)
    },
    close: () => closeHttp(server)
  }
})
