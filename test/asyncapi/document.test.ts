// fastify.realtime.asyncapi(): an AsyncAPI 3.0.0 document that @asyncapi/parser accepts with no
// error, describing every app.ws() route and every declared SSE route, message and reply.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Parser } from '@asyncapi/parser'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse, fastifyWs, type AsyncApiDocument } from '../../lib/index.js'
import { addressOf } from '../../lib/asyncapi/document.js'
import { injectSSE } from '../../lib/testing/index.js'

const parser = new Parser()

/** The parser's errors (severity 0) for a document, as readable lines. */
async function errorsOf (document: unknown): Promise<string[]> {
  const diagnostics = await parser.validate(document as any)
  return diagnostics.filter((diagnostic) => diagnostic.severity === 0)
    .map((diagnostic) => `${diagnostic.code}: ${diagnostic.message} at ${diagnostic.path.join('.')}`)
}

const chat = defineContract({
  events: { message: Type.Object({ user: Type.String(), text: Type.String() }), 'presence:update': Type.Array(Type.String()) },
  messages: { say: Type.Object({ text: Type.String({ minLength: 1 }) }), typing: Type.Unknown() },
  replies: { say: Type.Object({ id: Type.String() }) }
})
const ticks = defineContract({ events: { tick: Type.Integer({ minimum: 1 }) } })

async function build (t: Test) {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyWs, { authenticate: () => ({ name: 'ann' }), heartbeat: 0 })
  await app.register(fastifySse, { heartbeat: 0 })
  await app.register(async (api) => {
    api.ws('/rooms/:room', {
      contract: chat,
      schema: { querystring: Type.Object({ after: Type.Optional(Type.String()) }), headers: Type.Object({ 'x-client': Type.Optional(Type.String()) }) },
      handlers: { say: () => ({ id: '1' }), typing: () => {} },
      topics: { lobby: true, 'room:*': { contract: ticks } }
    } as any)
    api.ws('/public', { authenticate: false })
    api.get('/rooms/:room/events', { sse: { contract: chat } }, (request, reply) => { reply.sse().close() })
    api.get('/ticks', { sse: true, schema: { querystring: Type.Object({ since: Type.Optional(Type.String()) }) } }, (request, reply) => { reply.sse().close() })
    api.get('/plain', (request, reply) => { reply.sse().close() })
  }, { prefix: '/api' })
  return app
}

t.test('before ready(), asyncapi() throws FRT_ERR_ASYNCAPI_NOT_READY', async (t) => {
  const app = await build(t)
  t.throws(() => app.realtime.asyncapi(), { code: 'FRT_ERR_ASYNCAPI_NOT_READY' })
})

t.test('the document passes @asyncapi/parser with no error', async (t) => {
  const app = await build(t)
  await app.ready()
  const document = app.realtime.asyncapi({
    info: { title: 'Chat', version: '2.1.0', description: 'Rooms and ticks' },
    servers: { local: { host: '127.0.0.1:3000', protocol: 'ws', pathname: '/' } }
  })
  t.same(await errorsOf(document), [])
  t.equal(document.asyncapi, '3.0.0')
  t.same(document.info, { title: 'Chat', version: '2.1.0', description: 'Rooms and ticks' })
  t.same(Object.keys(document.servers ?? {}), ['local'])
  t.same(app.realtime.asyncapi().info, { title: 'Realtime API', version: '1.0.0' }, 'a default info')
})

t.test('one channel per app.ws() route and declared SSE route, addressed with their prefix and parameters', async (t) => {
  const app = await build(t)
  await app.ready()
  const { channels } = app.realtime.asyncapi()
  t.same(Object.keys(channels), ['ws-api-rooms-room', 'ws-api-public', 'sse-api-rooms-room-events', 'sse-api-ticks'], 'not /api/plain, which does not declare itself')
  t.equal(channels['ws-api-rooms-room'].address, '/api/rooms/{room}')
  t.same(Object.keys(channels['ws-api-rooms-room'].parameters), ['room'])
  t.notOk('parameters' in channels['ws-api-public'])
  t.same(channels['ws-api-rooms-room'].bindings.ws, {
    method: 'GET',
    query: { type: 'object', properties: { after: { type: 'string' } } },
    headers: { type: 'object', properties: { 'x-client': { type: 'string' } } },
    bindingVersion: '0.1.0'
  })
  for (const channel of Object.values(channels)) t.notOk(channel.address.includes('?'), 'no query in an address')
})

