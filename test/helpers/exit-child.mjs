// Run by test/brokers/redis/exit.test.ts in a process of its own, on the built package (dist/, so
// `npm run build` must run first; npm test does): an app on a redisBroker whose Redis is down
// (argv[2]: its URL) opens an SSE stream, publishes (which rejects), then closes the app and the
// broker, and must then exit by itself. Prints, as JSON, what the publish did and what still kept
// the event loop alive a turn after close().
import Fastify from 'fastify'
import { fastifySse, fastifyWs } from 'fastify-realtime'
import { redisBroker } from 'fastify-realtime/redis'
import { injectSSE } from 'fastify-realtime/testing'

const broker = redisBroker({ url: process.argv[2], commandTimeout: 300 })
const app = Fastify({ logger: false })
await app.register(fastifySse, { heartbeat: 0, broker })
await app.register(fastifyWs, { heartbeat: 0, broker })
const lobby = app.realtime.topic('lobby')
app.get('/sse', (request, reply) => { reply.sse().subscribe(lobby).catch(() => {}) })
await app.ready()
const sse = await injectSSE(app, { url: '/sse' })
const publish = await lobby.publish('message', { n: 1 }).then(() => 'resolved', (err) => err.code)
await app.close()
await broker.close()
await sse.close().catch(() => {})
await new Promise((resolve) => setImmediate(resolve))
const alive = process.getActiveResourcesInfo().filter((resource) => resource !== 'PipeWrap' && resource !== 'TTYWrap')
process.stdout.write(JSON.stringify({ publish, alive }) + '\n')
