import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract, publicError } from '../../lib/index.js'
import { injectSSE } from '../../lib/testing/index.js'
import { build, captureLogs, listen, rawRequest, tick } from '../helpers/index.js'

const llm = defineContract({
  events: {
    token: Type.Object({ text: Type.String() }),
    done: Type.Object({ tokens: Type.Integer() })
  }
})

t.test('an async generator streams its items in order and the stream ends with it', async (t) => {
  const app = await build(t)
  app.get('/tokens', (request, reply) => reply.sse((async function * () {
    yield { event: 'token' as const, data: { text: 'Hel' } }
    yield { event: 'token' as const, data: { text: 'lo' }, id: '1' }
    yield { event: 'done' as const, data: { tokens: 2 }, retry: 500 }
  })(), { contract: llm }))
  const sse = await injectSSE(app, { url: '/tokens' })
  const events = []
  for await (const event of sse.events()) events.push(event)
  t.same(events, [
    { event: 'token', data: '{"text":"Hel"}', id: undefined },
    { event: 'token', data: '{"text":"lo"}', id: '1' },
    { event: 'done', data: '{"tokens":2}', id: undefined }
  ])
  t.equal(sse.retry, 500)
})

t.test('return reply.sse(source) works in an async handler', async (t) => {
  const app = await build(t)
  app.get('/e', async (request, reply) => {
    await tick()
    return reply.sse([{ data: 'plain' }, { data: { b: 2 } }, { event: 'e', data: { a: 1 } }])
  })
  const response = await app.inject({ url: '/e' })
  t.equal(response.statusCode, 200)
  t.equal(response.body, 'data: plain\n\ndata: {"b":2}\n\nevent: e\ndata: {"a":1}\n\n', 'a sync iterable works too; no event means message')
})

t.test('the source is pulled one item at a time, only as fast as the client reads', async (t) => {
  const app = await build(t, { maxBufferedBytes: 1024 * 1024 * 64 })
  let pulled = 0
  let stream!: AbortSignal
  app.get('/e', (request, reply) => {
    reply.sse((async function * () {
      while (true) {
        pulled++
        yield { data: 'x'.repeat(1024) }
      }
    })())
    stream = request.signal
  })
  const socket = await rawRequest(await listen(app), '/e')
  socket.pause() // a client that stops reading
  let previous = -1
  let stable = 0
  for (let i = 0; i < 500 && stable < 5; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    stable = pulled === previous ? stable + 1 : 0
    previous = pulled
  }
  t.equal(stable, 5, `the source stopped being pulled (at ${pulled} items) while the client does not read`)
  socket.resume()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok(pulled > previous, 'pulling resumes when the client reads again')
  socket.destroy()
  await new Promise((resolve) => stream.addEventListener('abort', resolve))
})

t.test('a source that never waits does not hold the event loop', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => reply.sse((function * () {
    for (let i = 0; i < 1000; i++) yield { data: String(i) }
  })()))
  let timers = 0
  const timer = setInterval(() => { timers++ }, 0)
  t.teardown(() => clearInterval(timer))
  const response = await app.inject({ url: '/e' })
  t.equal(response.body.split('\n\n').length - 1, 1000)
  t.ok(timers > 0, 'timers ran while the source was streamed')
})

t.test('a client leaving calls the iterator\'s return() and aborts request.signal', async (t) => {
  const app = await build(t)
  let finalized!: () => void
  const stopped = new Promise<void>((resolve) => { finalized = resolve })
  let signal!: AbortSignal
  app.get('/e', (request, reply) => {
    signal = request.signal
    return reply.sse((async function * () {
      try {
        for (let i = 0; ; i++) {
          yield { event: 'tick', data: i }
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      } finally {
        finalized()
      }
    })())
  })
  const sse = await injectSSE(app, { url: '/e' })
  t.equal((await sse.next()).data, '0')
  await sse.close()
  await stopped
  t.equal(signal.aborted, true, 'request.signal made before reply.sse() still aborts')
})

t.test('a source that only stops when its signal aborts is stopped when the client leaves', async (t) => {
  const app = await build(t)
  let ended!: () => void
  const done = new Promise<void>((resolve) => { ended = resolve })
  app.get('/e', (request, reply) => {
    const { signal } = request
    return reply.sse({
      [Symbol.asyncIterator] () {
        let sent = false
        return {
          next: () => {
            if (!sent) {
              sent = true
              return Promise.resolve({ done: false, value: { data: 'first' } })
            }
            return new Promise((resolve) => signal.addEventListener('abort', () => resolve({ done: true, value: undefined })))
          },
          return: () => {
            ended()
            return Promise.resolve({ done: true, value: undefined })
          }
        }
      }
    })
  })
  const sse = await injectSSE(app, { url: '/e' })
  t.equal((await sse.next()).data, 'first')
  await sse.close()
  await done
  t.pass('return() was called while next() was pending')
})

t.test('a source that throws sends a sanitized realtime.error, logs the error and ends', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  app.get('/e', (request, reply) => reply.sse((async function * () {
    yield { data: 'ok' }
    throw new Error('database password is hunter2')
  })()))
  const sse = await injectSSE(app, { url: '/e' })
  t.same(await sse.next(), { event: 'message', data: 'ok', id: undefined })
  const error = await sse.next()
  t.equal(error.event, 'realtime.error')
  t.same(JSON.parse(error.data), { code: 'SOURCE_ERROR', message: 'The event source failed.' })
  t.notMatch(error.data, /hunter2/)
  await sse.ended
  const logged = logs.lines.find((line) => line.level === 50)
  t.equal(logged?.err.message, 'database password is hunter2', 'the server log keeps the real error')
})