t.test('every event, message and reply of the contracts, once, with whole wire messages as payloads', async (t) => {
  const app = await build(t)
  await app.ready()
  const document = app.realtime.asyncapi()
  const ws = document.channels['ws-api-rooms-room']
  t.same(Object.keys(ws.messages).sort(), [
    'error', 'event.message', 'event.presence_update', 'event.tick', 'hello', 'message.say', 'message.typing',
    'realtime.ping', 'realtime.subscribe', 'realtime.subscribe.reply', 'realtime.unsubscribe', 'realtime.unsubscribe.reply',
    'realtime.ping.reply', 'reply.say', 'reply.typing', 'reset'
  ].sort())
  const say = ws.messages['message.say']
  t.same(say.payload.properties.type, { const: 'say' })
  t.same(say.payload.required, ['type', 'data'], 'a message whose schema needs data')
  t.same(ws.messages['message.typing'].payload.required, ['type'], 'an optional message data')
  t.same(ws.messages['reply.say'].payload.properties.data, { type: 'object', required: ['id'], properties: { id: { type: 'string' } } })
  t.same(ws.messages['event.message'].payload.properties.event, { const: 'message' })
  t.equal(ws.messages['event.presence_update'].name, 'presence:update', 'a name with a colon keeps it; its key does not')
  t.same(ws.messages['realtime.subscribe'].payload.properties.data.properties.topic.anyOf, [{ const: 'lobby' }, { type: 'string', pattern: '^room:' }])
  const sse = document.channels['sse-api-rooms-room-events']
  t.same(Object.keys(sse.messages).sort(), ['event.message', 'event.presence_update', 'realtime.error', 'realtime.position', 'realtime.reset'].sort())
  t.equal(sse.messages['event.message'].contentType, 'text/event-stream')
  t.same(Object.keys(document.channels['sse-api-ticks'].messages).includes('event'), true, 'sse: true has one untyped event')
})

t.test('operations: send for events, receive with a reply and a correlation id for messages, refs inside their channel', async (t) => {
  const app = await build(t)
  await app.ready()
  const { operations, components } = app.realtime.asyncapi()
  const say = operations['ws-api-rooms-room.receive.message.say']
  t.equal(say.action, 'receive')
  t.same(say.messages, [{ $ref: '#/channels/ws-api-rooms-room/messages/message.say' }])
  t.same(say.reply, {
    channel: { $ref: '#/channels/ws-api-rooms-room' },
    messages: [{ $ref: '#/channels/ws-api-rooms-room/messages/reply.say' }, { $ref: '#/channels/ws-api-rooms-room/messages/error' }]
  })
  t.same(say.security, [{ $ref: '#/components/securitySchemes/bearer' }, { $ref: '#/components/securitySchemes/bearerSubprotocol' }])
  t.notOk('security' in operations['ws-api-public.receive.realtime.ping'], 'a public route has no security')
  t.equal(operations['ws-api-rooms-room.send.event.message'].action, 'send')
  t.same(components.correlationIds.messageId.location, '$message.payload#/id')
  t.same(Object.keys(components.securitySchemes), ['bearer', 'bearerSubprotocol'])
  t.same(operations['sse-api-ticks.send.event'].bindings.http, { method: 'GET', query: { type: 'object', properties: { since: { type: 'string' } } }, bindingVersion: '0.3.0' })
  for (const [key, operation] of Object.entries(operations)) {
    const channel = operation.channel.$ref.slice('#/channels/'.length)
    for (const ref of [...operation.messages, ...(operation.reply?.messages ?? [])]) {
      t.ok(ref.$ref.startsWith(`#/channels/${channel}/messages/`), `${key}: ${ref.$ref}`)
    }
  }
})

t.test('app.ws() routes are hidden from @fastify/swagger (schema.hide)', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const hidden: Record<string, unknown> = {}
  app.addHook('onRoute', (route) => { if (route.method === 'GET') hidden[route.url] = (route.schema as { hide?: boolean } | undefined)?.hide })
  await app.register(fastifyWs, { heartbeat: 0, asyncapi: { path: '/asyncapi.json' } })
  app.ws('/socket', { authenticate: false, schema: { description: 'kept' } as any })
  await app.ready()
  t.same(hidden, { '/asyncapi.json': true, '/socket': true })
})

t.test('asyncapi: { path } serves the document as JSON, built once at ready', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse, { asyncapi: { path: '/asyncapi.json', info: { title: 'Ticks', version: '1' } } })
  app.get('/ticks', { sse: { contract: ticks } }, (request, reply) => { reply.sse().close() })
  const response = await app.inject('/asyncapi.json')
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  const document = response.json() as AsyncApiDocument
  t.equal(document.info.title, 'Ticks')
  t.same(Object.keys(document.channels), ['sse-ticks'])
  t.same(await errorsOf(document), [])
})

