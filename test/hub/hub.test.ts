import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/contract.js'
import { attachHub } from '../../lib/hub/attach.js'
import { isBroker, type Broker, type BrokerEvent } from '../../lib/brokers/broker.js'
import { Hub, isTopic, type Encoder, type Subscriber } from '../../lib/hub/hub.js'
import { memoryBroker } from '../../lib/brokers/memory.js'

const chat = defineContract({
  events: { message: Type.Object({ user: Type.String(), text: Type.String({ minLength: 1 }) }) }
})
const other = defineContract({
  events: { message: Type.Object({ user: Type.String(), text: Type.String({ minLength: 1 }) }) }
})

/** A logger that records `error` calls. */
function recordingLogger (): { logger: any, errors: unknown[][] } {
  const errors: unknown[][] = []
  const logger = {
    level: 'info',
    error: (...args: unknown[]) => { errors.push(args) },
    fatal () {},
    warn () {},
    info () {},
    debug () {},
    trace () {},
    silent () {},
    child () { return this }
  }
  return { logger, errors }
}

function newHub (broker: Broker = memoryBroker(), owns = true): { hub: Hub, errors: unknown[][] } {
  const { logger, errors } = recordingLogger()
  return { hub: new Hub(broker, owns, logger), errors }
}

/** A subscriber that records the frames it is given. */
function recorder<F> (): Subscriber<F> & { frames: F[] } {
  const frames: F[] = []
  return { frames, deliver (frame: F) { frames.push(frame) } }
}

/** An encoder that counts its calls. */
function countingEncoder (prefix: string): Encoder<string> & { calls: number } {
  const encoder = Object.assign((event: BrokerEvent) => {
    encoder.calls++
    return `${prefix}:${event.event}:${event.data}`
  }, { calls: 0 })
  return encoder
}

/** The public fields of a broker event. */
function fields (event: BrokerEvent): BrokerEvent {
  return { id: event.id, topic: event.topic, event: event.event, data: event.data }
}

function errorOf (fn: () => unknown): any {
  try {
    fn()
  } catch (err) {
    return err
  }
  return { code: 'did not throw' }
}

t.test('topic() is memoized by name', async (t) => {
  const { hub } = newHub()
  const lobby = hub.topic('lobby', { contract: chat })
  t.equal(hub.topic('lobby', { contract: chat }), lobby)
  t.equal(lobby.name, 'lobby')
  t.equal(lobby.contract, chat)
  t.ok(isTopic(lobby))
  t.notOk(isTopic({ name: 'lobby', publish () {} }))
  const plain = hub.topic('plain')
  t.equal(hub.topic('plain'), plain)
  t.equal(hub.topic('plain', {}), plain, 'no options and no contract are the same')
  t.equal(plain.contract, undefined)
})

t.test('the same name with another contract throws FRT_ERR_TOPIC_CONTRACT', async (t) => {
  const { hub } = newHub()
  hub.topic('lobby', { contract: chat })
  t.equal(errorOf(() => hub.topic('lobby', { contract: other })).code, 'FRT_ERR_TOPIC_CONTRACT')
  t.equal(errorOf(() => hub.topic('lobby')).code, 'FRT_ERR_TOPIC_CONTRACT', 'no contract is another contract')
  hub.topic('plain')
  t.equal(errorOf(() => hub.topic('plain', { contract: chat })).code, 'FRT_ERR_TOPIC_CONTRACT')
  t.match(errorOf(() => hub.topic('plain', { contract: chat })).message, /"plain"/)
})

t.test('a bad topic name throws FRT_ERR_INVALID_NAME', async (t) => {
  const { hub } = newHub()
  for (const name of ['', 'a b', 'x'.repeat(65), 'realtime.system', 5, undefined]) {
    t.equal(errorOf(() => hub.topic(name as string)).code, 'FRT_ERR_INVALID_NAME', String(name))
  }
})

