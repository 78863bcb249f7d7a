// @ts-check
// Every example, with a page for each: `npm start`, then open the URL it logs.
//
// Run:  npm start                                  (builds dist/, then serves http://127.0.0.1:3000)
//       HOST=127.0.0.1 PORT=3100 CORS_PORT=3101 ECHO_PORT=3102 node examples/demo.js   (after npm run build)
// The CORS page is served from a second port (CORS_PORT, default PORT + 1): another origin than
// the streams'. Open the pages through HOST as given: the CORS allowlist holds that exact origin.
// The secure echo is served over HTTPS on a third port (ECHO_PORT, default PORT + 2) with the
// self-signed, test-only certificate in examples/certs/: the browser asks to accept it once.

import Fastify from 'fastify'
import { fastifySse, fastifyWs } from 'fastify-realtime'
import aiAnswer from './ai-answer.js'
import asyncapiPage from './asyncapi.js'
import browserClient from './browser-client.js'
import chat from './chat.js'
import counter from './counter.js'
import cors, { corsPage } from './cors.js'
import dashboard from './dashboard.js'
import echo, { testOnlyTls } from './echo-secure.js'
import { HTML, page } from './page.js'

const host = process.env.HOST ?? '127.0.0.1'
const port = Number(process.env.PORT ?? 3000)
const corsPort = Number(process.env.CORS_PORT ?? port + 1)
const echoPort = Number(process.env.ECHO_PORT ?? port + 2)
const origin = `http://${host}:${port}`
const corsOrigin = `http://${host}:${corsPort}`
const echoOrigin = `https://${host}:${echoPort}`

const app = Fastify({ logger: true })
// Once, at the root: every example below shares reply.sse(), app.ws() and fastify.realtime (the
// in-memory broker). No plugin-level authenticate: each WebSocket route brings its own.
// The AsyncAPI document of every stream and socket below is served at /asyncapi.json.
await app.register(fastifySse, {
  asyncapi: {
    path: '/asyncapi.json',
    info: { title: 'fastify-realtime demos', version: '1.0.0', description: 'The streams and sockets of the demo pages.' },
    servers: { http: { host: `${host}:${port}`, protocol: 'http' }, ws: { host: `${host}:${port}`, protocol: 'ws' } }
  }
})
await app.register(fastifyWs)
// fastify-realtime/client for the pages that use it (ticks, chat), once for all of them.
await app.register(browserClient)
await app.register(counter)
await app.register(aiAnswer)
await app.register(cors, { allowedOrigins: [corsOrigin] })
await app.register(chat)
await app.register(dashboard)
await app.register(asyncapiPage)
// prom-client is a dev dependency of this repository (`npm install` brings it): without it /metrics says so.
try {
  await app.register((await import('./metrics.js')).default)
} catch (err) {
  if (/** @type {NodeJS.ErrnoException} */ (err).code !== 'ERR_MODULE_NOT_FOUND') throw err
  app.get('/metrics', (request, reply) => reply.code(503).type('text/plain').send('prom-client is not installed: run npm install (it is a dev dependency of the demo).\n'))
}

const demos = [
  ['/counter', 'A counter: plain messages for onmessage, named ping events for addEventListener, and a 204 that stops reconnection.'],
  ['/ticks', 'A topic read with createSseClient from fastify-realtime/client: events with ids; after a dropped connection or a restart it resumes from Last-Event-ID, every tick once.'],
  [`${corsOrigin}/cors`, 'Cross-origin EventSource with credentials: the page lives on another port, the cookie still flows.'],
  ['/ai', 'An AI-style answer, token by token from an async generator; Stop ends the generation on the server.'],
  [`${echoOrigin}/`, 'The secure echo: a public WebSocket over wss:// that answers every message (accept the self-signed certificate first).'],
  ['/chat', 'A chat on createWsClient: sign in, rooms as client subscriptions that resume after every reconnect, presence; the read-only view of a room is createSseClient on the same contract.'],
  ['/dashboard', 'A live dashboard of this server: connections by transport and messages per second from fastify.realtime.stats(), plotted over SSE, resumed without a gap.'],
  ['/asyncapi', 'The AsyncAPI document of every stream and socket here, rendered (the JSON: /asyncapi.json).'],
  ['/metrics', 'Prometheus metrics from the stats and the diagnostics channels (prom-client).']
]
const index = page('fastify-realtime: demos', `
<ul>
${demos.map(([href, what]) => `  <li><a href="${href}">${href}</a>: ${what}</li>`).join('\n')}
</ul>
<p class="note">Every stream is plain <code>GET</code> + <code>text/event-stream</code>: try them with <code>curl -N</code>.
The WebSocket examples open with a <code>node -e</code> one-liner to poke them.</p>`)
app.get('/', (request, reply) => reply.type(HTML).send(index))

const pageServer = Fastify({ loggerInstance: app.log.child({ server: 'cors-page' }) })
await pageServer.register(corsPage, { streamOrigin: origin })

// Its own server: wss:// needs HTTPS. The certificate is for this demo and the tests only.
const echoServer = Fastify({ https: testOnlyTls(), loggerInstance: app.log.child({ server: 'echo' }) })
await echoServer.register(fastifyWs)
await echoServer.register(echo, { home: `${origin}/` })

// app.close() ends the open streams and sockets at once (each client may reconnect elsewhere or later).
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    app.log.info(`${signal}: closing`)
    Promise.all([app.close(), pageServer.close(), echoServer.close()]).catch((err) => {
      app.log.error({ err }, 'cannot close cleanly')
      process.exitCode = 1
    })
  })
}

await app.listen({ host, port })
await pageServer.listen({ host, port: corsPort })
await echoServer.listen({ host, port: echoPort })
app.log.info(`demos at ${origin}/ (the CORS page at ${corsOrigin}/cors, the secure echo at ${echoOrigin}/)`)
