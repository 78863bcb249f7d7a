// @ts-check
// A credentialed cross-origin EventSource: a page on one origin opens
// `new EventSource(url, { withCredentials: true })` on another. Headers set with reply.header()
// before reply.sse() go out with the stream, so CORS takes three headers and no plugin.
// An EventSource GET is a simple request (no preflight), so the stream route is the only route.
//
// Run:  npm start   (then open http://127.0.0.1:3001/cors: the page is served from the demo's
//       second port, another origin than the stream's)
// Poke: curl -N -i -H 'Origin: http://127.0.0.1:3001' http://127.0.0.1:3000/cors/events
//       curl -N -i -H 'Origin: https://elsewhere.example' http://127.0.0.1:3000/cors/events
//       (the second gets no access-control-allow-origin: a browser would refuse the stream)

import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse } from 'fastify-realtime'
import { HTML, page } from './page.js'

export const corsContract = defineContract({
  events: {
    hello: Type.Object({
      visitor: Type.String(),
      // True when the request carried the cookie: the proof that credentials crossed origins.
      returning: Type.Boolean(),
      origin: Type.Union([Type.String(), Type.Null()])
    })
  }
})

const VISITOR_COOKIE = /(?:^|;\s*)visitor=([\w-]{1,36})(?:;|$)/

/**
 * @typedef {object} CorsOptions
 * @property {string[]} allowedOrigins exact origins (`scheme://host:port`) that may read the stream with credentials
 */

/**
 * Route: GET /cors/events. Needs `fastifySse` registered on a parent.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {CorsOptions} options
 */
export default async function cors (fastify, { allowedOrigins }) {
  const allowed = new Set(allowedOrigins)

  fastify.get('/cors/events', { sse: { contract: corsContract } }, (request, reply) => {
    const origin = request.headers.origin
    // The answer depends on Origin: a cache must not give one origin's answer to another.
    reply.header('vary', 'Origin')
    if (origin !== undefined && allowed.has(origin)) {
      // Browsers refuse `*` on a credentialed request: echo the one allowed origin, exactly.
      reply.header('access-control-allow-origin', origin)
      reply.header('access-control-allow-credentials', 'true')
    }

    let visitor = VISITOR_COOKIE.exec(request.headers.cookie ?? '')?.[1]
    const returning = visitor !== undefined
    if (visitor === undefined) {
      visitor = randomUUID().slice(0, 8)
      // Ports do not separate sites: 127.0.0.1:3001 and :3000 are two origins of one site, so a
      // SameSite=Lax cookie travels. Across sites it would take `SameSite=None; Secure` (HTTPS).
      reply.header('set-cookie', `visitor=${visitor}; Path=/cors; HttpOnly; SameSite=Lax; Max-Age=86400`)
    }

    const stream = reply.sse({ contract: corsContract })
    stream.send('hello', { visitor, returning, origin: origin ?? null })
  })
}

/**
 * Route: GET /cors, the page, meant for another origin than the stream's.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {{ streamOrigin: string }} options the origin serving GET /cors/events
 */
export async function corsPage (fastify, { streamOrigin }) {
  const html = page('Cross-origin EventSource with credentials', `
<p>This page comes from <code id="page-origin"></code>; it opens
<code>new EventSource('${streamOrigin}/cors/events', { withCredentials: true })</code>.
The server echoes this origin in <code>Access-Control-Allow-Origin</code> with
<code>Access-Control-Allow-Credentials: true</code>, so the browser lets the page read the stream
and sends the server's cookie with it.</p>
<p>Status: <output id="status">connecting…</output></p>
<p id="hello"></p>
<p class="note">Reload: a returning visitor proves the cookie crossed origins. Without
<code>withCredentials</code> the browser would not send it.</p>
<script>
  const $ = (id) => document.getElementById(id)
  $('page-origin').textContent = location.origin
  const source = new EventSource(${JSON.stringify(`${streamOrigin}/cors/events`)}, { withCredentials: true })
  source.onopen = () => { $('status').textContent = 'open' }
  source.onerror = () => {
    $('status').textContent = source.readyState === EventSource.CLOSED
      ? 'refused (the browser console says why)'
      : 'reconnecting…'
  }
  source.addEventListener('hello', (event) => {
    const { visitor, returning } = JSON.parse(event.data)
    $('hello').textContent = returning
      ? 'Welcome back, visitor ' + visitor + ': your cookie came with the request.'
      : 'Hello, visitor ' + visitor + ': the server has just set a cookie; reload to send it back.'
  })
</script>`, { home: `${streamOrigin}/` })

  fastify.get('/cors', (request, reply) => reply.type(HTML).send(html))
}

/**
 * A standalone app serving the stream route, for tests and embedding.
 * @param {CorsOptions} options
 */
export async function build (options) {
  const app = Fastify()
  await app.register(fastifySse)
  await app.register(cors, options)
  return app
}