t.test('a public error is sent with its code and message', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => reply.sse((async function * () {
    yield * []
    throw publicError('QUOTA_EXCEEDED', 'You have used all your tokens today')
  })()))
  const sse = await injectSSE(app, { url: '/e' })
  const error = await sse.next()
  t.same(JSON.parse(error.data), { code: 'QUOTA_EXCEEDED', message: 'You have used all your tokens today' })
})

t.test('an invalid item ends the stream like a throwing source', async (t) => {
  const app = await build(t)
  app.get('/typed', (request, reply) => reply.sse([{ event: 'token', data: { text: 1 } }] as any, { contract: llm }))
  app.get('/shape', (request, reply) => reply.sse(['just a string'] as any))
  for (const url of ['/typed', '/shape']) {
    const sse = await injectSSE(app, { url })
    const error = await sse.next()
    t.equal(error.event, 'realtime.error', url)
    t.equal(JSON.parse(error.data).code, 'SOURCE_ERROR')
  }
})

t.test('a return() that throws or rejects is logged, never crashes', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  let mode = 'throw'
  app.get('/e', (request, reply) => reply.sse({
    [Symbol.asyncIterator] () {
      return {
        next: () => new Promise((resolve) => setTimeout(() => resolve({ done: false, value: { data: 'x' } }), 5)),
        return: mode === 'throw'
          ? () => { throw new Error('return threw') }
          : () => Promise.reject(new Error('return rejected'))
      }
    }
  } as any))
  for (mode of ['throw', 'reject']) {
    const sse = await injectSSE(app, { url: '/e' })
    await sse.next()
    await sse.close()
  }
  await new Promise((resolve) => setTimeout(resolve, 20))
  const messages = logs.lines.filter((line) => line.level === 50 && line.msg.startsWith('fastify-realtime')).map((line) => line.err.message)
  t.same(messages.sort(), ['return rejected', 'return threw'])
})

t.test('an iterator without return() is simply dropped', async (t) => {
  const app = await build(t)
  app.get('/e', (request, reply) => reply.sse({
    [Symbol.asyncIterator] () {
      return { next: () => new Promise((resolve) => setTimeout(() => resolve({ done: false, value: { data: 'x' } }), 5)) }
    }
  } as any))
  const sse = await injectSSE(app, { url: '/e' })
  await sse.next()
  await sse.close()
  t.pass('no return() to call')
})

t.test('a handler that throws after the stream opened ends it with realtime.error', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  app.get('/sync', (request, reply) => {
    reply.sse().send('first', 'x')
    throw new Error('sync secret')
  })
  app.get('/async', async (request, reply) => {
    reply.sse().send('first', 'x')
    await tick()
    throw new Error('async secret')
  })
  for (const url of ['/sync', '/async']) {
    const sse = await injectSSE(app, { url })
    t.equal((await sse.next()).event, 'first')
    const error = await sse.next()
    t.equal(error.event, 'realtime.error', url)
    t.same(JSON.parse(error.data), { code: 'SOURCE_ERROR', message: 'The event source failed.' })
    await sse.ended
  }
  const messages = logs.lines.filter((line) => line.level === 50).map((line) => line.err.message)
  t.same(messages, ['sync secret', 'async secret'], 'each logged once')
})

t.test('a handler that throws before reply.sse() gets the usual error response', async (t) => {
  const app = await build(t)
  app.get('/sync', () => { throw new Error('nope') })
  app.get('/async', async () => { throw Object.assign(new Error('nope'), { statusCode: 418 }) })
  app.get('/value', () => 'plain')
  t.equal((await app.inject({ url: '/sync' })).statusCode, 500)
  t.equal((await app.inject({ url: '/async' })).statusCode, 418)
  t.equal((await app.inject({ url: '/value' })).body, 'plain')
})

t.test('a source that rejects because its signal aborted ends quietly', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  let rejected!: () => void
  const done = new Promise<void>((resolve) => { rejected = resolve })
  app.get('/e', (request, reply) => {
    const { signal } = request
    return reply.sse({
      [Symbol.asyncIterator] () {
        let first = true
        return {
          next: () => {
            if (first) {
              first = false
              return Promise.resolve({ done: false, value: { data: 'first' } })
            }
            return new Promise((resolve, reject) => signal.addEventListener('abort', () => {
              reject(signal.reason)
              setImmediate(rejected)
            }))
          }
        }
      }
    })
  })
  const sse = await injectSSE(app, { url: '/e' })
  await sse.next()
  await sse.close()
  await done
  t.notOk(logs.lines.some((line) => line.msg?.startsWith('fastify-realtime')), 'nothing logged as a failure')
})

t.test('an iterable source is cut as a slow consumer when the client stops reading', async (t) => {
  const app = await build(t, { maxBufferedBytes: 64 * 1024 })
  let returned!: () => void
  const stopped = new Promise<void>((resolve) => { returned = resolve })
  app.get('/e', (request, reply) => reply.sse((async function * () {
    try {
      while (true) yield { data: 'q'.repeat(100000) }
    } finally {
      returned()
    }
  })()))
  const socket = await rawRequest(await listen(app), '/e')
  socket.pause()
  await stopped
  t.pass('the source was stopped once the stream was cut')
  socket.destroy()
})

t.test('return reply.sse(source) from a sync handler logs no warning', async (t) => {
  const logs = captureLogs()
  const app = await build(t, {}, { logger: { stream: logs.stream } })
  app.get('/e', (request, reply) => reply.sse([{ data: 'x' }]))
  app.get('/sent', (request, reply) => reply.send('plain'))
  t.equal((await app.inject({ url: '/e' })).body, 'data: x\n\n')
  t.same(logs.lines.filter((line) => line.level >= 40).map((line) => line.msg), [])
  t.equal((await app.inject({ url: '/sent' })).body, 'plain', 'a returned reply without a stream is left to Fastify')
})