t.test('topic options that are not an object throw FRT_ERR_INVALID_OPTION', async (t) => {
  const { hub } = newHub()
  for (const options of [null, 'lobby', 5, true]) {
    t.equal(errorOf(() => hub.topic('lobby', options as any)).code, 'FRT_ERR_INVALID_OPTION', String(options))
  }
})

t.test('a contract not made by defineContract throws FRT_ERR_INVALID_OPTION', async (t) => {
  const { hub } = newHub()
  t.equal(errorOf(() => hub.topic('lobby', { contract: { events: {}, messages: {}, replies: {} } })).code, 'FRT_ERR_INVALID_OPTION')
})

t.test('publish validates, serializes and resolves to the broker id', async (t) => {
  const broker = memoryBroker()
  const seen: BrokerEvent[] = []
  broker.listen((event) => seen.push(event))
  const { hub } = newHub(broker)
  const { publish } = hub.topic('lobby', { contract: chat })
  const id = await publish('message', { user: 'ann', text: 'hi' })
  t.same(seen.map(fields), [{ id, topic: 'lobby', event: 'message', data: '{"user":"ann","text":"hi"}' }])
})

t.test('publish rejects (never throws) with FRT_ERR_VALIDATION and FRT_ERR_UNKNOWN_EVENT', async (t) => {
  const broker = memoryBroker()
  const seen: BrokerEvent[] = []
  broker.listen((event) => seen.push(event))
  const { hub } = newHub(broker)
  const lobby = hub.topic('lobby', { contract: chat })
  let invalid: Promise<string> | undefined
  let unknown: Promise<string> | undefined
  t.doesNotThrow(() => { invalid = lobby.publish('message', { user: 'ann', text: '' }) })
  t.doesNotThrow(() => { unknown = (lobby.publish as any)('nope', {}) })
  await t.rejects(invalid as Promise<string>, { code: 'FRT_ERR_VALIDATION', details: [{ path: '/text' }] })
  await t.rejects(unknown as Promise<string>, { code: 'FRT_ERR_UNKNOWN_EVENT' })
  t.same(seen, [], 'nothing reached the broker')
})

t.test('an untyped topic publishes any JSON value', async (t) => {
  const broker = memoryBroker()
  const seen: string[] = []
  broker.listen((event) => seen.push(`${event.event} ${event.data}`))
  const { hub } = newHub(broker)
  const feed = hub.topic('feed')
  await feed.publish('tick', { n: 1 })
  await feed.publish('note', 'text')
  await feed.publish('count', 3)
  t.same(seen, ['tick {"n":1}', 'note "text"', 'count 3'])
})

t.test('an untyped topic rejects a bad event name or unserializable data', async (t) => {
  const { hub } = newHub()
  const feed = hub.topic('feed')
  let bad: Promise<string> | undefined
  t.doesNotThrow(() => { bad = feed.publish('realtime.reset', {}) })
  await t.rejects(bad as Promise<string>, { code: 'FRT_ERR_INVALID_NAME' })
  await t.rejects(feed.publish('big', 1n), { code: 'FRT_ERR_SERIALIZE' })
  await t.rejects(feed.publish('nothing', undefined), { code: 'FRT_ERR_SERIALIZE' })
})

t.test('publish returns a rejected promise even when a broker throws synchronously', async (t) => {
  const broker: Broker = {
    publish () { throw new Error('broker down') },
    listen: () => () => {},
    history: async () => null,
    close: async () => {}
  }
  const { hub } = newHub(broker, false)
  const feed = hub.topic('feed')
  let result: Promise<string>
  try {
    result = feed.publish('tick', 1)
  } catch (err) {
    t.fail(`publish threw synchronously: ${(err as Error).message}`)
    return
  }
  await t.rejects(result, { message: 'broker down' })
})

