// Properties of the message router over arbitrary input.
import t from 'tap'
import fc from 'fast-check'
import WebSocket from 'ws'
import { recordEscapes } from '../helpers/index.js'
import { buildWs, openWS, sleep, within } from '../helpers/ws.js'
import { BAD_CODES, echo, echoApp, record } from '../helpers/ws-messages.js'

// Nothing in this file may escape as an uncaughtException or unhandledRejection.
const escaped = recordEscapes(t)

/** True when secure-json-parse refuses the JSON of `value`: a __proto__ key, or constructor.prototype. */
function forbidden (value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  if (Array.isArray(value)) return value.some(forbidden)
  const record = value as Record<string, unknown>
  if (Object.prototype.hasOwnProperty.call(record, '__proto__')) return true
  const ctor = Object.prototype.hasOwnProperty.call(record, 'constructor') ? record.constructor : undefined
  if (ctor !== null && typeof ctor === 'object' && Object.prototype.hasOwnProperty.call(ctor, 'prototype')) return true
  return Object.values(record).some(forbidden)
}

t.test('property: any JSON value sent as data comes back unchanged from an echo handler', async (t) => {
  const { app } = await echoApp(t, { rateLimit: false })
  const ws = await openWS(app, '/echo')
  let checked = 0
  await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 5 }), fc.oneof(fc.string({ maxLength: 20 }), fc.integer()), async (value, id) => {
    ws.sendRaw(JSON.stringify({ type: 'echo', id, data: value }))
    const frame = await ws.nextFrame()
    if (forbidden(value)) {
      // Refused, nothing of it handled; its id is kept so the request is answered.
      if ((frame.error as any)?.code !== 'BAD_JSON' || frame.id !== id) throw new Error(`expected BAD_JSON with id ${JSON.stringify(id)}, got ${JSON.stringify(frame)}`)
      return
    }
    if (frame.id !== id) throw new Error(`answer with id ${JSON.stringify(frame.id)} to ${JSON.stringify(id)}`)
    t.strictSame(frame, { type: 'reply', id, data: JSON.parse(JSON.stringify(value)) })
    checked++
  }), { numRuns: 200 })
  t.ok(checked > 150, `${checked} echoed`)
  t.equal(ws.socket.readyState, WebSocket.OPEN)
})

t.test('property: an arbitrary string as a frame gets at most one answer, and the connection stays usable', async (t) => {
  const { app } = await echoApp(t, { rateLimit: false })
  const ws = await openWS(app, '/echo')
  const seen = record(ws)
  const frameText = fc.oneof(
    fc.string(),
    fc.string({ unit: 'binary' }),
    fc.json(),
    fc.jsonValue().map((data) => JSON.stringify({ type: 'echo', data })),
    // Ids of connectWS's own requests ("c1", "c2", ...) are left out: a raw frame carrying one would
    // answer the pending request of the same id, which is the client's mix-up, not the server's.
    fc.record({ type: fc.oneof(fc.constant('echo'), fc.string()), id: fc.anything().filter((id) => !(typeof id === 'string' && /^c\d+$/.test(id))), data: fc.anything() }).map((value) => {
      try { return JSON.stringify(value) ?? 'undefined' } catch { return '{' }
    })
  )
  let n = 0
  await fc.assert(fc.asyncProperty(frameText, async (text) => {
    const start = seen.length
    ws.sendRaw(text)
    n++
    if (await ws.request('echo', n) !== n) throw new Error('the good message after it was not answered')
    // Answers keep arrival order: the raw frame's answer, if any, came before the good reply.
    const answers = seen.slice(start, -1)
    if (answers.length > 1) throw new Error(`${answers.length} answers to ${JSON.stringify(text)}`)
    const answer = answers[0]
    if (answer === undefined) return
    if (answer.type === 'error' && !BAD_CODES.includes((answer.error as any).code)) {
      throw new Error(`unexpected error ${JSON.stringify(answer)} for ${JSON.stringify(text)}`)
    }
    await ws.nextFrame() // take it from the helper's queue
  }), { numRuns: 200 })
  t.equal(ws.socket.readyState, WebSocket.OPEN, 'never closed: a good message after each keeps the bad count at 1')
})

t.test('property: a burst of arbitrary strings ends open, or closed only with 4400 or 4429', async (t) => {
  const app = await buildWs(t)
  const codes = new Map<string, number[]>()
  app.ws('/echo', {
    contract: echo,
    handlers: { echo: (data) => data },
    rateLimit: { messages: 10, intervalMs: 60000 },
    onClose: (conn, code) => { codes.set(conn.id, [...(codes.get(conn.id) ?? []), code]) }
  })
  let connections = 0
  await fc.assert(fc.asyncProperty(fc.array(fc.oneof(fc.string(), fc.json()), { minLength: 1, maxLength: 40 }), async (texts) => {
    const ws = await openWS(app, '/echo')
    connections++
    for (const text of texts) ws.sendRaw(text)
    const last = await ws.request('echo', 'last').then(() => 'answered', (err) => err.code as string)
    if (last === 'answered' || last === 'RATE_LIMITED') {
      if (ws.socket.readyState !== WebSocket.OPEN) throw new Error(`${last} but not open`)
      await ws.close(4000)
    } else {
      const { code } = await within(ws.closed, 2000, 'the close')
      if (code !== 4400 && code !== 4429) throw new Error(`closed with ${code}`)
    }
  }), { numRuns: 30 })
  await within((async () => { while (codes.size < connections) await sleep(5) })(), 3000, 'every onClose')
  t.ok([...codes.values()].every((list) => list.length === 1 && [4000, 4400, 4429].includes(list[0] as number)), 'onClose ran once per connection, with a documented code')
})

t.test('no uncaughtException or unhandledRejection escaped', async (t) => {
  await sleep(20)
  t.same(escaped.map(String), [])
})
