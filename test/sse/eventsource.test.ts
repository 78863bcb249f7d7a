import t from 'tap'
import { EventSource } from 'eventsource'
import { Type } from '@sinclair/typebox'
import { defineContract, type SseStream } from '../../lib/index.js'
import { build, listen } from '../helpers/index.js'

// Interop with the `eventsource` package: a WHATWG EventSource this project did not write.

const feed = defineContract({ events: { tick: Type.Object({ n: Type.Integer() }) } })

t.test('EventSource reconnects by itself, sends Last-Event-ID and gets every event exactly once', async (t) => {
  const app = await build(t, { retry: 20 })
  const ticks = app.realtime.topic('ticks', { contract: feed })
  const streams: SseStream[] = []
  const seenIds: Array<string | undefined> = []
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    seenIds.push(stream.lastEventId)
    await stream.subscribe(ticks)
  })
  const url = await listen(app)
  const source = new EventSource(`${url}/e`)
  t.teardown(() => source.close())
  const received: number[] = []
  let opened = 0
  const waiters: Array<() => void> = []
  source.addEventListener('open', () => {
    opened++
    for (const resolve of waiters.splice(0)) resolve()
  })
  const nextOpen = (): Promise<void> => new Promise((resolve) => waiters.push(resolve))
  let wanted = 0
  let gotAll!: () => void
  source.addEventListener('tick', (event) => {
    received.push(JSON.parse(event.data).n)
    if (received.length === wanted) gotAll()
  })

  await nextOpen()
  const batch = async (from: number, to: number): Promise<void> => {
    wanted = to
    const done = new Promise<void>((resolve) => { gotAll = resolve })
    for (let n = from; n < to; n++) await ticks.publish('tick', { n })
    await done
  }
  await batch(0, 5)
  // The server drops the stream, then publishes while the client is away.
  const reopened = nextOpen()
  streams.at(-1)!.close()
  for (let n = 5; n < 10; n++) await ticks.publish('tick', { n })
  await reopened
  await batch(10, 15)
  t.same(received, Array.from({ length: 15 }, (_, n) => n), 'none lost, none repeated, in order')
  t.equal(opened, 2)
  t.equal(seenIds[0], undefined)
  t.match(seenIds[1], /^\d+-\d+$/, 'the reconnect carried Last-Event-ID')
})

t.test('EventSource gets realtime.reset when the server lost its history', async (t) => {
  const app = await build(t)
  const ticks = app.realtime.topic('ticks', { contract: feed })
  app.get('/e', (request, reply) => { reply.sse().subscribe(ticks) })
  const url = await listen(app)
  const source = new EventSource(`${url}/e`, {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, 'last-event-id': '1700000000000-0' } })
  })
  t.teardown(() => source.close())
  const reset = await new Promise<MessageEvent>((resolve) => source.addEventListener('realtime.reset', resolve))
  t.equal(reset.data, '{"topics":["ticks"]}', 'naming the topics of the subscribe() call')
})

t.test('EventSource resumes from the position of topics that had sent nothing: exactly the events published while away', async (t) => {
  const app = await build(t, { retry: 20 })
  const quiet = app.realtime.topic('quiet', { contract: feed })
  const ticks = app.realtime.topic('ticks', { contract: feed })
  const other = app.realtime.topic('other', { contract: feed })
  const streams: SseStream[] = []
  const seenIds: Array<string | undefined> = []
  app.get('/e', async (request, reply) => {
    const stream = reply.sse()
    streams.push(stream)
    seenIds.push(stream.lastEventId)
    await stream.subscribe([quiet, ticks])
  })
  const before = await other.publish('tick', { n: -1 }) // the log is not empty: its newest id is the position
  const url = await listen(app)
  const source = new EventSource(`${url}/e`)
  t.teardown(() => source.close())
  const received: Array<[string, number, string]> = []
  const positions: string[] = []
  const waiters: Array<() => void> = []
  const wake = (): void => { for (const resolve of waiters.splice(0)) resolve() }
  const until = async (done: () => boolean): Promise<void> => { while (!done()) await new Promise<void>((resolve) => waiters.push(resolve)) }
  source.addEventListener('tick', (event) => { received.push([event.lastEventId, JSON.parse(event.data).n, 'tick']); wake() })
  source.addEventListener('realtime.position', (event) => {
    t.equal(event.data, '{}')
    positions.push(event.lastEventId)
    wake()
  })
  await until(() => positions.length === 1)
  t.same(positions, [before], 'the position, before any event of its topics')
  // The server drops the stream; events of both topics are published while the client is away.
  streams[0]?.close()
  const missed = [
    await quiet.publish('tick', { n: 1 }),
    await ticks.publish('tick', { n: 2 }),
    await quiet.publish('tick', { n: 3 })
  ]
  await other.publish('tick', { n: 99 }) // not subscribed: never sent
  await until(() => received.length === 3)
  t.equal(seenIds[1], before, 'the reconnect sent the position as Last-Event-ID')
  t.same(received, [[missed[0], 1, 'tick'], [missed[1], 2, 'tick'], [missed[2], 3, 'tick']], 'exactly the events published since, in order')
  await until(() => positions.length === 2)
  const live = await quiet.publish('tick', { n: 4 })
  await until(() => received.length === 4)
  t.same(received[3], [live, 4, 'tick'], 'then live')
  t.equal(streams.length, 2, 'one reconnect')
})

t.test('a 204 answer stops EventSource from reconnecting', async (t) => {
  const app = await build(t)
  let requests = 0
  app.get('/e', (request, reply) => {
    requests++
    reply.code(204).send()
  })
  const url = await listen(app)
  const source = new EventSource(`${url}/e`)
  await new Promise((resolve) => source.addEventListener('error', resolve))
  t.equal(source.readyState, EventSource.CLOSED)
  t.equal(requests, 1)
  source.close()
})
