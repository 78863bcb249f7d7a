// Runs: the topic events a socket gets in one tick leave in one write, joined once for every socket
// that got the same ones. Whatever breaks a run (another topic's event, a send of the stream's own,
// a close, a socket near its limit) must leave every client with exactly its events, in order.
import { once } from 'node:events'
import { Type } from '@sinclair/typebox'
import t from 'tap'
import WebSocket from 'ws'
import { defineContract, type Connection, type SseStream } from '../../lib/index.js'
import { build, connect, listen } from '../helpers/index.js'
import { buildWs, until, within } from '../helpers/ws.js'

const feed = defineContract({ events: { item: Type.Object({ name: Type.String(), text: Type.String() }), note: Type.String() } })

// Which topics each client holds: the first only "a", the second both, the third only "b".
const SETS: Record<string, string[]> = { one: ['a'], both: ['a', 'b'], other: ['b'] }

/** Publishes, in one tick, a1 b1 a2 b2 ... with `between(n)` run after the n-th "a" event. */
function publishInterleaved (topics: Record<string, any>, count: number, between: (n: number) => void, text = ''): void {
  for (let n = 1; n <= count; n++) {
    topics.a.publish('item', { name: `a${n}`, text })
    between(n)
    topics.b.publish('item', { name: `b${n}`, text })
  }
}

function expected (set: string, count: number, notes: string[] = []): string[] {
  const names: string[] = []
  for (let n = 1; n <= count; n++) {
    if (SETS[set]?.includes('a')) names.push(`a${n}`)
    if (n === 1) names.push(...notes)
    if (SETS[set]?.includes('b')) names.push(`b${n}`)
  }
  return names
}

t.test('SSE: streams on different topics, a send of its own and a close in the same tick each get exactly their events, in order', async (t) => {
  const app = await build(t)
  const topics = { a: app.realtime.topic('a', { contract: feed }), b: app.realtime.topic('b', { contract: feed }) }
  const streams: Record<string, SseStream<typeof feed>> = {}
  const subscribed: Promise<void>[] = []
  app.get('/e/:set', (request, reply) => {
    const set = (request.params as { set: string }).set
    const stream = reply.sse({ contract: feed })
    streams[set] = stream
    subscribed.push(stream.subscribe((SETS[set] as string[]).map((name) => topics[name as 'a' | 'b'])))
  })
  const url = await listen(app)
  const clients = Object.fromEntries(await Promise.all(Object.keys(SETS).map(async (set) => [set, await connect(`${url}/e/${set}`)] as const)))
  await until(() => subscribed.length === 3, 3000, 'the streams')
  await Promise.all(subscribed)
  const count = 5
  publishInterleaved(topics, count, (n) => {
    if (n === 1) streams.one?.send('note', 'own')
  })
  // The end goes after the events written before it.
  streams.other?.close()
  for (const [set, client] of Object.entries(clients)) {
    const names = expected(set, count, set === 'one' ? ['own'] : [])
    const events = await within(client.waitFor(names.length), 5000, `the events of ${set}`)
    t.same(events.map((event) => event.event === 'note' ? JSON.parse(event.data) : JSON.parse(event.data).name), names, `${set}: its events, in order`)
  }
  await within(clients.other?.ended as Promise<void>, 3000, 'the closed stream ends')
  t.equal(clients.other?.response.complete, true, 'the response ended whole, after its events')
  for (const client of Object.values(clients)) client.destroy()
})

t.test('WebSocket: connections on different topics, a send of its own and a close in the same tick each get exactly their events, in order', async (t) => {
  const app = await buildWs(t)
  const topics = { a: app.realtime.topic('a', { contract: feed }), b: app.realtime.topic('b', { contract: feed }) }
  const conns: Record<string, Connection<typeof feed>> = {}
  const subscribed: Promise<void>[] = []
  app.ws('/ws/:set', {
    contract: feed,
    handlers: {},
    onOpen (conn) {
      const set = (conn.request.params as { set: string }).set
      conns[set] = conn
      for (const name of SETS[set] as string[]) subscribed.push(conn.subscribe(topics[name as 'a' | 'b']))
    }
  })
  const url = (await listen(app)).replace('http', 'ws')
  const clients = Object.fromEntries(await Promise.all(Object.keys(SETS).map(async (set) => {
    const ws = new WebSocket(`${url}/ws/${set}`)
    const received: string[] = []
    let closeCode = 0
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data))
      received.push(frame.event === 'note' ? frame.data : frame.data.name)
    })
    ws.on('close', (code) => { closeCode = code })
    await once(ws, 'open')
    return [set, { ws, received, closeCode: () => closeCode }] as const
  })))
  await until(() => subscribed.length === 4, 3000, 'the subscriptions')
  await Promise.all(subscribed)
  const count = 5
  publishInterleaved(topics, count, (n) => {
    if (n === 1) conns.one?.send('note', 'own')
  })
  // The close frame goes after the events written before it.
  conns.other?.close(4000, 'done')
  for (const [set, client] of Object.entries(clients)) {
    const names = expected(set, count, set === 'one' ? ['own'] : [])
    await until(() => client.received.length >= names.length, 5000, `the events of ${set}`)
    t.same(client.received, names, `${set}: its events, in order`)
  }
  await until(() => clients.other?.closeCode() === 4000, 3000, 'the close after the events')
  for (const client of Object.values(clients)) client.ws.close()
})

t.test('a tick of events past the socket\'s high-water mark reaches every client whole and in order', async (t) => {
  const text = 'z'.repeat(700)
  const count = 200 // about 150 KB in one tick: many runs end at the limit
  await t.test('SSE', async (t) => {
    const app = await build(t)
    const topics = { a: app.realtime.topic('a', { contract: feed }), b: app.realtime.topic('b', { contract: feed }) }
    const subscribed: Promise<void>[] = []
    app.get('/e', (request, reply) => { subscribed.push(reply.sse({ contract: feed }).subscribe([topics.a, topics.b])) })
    const url = await listen(app)
    const clients = await Promise.all([1, 2].map(async () => await connect(`${url}/e`)))
    await until(() => subscribed.length === 2, 3000, 'the streams')
    await Promise.all(subscribed)
    publishInterleaved(topics, count, () => {}, text)
    for (const client of clients) {
      const events = await within(client.waitFor(2 * count), 10000, 'every event')
      t.same(events.map((event) => JSON.parse(event.data).name), expected('both', count))
      client.destroy()
    }
  })
  await t.test('WebSocket', async (t) => {
    const app = await buildWs(t)
    const topics = { a: app.realtime.topic('a', { contract: feed }), b: app.realtime.topic('b', { contract: feed }) }
    const subscribed: Promise<void>[] = []
    app.ws('/ws', { contract: feed, handlers: {}, onOpen (conn) { subscribed.push(conn.subscribe(topics.a), conn.subscribe(topics.b)) } })
    const url = (await listen(app)).replace('http', 'ws')
    const clients = await Promise.all([1, 2].map(async () => {
      const ws = new WebSocket(`${url}/ws`)
      const received: string[] = []
      ws.on('message', (data) => received.push(JSON.parse(String(data)).data.name))
      await once(ws, 'open')
      return { ws, received }
    }))
    await until(() => subscribed.length === 4, 3000, 'the subscriptions')
    await Promise.all(subscribed)
    publishInterleaved(topics, count, () => {}, text)
    for (const client of clients) {
      await until(() => client.received.length >= 2 * count, 10000, 'every event')
      t.same(client.received, expected('both', count))
      client.ws.close()
    }
  })
})