t.test('a route at the root gets a channel named after its transport', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyWs, { heartbeat: 0 })
  app.ws('/', { authenticate: false })
  await app.ready()
  t.same(Object.keys(app.realtime.asyncapi().channels), ['ws'])
})

t.test('each call returns a fresh copy', async (t) => {
  const app = await build(t)
  await app.ready()
  const first = app.realtime.asyncapi()
  first.channels['ws-api-public'].address = '/changed'
  t.equal(app.realtime.asyncapi().channels['ws-api-public'].address, '/api/public')
})

t.test('a schema with no JSON form fails with FRT_ERR_ASYNCAPI_SCHEMA naming the route and the message', async (t) => {
  const cases: Array<[string, any, RegExp]> = [
    ['a Type.Date event', defineContract({ events: { at: Type.Date() } }), /app\.ws\('\/dates'\) event "at".*at "\/".*the type "Date"/],
    ['a nested Type.Uint8Array', defineContract({ messages: { put: Type.Object({ bytes: Type.Uint8Array() }) } }), /message "put".*at "\/properties\/bytes"/],
    ['a Type.Recursive', defineContract({ replies: { put: Type.Recursive((node) => Type.Object({ children: Type.Array(node) })) }, messages: { put: Type.Null() } }), /reply "put".*at "\/properties\/children\/items".*a reference \("T\d+"\)/]
  ]
  for (const [what, contract, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(fastifyWs, { heartbeat: 0 })
    const handlers = Object.fromEntries(Object.keys(contract.messages).map((name) => [name, () => null]))
    app.ws('/dates', { authenticate: false, contract, handlers } as any)
    await app.ready()
    t.throws(() => app.realtime.asyncapi(), { code: 'FRT_ERR_ASYNCAPI_SCHEMA', message }, what)
  }
  const app = Fastify()
  await app.register(fastifySse, { asyncapi: { path: '/asyncapi.json' } })
  app.get('/big', { sse: { contract: defineContract({ events: { n: Type.BigInt() } }) } }, () => {})
  await t.rejects(async () => { await app.ready() }, { code: 'FRT_ERR_ASYNCAPI_SCHEMA', message: /the SSE route GET \/big event "n"/ }, 'a served document fails ready()')
  await app.close()
})

t.test('values that are data are not read as schemas; a schema that cannot be written fails clearly', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse)
  const cyclic: any = { type: 'object' }
  cyclic.properties = { self: cyclic }
  app.get('/data', { sse: { contract: defineContract({ events: { e: Type.Object({ kind: Type.String({ default: 'x', examples: [{ type: 'Date' }] }) }) } }) } }, () => {})
  await app.ready()
  t.same(app.realtime.asyncapi().channels['sse-data'].messages['event.e'].payload.properties.data.properties.kind.examples, [{ type: 'Date' }])
  const { jsonSchemaOf } = await import('../../lib/asyncapi/schema.js')
  t.throws(() => jsonSchemaOf(cyclic, 'a cyclic schema'), { code: 'FRT_ERR_ASYNCAPI_SCHEMA', message: /a cyclic schema.*cannot be written as JSON/ })
  t.throws(() => jsonSchemaOf({ anyOf: [{ type: 'string' }, { type: 'symbol' }] }, 'x'), { message: /at "\/anyOf\/1"/ })
  t.throws(() => jsonSchemaOf({ properties: { 'a/b~c': { type: 'void' } } }, 'x'), { message: /at "\/properties\/a~1b~0c"/ })
})

t.test('addresses: parameters, regex parameters, escaped colons, wildcards, several parameters in a segment', async (t) => {
  t.same(addressOf('/rooms/:room'), { address: '/rooms/{room}', parameters: ['room'] })
  t.same(addressOf('/files/:id(^\\d+$)/raw'), { address: '/files/{id}/raw', parameters: ['id'] })
  t.same(addressOf('/nested/:id(a(b)c)'), { address: '/nested/{id}', parameters: ['id'] })
  t.same(addressOf('/span/:from-:to'), { address: '/span/{from}-{to}', parameters: ['from', 'to'] })
  t.same(addressOf('/name.:ext'), { address: '/name.{ext}', parameters: ['ext'] })
  t.same(addressOf('/time::now'), { address: '/time:now', parameters: [] })
  t.same(addressOf('/static/*'), { address: '/static/{wildcard}', parameters: ['wildcard'] })
  t.same(addressOf('/broken/:id(open'), { address: '/broken/{id}', parameters: ['id'] })
})