t.test('publish after the broker closed rejects with FRT_ERR_BROKER_UNAVAILABLE', async (t) => {
  const broker = memoryBroker()
  const { hub } = newHub(broker)
  await broker.close()
  await t.rejects(hub.topic('feed').publish('tick', 1), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
})

t.test('subscribers get the frames of their topic only, in order', async (t) => {
  const { hub } = newHub()
  const encode = countingEncoder('sse')
  const lobby = recorder<string>()
  const elsewhere = recorder<string>()
  hub.add('lobby', encode, lobby)
  hub.add('elsewhere', encode, elsewhere)
  await hub.topic('lobby').publish('a', 1)
  await hub.topic('other').publish('b', 2)
  await hub.topic('lobby').publish('c', 3)
  t.same(lobby.frames, ['sse:a:1', 'sse:c:3'])
  t.same(elsewhere.frames, [])
})

t.test('the encoder runs once per event per encoder, whatever the number of subscribers', async (t) => {
  const { hub } = newHub()
  const sse = countingEncoder('sse')
  const ws = countingEncoder('ws')
  const subscribers = [recorder<string>(), recorder<string>(), recorder<string>()]
  const sockets = [recorder<string>(), recorder<string>(), recorder<string>()]
  for (const subscriber of subscribers) hub.add('lobby', sse, subscriber)
  for (const socket of sockets) hub.add('lobby', ws, socket)
  t.equal(hub.subscriberCount('lobby'), 6)
  await hub.topic('lobby').publish('one', 1)
  await hub.topic('lobby').publish('two', 2)
  t.equal(sse.calls, 2)
  t.equal(ws.calls, 2)
  for (const subscriber of subscribers) t.same(subscriber.frames, ['sse:one:1', 'sse:two:2'])
  for (const socket of sockets) t.same(socket.frames, ['ws:one:1', 'ws:two:2'])
})

t.test('a subscriber receives the frame and the broker event', async (t) => {
  const { hub } = newHub()
  const got: [string, BrokerEvent][] = []
  hub.add('lobby', countingEncoder('x'), { deliver (frame: string, event) { got.push([frame, event]) } })
  const id = await hub.topic('lobby').publish('a', 1)
  t.same(got.map(([frame, event]) => [frame, fields(event)]), [['x:a:1', { id, topic: 'lobby', event: 'a', data: '1' }]])
})

t.test('the hub listens to the broker once, on the first subscriber', async (t) => {
  const broker = memoryBroker()
  let listens = 0
  const spy: Broker = {
    publish: (...args) => broker.publish(...args),
    listen: (listener) => { listens++; return broker.listen(listener) },
    history: (...args) => broker.history(...args),
    close: () => broker.close()
  }
  const { hub } = newHub(spy)
  hub.topic('lobby')
  t.equal(listens, 0, 'a topic alone does not listen')
  hub.add('lobby', countingEncoder('a'), recorder())
  hub.add('other', countingEncoder('b'), recorder())
  t.equal(listens, 1)
})

t.test('remove() stops delivery and cleans up; removing what is not there is a no-op', async (t) => {
  const { hub } = newHub()
  const encode = countingEncoder('sse')
  const one = recorder<string>()
  const two = recorder<string>()
  hub.add('lobby', encode, one)
  hub.add('lobby', encode, two)
  hub.remove('lobby', encode, one)
  t.equal(hub.subscriberCount('lobby'), 1)
  await hub.topic('lobby').publish('a', 1)
  t.same(one.frames, [])
  t.same(two.frames, ['sse:a:1'])
  hub.remove('lobby', encode, two)
  t.equal(hub.subscriberCount('lobby'), 0)
  t.equal((hub as any).routes.size, 0, 'no empty maps are left behind')
  await hub.topic('lobby').publish('b', 2)
  t.equal(encode.calls, 1, 'no encoding without subscribers')
  t.doesNotThrow(() => {
    hub.remove('lobby', encode, two)
    hub.remove('nowhere', encode, two)
    hub.add('lobby', encode, one)
    hub.remove('lobby', countingEncoder('other'), one)
    hub.remove('lobby', encode, recorder())
  })
  t.equal(hub.subscriberCount('lobby'), 1)
  t.equal(hub.subscriberCount('nowhere'), 0)
})

t.test('removing the last subscriber of one encoder keeps the other encoders of the topic', async (t) => {
  const { hub } = newHub()
  const sse = countingEncoder('sse')
  const ws = countingEncoder('ws')
  const stream = recorder<string>()
  const socket = recorder<string>()
  hub.add('lobby', sse, stream)
  hub.add('lobby', ws, socket)
  hub.remove('lobby', sse, stream)
  t.equal(hub.subscriberCount('lobby'), 1)
  await hub.topic('lobby').publish('a', 1)
  t.same(socket.frames, ['ws:a:1'])
  t.equal(sse.calls, 0)
})

t.test('clientTopic(): a topic for client subscriptions, forgotten once its last subscriber leaves', async (t) => {
  const { hub } = newHub()
  const encode = countingEncoder('ws')
  const one = recorder<string>()
  const two = recorder<string>()
  const topic = hub.clientTopic('room:1', chat)
  t.ok(isTopic(topic))
  t.equal(hub.clientTopic('room:1', chat), topic, 'memoized while held')
  hub.add('room:1', encode, one)
  hub.add('room:1', encode, two)
  hub.remove('room:1', encode, one)
  t.ok(hub.hasTopic('room:1'), 'held by a subscriber')
  hub.remove('room:1', encode, two)
  t.notOk(hub.hasTopic('room:1'), 'forgotten with its last subscriber')
  t.not(hub.clientTopic('room:1', other), topic, 'a later one is a new topic, of any contract')
  t.throws(() => hub.clientTopic('room:1', chat), { code: 'FRT_ERR_TOPIC_CONTRACT' }, 'while it exists, one contract')
  t.throws(() => hub.clientTopic('bad name', chat), { code: 'FRT_ERR_INVALID_NAME' })
})

t.test('a topic the app asked for by name is never forgotten, whoever made it first', async (t) => {
  const { hub } = newHub()
  const encode = countingEncoder('ws')
  const subscriber = recorder<string>()
  const made = hub.clientTopic('room:1', chat)
  t.equal(hub.topic('room:1', { contract: chat }), made, 'the app gets the topic a client made')
  hub.add('room:1', encode, subscriber)
  hub.remove('room:1', encode, subscriber)
  t.ok(hub.hasTopic('room:1'), 'kept: the app asked for it')
  const own = hub.topic('lobby', { contract: chat })
  t.equal(hub.clientTopic('lobby', chat), own, 'clients get the app\'s topic')
  hub.add('lobby', encode, subscriber)
  hub.remove('lobby', encode, subscriber)
  t.equal(hub.topic('lobby', { contract: chat }), own, 'and it stays')
})

t.test('an encoder that throws is logged and the other encoders still deliver', async (t) => {
  const broker = memoryBroker()
  const { hub, errors } = newHub(broker)
  const strict: Encoder<unknown> = (event) => JSON.parse(event.data)
  const lenient = countingEncoder('raw')
  const a = recorder<unknown>()
  const b = recorder<string>()
  hub.add('lobby', strict, a)
  hub.add('lobby', lenient, b)
  const id = await broker.publish('lobby', 'bad', 'not json')
  t.same(a.frames, [])
  t.same(b.frames, ['raw:bad:not json'])
  t.equal(errors.length, 1)
  t.match(errors[0], [{ err: SyntaxError, topic: 'lobby', eventId: id }, /cannot encode/])
  await broker.publish('lobby', 'good', '{"ok":true}')
  t.same(a.frames, [{ ok: true }], 'the failing encoder still works for later events')
})

t.test('close() stops delivery and closes an owned broker', async (t) => {
  const broker = memoryBroker()
  const { hub } = newHub(broker, true)
  const subscriber = recorder<string>()
  hub.add('lobby', countingEncoder('sse'), subscriber)
  await hub.close()
  t.equal(hub.subscriberCount('lobby'), 0)
  await t.rejects(broker.publish('lobby', 'a', '1'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
  t.same(subscriber.frames, [])
})

t.test('close() stops delivery but does not close a borrowed broker', async (t) => {
  const broker = memoryBroker()
  t.teardown(() => broker.close())
  const { hub } = newHub(broker, false)
  const subscriber = recorder<string>()
  hub.add('lobby', countingEncoder('sse'), subscriber)
  await hub.close()
  t.ok(await broker.publish('lobby', 'a', '1'), 'the broker still takes events')
  t.same(subscriber.frames, [], 'but the hub delivers nothing')
  await hub.close()
  t.pass('closing twice is harmless')
})

t.test('isBroker recognizes the broker shape', async (t) => {
  t.ok(isBroker(memoryBroker()))
  for (const value of [null, undefined, 'broker', {}, { publish () {}, listen () {}, history () {} }]) {
    t.notOk(isBroker(value), String(value))
  }
})

t.test('attachHub', async (t) => {
  t.test('an invalid broker option throws FRT_ERR_INVALID_OPTION', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    for (const broker of [null, {}, 'redis', 5]) {
      t.equal(errorOf(() => attachHub(app, broker)).code, 'FRT_ERR_INVALID_OPTION', String(broker))
    }
    t.notOk(app.hasDecorator('realtime'))
  })

  t.test('decorates fastify.realtime with the hub', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    const hub = attachHub(app, undefined)
    t.ok(hub instanceof Hub)
    t.equal((app as any).realtime, hub)
    t.ok(hub.ownsBroker, 'the default broker is owned')
  })

  t.test('a second attach with the same broker (or none) returns the same hub', async (t) => {
    const app = Fastify()
    const broker = memoryBroker()
    t.teardown(() => app.close())
    t.teardown(() => broker.close())
    const hub = attachHub(app, broker)
    t.equal(hub.broker, broker)
    t.notOk(hub.ownsBroker)
    t.equal(attachHub(app, broker), hub)
    t.equal(attachHub(app, undefined), hub)
  })

  t.test('a second attach with a different broker throws FRT_ERR_BROKER_CONFLICT', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    attachHub(app, undefined)
    t.equal(errorOf(() => attachHub(app, memoryBroker())).code, 'FRT_ERR_BROKER_CONFLICT')
  })

  t.test('a realtime decorator that is not a hub throws FRT_ERR_BROKER_CONFLICT', async (t) => {
    const app = Fastify()
    t.teardown(() => app.close())
    app.decorate('realtime', { something: 'else' } as any)
    t.equal(errorOf(() => attachHub(app, undefined)).code, 'FRT_ERR_BROKER_CONFLICT')
  })

  t.test('app.close() closes the owned default broker', async (t) => {
    const app = Fastify()
    const hub = attachHub(app, undefined)
    await app.ready()
    await app.close()
    await t.rejects(hub.broker.publish('lobby', 'a', '1'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' })
  })

  t.test('app.close() leaves a broker the user passed in open', async (t) => {
    const app = Fastify()
    const broker = memoryBroker()
    t.teardown(() => broker.close())
    attachHub(app, broker)
    await app.ready()
    await app.close()
    t.ok(await broker.publish('lobby', 'a', '1'))
  })

  t.test('the hub logs with the instance logger', async (t) => {
    const { logger, errors } = recordingLogger()
    const app = Fastify({ loggerInstance: logger })
    t.teardown(() => app.close())
    const hub = attachHub(app, undefined)
    hub.add('lobby', () => { throw new Error('encoder bug') }, recorder())
    await hub.broker.publish('lobby', 'a', '1')
    t.equal(errors.length, 1)
  })
})
