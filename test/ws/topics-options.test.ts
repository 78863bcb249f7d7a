// The options of client subscriptions, checked at registration: a route's `topics` and
// `maxSubscriptions` (route and plugin).
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifyWs } from '../../lib/index.js'
import { buildWs } from '../helpers/ws.js'

const chat = defineContract({ events: { message: Type.Object({ text: Type.String() }) } })

/** The code and message of what registering a route with these topics throws, or 'did not throw'. */
let routes = 0
function registering (app: any, options: Record<string, unknown>): { code: string, message: string } {
  try {
    app.ws(`/route-${++routes}`, { contract: chat, ...options })
  } catch (err) {
    return err as { code: string, message: string }
  }
  return { code: 'did not throw', message: '' }
}

t.test('topics: keys are topic names or prefixes ending in *, values true or { contract?, authorize? }', async (t) => {
  const app = await buildWs(t)
  const valid: Array<Record<string, unknown>> = [
    {}, { lobby: true }, { 'room:*': true }, { '*': true }, { 'a.b_c-d:e': { authorize: () => true } },
    { 'feed:*': { contract: chat } }, { 'x*': {} }, { [`${'a'.repeat(63)}*`]: true }, { ['a'.repeat(64)]: true }
  ]
  for (const topics of valid) t.equal(registering(app, { topics }).code, 'did not throw', JSON.stringify(topics))
  const invalid: Array<[unknown, RegExp]> = [
    [null, /"topics": expected an object/],
    ['lobby', /"topics": expected an object/],
    [['lobby'], /"topics": expected an object/],
    [{ '': true }, /"topics\[""\]": expected a topic name/],
    [{ 'a b': true }, /expected a topic name/],
    [{ 'realtime.x': true }, /expected a topic name/],
    [{ 'realtime.*': true }, /expected a topic name/],
    [{ 'room:*:*': true }, /expected a topic name/],
    [{ [`${'a'.repeat(64)}*`]: true }, /expected a topic name/],
    [{ ['a'.repeat(65)]: true }, /expected a topic name/],
    [{ lobby: false }, /"topics\["lobby"\]": expected true, or \{ contract\?, authorize\? \}/],
    [{ lobby: 1 }, /expected true, or/],
    [{ lobby: null }, /expected true, or/],
    [{ lobby: [] }, /expected true, or/],
    [{ lobby: { authorise: () => true } }, /unknown key "authorise"/],
    [{ lobby: { authorize: true } }, /"topics\["lobby"\].authorize": expected a function/],
    [{ lobby: { contract: { events: {} } } }, /"topics\["lobby"\].contract": expected a contract made by defineContract\(\)/]
  ]
  for (const [topics, message] of invalid) {
    const err = registering(app, { topics })
    t.equal(err.code, 'FRT_ERR_INVALID_OPTION', JSON.stringify(topics))
    t.match(err.message, message)
  }
})

t.test('maxSubscriptions: a positive integer, on the route or the plugin', async (t) => {
  const app = await buildWs(t)
  t.equal(registering(app, { maxSubscriptions: 1 }).code, 'did not throw')
  for (const value of [0, -1, 1.5, '10', null, Number.POSITIVE_INFINITY]) {
    t.equal(registering(app, { maxSubscriptions: value }).code, 'FRT_ERR_INVALID_OPTION', `route: ${String(value)}`)
    const plugin = Fastify()
    await t.rejects(async () => { await plugin.register(fastifyWs, { maxSubscriptions: value as number }) }, { code: 'FRT_ERR_INVALID_OPTION' }, `plugin: ${String(value)}`)
  }
})

t.test('contracts cannot declare the reserved message names', async (t) => {
  for (const name of ['realtime.subscribe', 'realtime.unsubscribe', 'realtime.ping']) {
    t.throws(() => defineContract({ messages: { [name]: Type.Object({}) } }), { code: 'FRT_ERR_INVALID_NAME' }, name)
  }
})
