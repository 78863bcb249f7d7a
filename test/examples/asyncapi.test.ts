// The AsyncAPI documents of the examples' apps pass @asyncapi/parser with no error and list their
// routes; the demo page renders the document with @asyncapi/react-component from node_modules.
// They import the built package (dist/), so `npm run build` must run first (npm test does).
import t from 'tap'
import Fastify from 'fastify'
import { Parser } from '@asyncapi/parser'
import { fastifySse } from 'fastify-realtime'
import { build as buildAiAnswer } from '../../examples/ai-answer.js'
import asyncapiPage from '../../examples/asyncapi.js'
import { build as buildChat } from '../../examples/chat.js'
import { build as buildCors } from '../../examples/cors.js'
import { build as buildCounter } from '../../examples/counter.js'
import { build as buildDashboard } from '../../examples/dashboard.js'
import { build as buildEcho } from '../../examples/echo-secure.js'

const parser = new Parser()

const examples: Array<[string, () => Promise<import('fastify').FastifyInstance>, string[]]> = [
  ['ai-answer', () => buildAiAnswer(), ['sse-ai-answer']],
  ['chat', () => buildChat(), ['ws-chat-ws', 'sse-chat-rooms-room-events']],
  ['cors', () => buildCors({ allowedOrigins: ['http://127.0.0.1:3001'] }), ['sse-cors-events']],
  ['counter', () => buildCounter(), ['sse-counter-events', 'sse-ticks-events']],
  ['dashboard', () => buildDashboard(), ['sse-dashboard-events']],
  ['echo-secure', () => buildEcho(), ['ws-echo']]
]

for (const [name, build, channels] of examples) {
  t.test(`examples/${name}.js: a valid document of its routes`, async (t) => {
    const app = await build()
    t.teardown(() => app.close())
    await app.ready()
    const document = app.realtime.asyncapi({ info: { title: name, version: '1.0.0' } })
    const errors = (await parser.validate(document as any)).filter((diagnostic) => diagnostic.severity === 0)
    t.same(errors.map((error) => `${error.code}: ${error.message} at ${error.path.join('.')}`), [])
    t.same(Object.keys(document.channels), channels)
  })
}

t.test('examples/asyncapi.js: the page loads the viewer from node_modules and points it at the JSON', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse, { asyncapi: { path: '/docs.json' } })
  await app.register(asyncapiPage, { documentUrl: '/docs.json' })
  const page = await app.inject('/asyncapi')
  t.equal(page.statusCode, 200)
  t.match(page.body, 'AsyncApiStandalone.render')
  t.match(page.body, '"/docs.json"')
  const viewer = await app.inject('/asyncapi/viewer.js')
  t.equal(viewer.statusCode, 200)
  t.match(viewer.headers['content-type'], /^text\/javascript/)
  t.ok(viewer.body.length > 100000, 'the standalone bundle')
  t.equal((await app.inject('/asyncapi/viewer.css')).statusCode, 200)
  t.equal((await app.inject('/docs.json')).json().asyncapi, '3.0.0')
})