t.test('options are checked: info needs a title and a version, servers need a host and a protocol', async (t) => {
  const app = await build(t)
  await app.ready()
  t.throws(() => app.realtime.asyncapi('x' as any), { code: 'FRT_ERR_INVALID_OPTION' })
  t.throws(() => app.realtime.asyncapi({ info: { title: 'x' } as any }), { code: 'FRT_ERR_INVALID_OPTION', message: /"info"/ })
  t.throws(() => app.realtime.asyncapi({ servers: { a: { host: 'x' } } as any }), { code: 'FRT_ERR_INVALID_OPTION', message: /"servers"/ })
  t.throws(() => app.realtime.asyncapi({ servers: [] as any }), { code: 'FRT_ERR_INVALID_OPTION', message: /"servers"/ })
  const bad = Fastify()
  t.teardown(() => bad.close())
  await t.rejects(async () => { await bad.register(fastifySse, { asyncapi: { path: 'asyncapi.json' } }) }, { code: 'FRT_ERR_INVALID_OPTION', message: /"asyncapi"/ })
  const bad2 = Fastify()
  t.teardown(() => bad2.close())
  await t.rejects(async () => { await bad2.register(fastifyWs, { asyncapi: {} as any }) }, { code: 'FRT_ERR_INVALID_OPTION', message: /"asyncapi"/ })
  const bad3 = Fastify()
  t.teardown(() => bad3.close())
  await t.rejects(async () => { await bad3.register(fastifySse, { asyncapi: '/asyncapi.json' as any }) }, { code: 'FRT_ERR_INVALID_OPTION', message: /"asyncapi"/ }, 'a bare path is not the option')
})

t.test('a route that declares itself with sse: { contract } streams with that contract by default', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse, { heartbeat: 0 })
  app.get('/ticks', { sse: { contract: ticks } }, (request, reply) => {
    const stream = reply.sse()
    t.throws(() => (stream.send as any)('tock', 1), { code: 'FRT_ERR_UNKNOWN_EVENT' }, 'the route contract is in force')
    t.throws(() => (stream.send as any)('tick', 0), { code: 'FRT_ERR_VALIDATION' })
    stream.send('tick' as never, 1 as never)
    stream.close()
  })
  app.get('/other', { sse: { contract: ticks } }, (request, reply) => {
    const stream = reply.sse({ contract: chat })
    stream.send('message', { user: 'a', text: 'b' })
    stream.close()
  })
  app.get('/untyped', { sse: true }, (request, reply) => {
    const stream = reply.sse()
    stream.send('anything', 'goes')
    stream.close()
  })
  await app.ready()
  const ticked = await injectSSE(app, { url: '/ticks' })
  t.same(await ticked.next(), { event: 'tick', data: '1', id: undefined })
  const other = await injectSSE(app, { url: '/other' })
  t.equal((await other.next()).event, 'message', 'an explicit contract overrides the route\'s')
  const untyped = await injectSSE(app, { url: '/untyped' })
  t.same(await untyped.next(), { event: 'anything', data: 'goes', id: undefined })
})

t.test('a declared SSE route keeps its own onSend hooks, given as one function or an array', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse, { heartbeat: 0 })
  const ran: string[] = []
  const hook = (name: string) => async (request: unknown, reply: unknown, payload: unknown) => { ran.push(name); return payload }
  app.get('/one', { sse: true, onSend: hook('one') }, async () => 'not a stream')
  app.get('/many', { sse: true, onSend: [hook('first'), hook('second')] }, async () => 'not a stream')
  await app.ready()
  t.equal((await app.inject('/one')).body, 'not a stream')
  t.equal((await app.inject('/many')).body, 'not a stream')
  t.same(ran, ['one', 'first', 'second'])
  t.equal(app.realtime.stats().totals.rejected, 2, 'an answer without a stream counts as a rejection')
})

t.test('the sse route option is checked at registration', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifySse)
  t.throws(() => app.get('/a', { sse: 'yes' as any }, () => {}), { code: 'FRT_ERR_INVALID_OPTION', message: /"sse"/ })
  t.throws(() => app.get('/b', { sse: { contract: {} as any } }, () => {}), { code: 'FRT_ERR_INVALID_OPTION', message: /"sse.contract"/ })
  app.get('/c', { sse: false as any }, () => {})
  app.route({ method: ['GET', 'POST'], url: '/d', sse: true, handler: () => {} } as any)
  await app.ready()
  t.same(Object.values(app.realtime.asyncapi().operations).map((operation: any) => operation.bindings.http.method).filter((_: string, i: number, all: string[]) => i === 0 || all[i - 1] !== _), ['GET', 'POST'])
})
