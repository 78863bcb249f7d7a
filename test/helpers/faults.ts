// What every fault case asserts, whatever the fault: nothing escapes as an uncaughtException or
// unhandledRejection, app.close() resolves within 2 s (a liveness bound, not a speed measure), and
// the process's handles and timers are back where they were before the case. Timers are counted
// twice: the ref'd ones that process.getActiveResourcesInfo() lists, and every live Timeout, unref'd
// included (the library unrefs its own, so a leaked one would not show in the first count).
import { createHook } from 'node:async_hooks'
import http from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import WebSocket from 'ws'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { sleep, until, within } from './ws.js'

export { until }
import { recordEscapes } from './index.js'

/** The liveness bound of app.close() in every fault case. */
export const CLOSE_WITHIN = 2000

let escaped: unknown[] = []
const liveTimers = new Map<number, { _onTimeout?: { name?: string } }>()
const timerHook = createHook({
  init (asyncId, type, _trigger, resource) { if (type === 'Timeout') liveTimers.set(asyncId, resource as never) },
  destroy (asyncId) { liveTimers.delete(asyncId) }
})

/** Starts watching this file's process; call once, at the top of a fault test file. */
export function watchProcess (t: Test): void {
  escaped = recordEscapes(t)
  timerHook.enable()
  t.teardown(() => { timerHook.disable() })
}

/** Active resources by type, and `Timeout (ref'd or not)`: every timer not yet fired or cleared. */
export function resourceCounts (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1
  let timers = 0
  // Node's own cache of the HTTP Date header (node:_http_outgoing) lives up to 1 s after a response.
  for (const timer of liveTimers.values()) if (timer._onTimeout?.name !== 'resetCache') timers++
  counts['Timeout (ref\'d or not)'] = timers
  return counts
}

/** The resource types above their baseline count, with the excess. */
function excessOver (baseline: Record<string, number>): Record<string, number> {
  const excess: Record<string, number> = {}
  for (const [type, count] of Object.entries(resourceCounts())) {
    if (count > (baseline[type] ?? 0)) excess[type] = count - (baseline[type] ?? 0)
  }
  return excess
}

/** Lets pending closes, fired timers and destroy hooks run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

/**
 * What is still above the baseline once sockets had up to `ms` to finish closing (empty when all is
 * back). The poll's own timer has fired and been reported before each count.
 */
export async function excessAfter (baseline: Record<string, number>, ms: number): Promise<Record<string, number>> {
  const deadline = Date.now() + ms
  for (;;) {
    await settle()
    const excess = excessOver(baseline)
    if (Object.keys(excess).length === 0 || Date.now() > deadline) return excess
    await sleep(20)
  }
}

/** How `promise` stands after at most `ms`: 'resolved', 'rejected: <message>', or 'pending'. */
export async function outcomeWithin (promise: Promise<unknown>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const outcome = await Promise.race([
    promise.then(() => 'resolved', (err: Error) => `rejected: ${err?.message}`),
    new Promise<string>((resolve) => { timer = setTimeout(() => resolve('pending'), ms) })
  ])
  clearTimeout(timer)
  return outcome
}

/** What a case opened, closed for it when it ends. */
export class Scope {
  private readonly t: Test
  private readonly apps = new Set<FastifyInstance>()
  private readonly closing = new Map<FastifyInstance, Promise<void>>()
  private readonly clients = new Set<{ destroy (): void }>()
  private readonly cleanups: Array<() => unknown> = []

  constructor (t: Test) {
    this.t = t
  }

  /** Registers an app, so the case's end closes it (with the 2 s bound) if the case did not. */
  app (app: FastifyInstance): void {
    this.apps.add(app)
  }

  /**
   * app.close(), asserting it resolves within 2 s. Memoized: the case and its end may both call it.
   * A close that takes longer fails the case, and is still waited for (up to 10 s) so nothing leaks.
   */
  close (app: FastifyInstance): Promise<void> {
    let closing = this.closing.get(app)
    if (closing === undefined) {
      this.apps.add(app)
      const started = app.close()
      closing = (async () => {
        const outcome = await outcomeWithin(started, CLOSE_WITHIN)
        this.t.equal(outcome, 'resolved', `app.close() resolves within ${CLOSE_WITHIN} ms`)
        if (outcome === 'pending') await within(started, 10000, 'app.close()').catch(() => {})
      })()
      this.closing.set(app, closing)
    }
    return closing
  }

  /** Destroyed when the case ends, after its apps closed and before resources are compared. */
  track<C extends { destroy (): void }> (client: C): C {
    this.clients.add(client)
    return client
  }

  /** Runs when the case ends, after the clients are destroyed. */
  defer (cleanup: () => unknown): void {
    this.cleanups.push(cleanup)
  }

  async end (): Promise<void> {
    for (const app of this.apps) await this.close(app)
    for (const client of this.clients) client.destroy()
    for (const cleanup of this.cleanups.reverse()) await cleanup()
  }
}

/**
 * A fault case: `fn` runs against real servers and clients it registers with the scope; then every
 * app is closed within 2 s, every client destroyed, and handles, timers and escapes are checked.
 * `settleMs`: how long closing sockets may take to be gone.
 */
export function fault (t: Test, name: string, fn: (t: Test, scope: Scope) => Promise<void>, settleMs = 2000): void {
  t.test(name, async (t) => {
    await settle()
    const baseline = resourceCounts()
    const scope = new Scope(t)
    try {
      await fn(t, scope)
    } finally {
      await scope.end()
    }
    t.same(await excessAfter(baseline, settleMs), {}, 'handles and timers are back to their baseline')
    t.same(escaped.splice(0).map(String), [], 'no uncaughtException or unhandledRejection')
  })
}

/** Blocks the event loop for `ms`, as a long synchronous computation would. */
export function stallEventLoop (ms: number): void {
  const end = Date.now() + ms
  while (Date.now() < end) { /* busy */ }
}

// ---- real clients ----

/** An SSE client over its own socket (no keep-alive agent), parsed by eventsource-parser. */
export interface SseClient {
  /** Every event but `realtime.position`, whose ids are in `positions`. */
  events: EventSourceMessage[]
  positions: string[]
  statusCode: number
  /** True once the response ended with its chunked terminator: a clean end, not a cut. */
  readonly complete: boolean
  /** Resolves when the response ends or its socket closes. */
  ended: Promise<void>
  /** Resolves once `count` events have arrived; rejects after `ms` or when the stream ends first. */
  waitFor (count: number, ms?: number): Promise<void>
  destroy (): void
}

export function sseGet (scope: Scope, url: string, headers: http.OutgoingHttpHeaders = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false, headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      const events: EventSourceMessage[] = []
      const positions: string[] = []
      let done = false
      const wake: Array<() => void> = []
      const parser = createParser({
        onEvent (event) {
          if (event.event === 'realtime.position') positions.push(event.id as string)
          else events.push(event)
          for (const waiter of wake.splice(0)) waiter()
        }
      })
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => parser.feed(chunk))
      response.on('error', () => {})
      const ended = new Promise<void>((resolve) => {
        const end = (): void => {
          done = true
          for (const waiter of wake.splice(0)) waiter()
          resolve()
        }
        response.once('end', end)
        response.once('close', end)
      })
      resolve({
        events,
        positions,
        statusCode: response.statusCode ?? 0,
        get complete () { return response.complete },
        ended,
        waitFor (count, ms = 3000) {
          return within((async () => {
            while (events.length < count) {
              if (done) throw new Error(`the stream ended after ${events.length} events, waiting for ${count}`)
              await new Promise<void>((resolve) => wake.push(resolve))
            }
          })(), ms, `${count} SSE events`)
        },
        destroy () { request.destroy() }
      })
    })
    scope.track(request)
    request.on('error', reject)
  })
}

/** A `ws` client: every frame parsed as JSON, pings answered (ws does), and how it closed. */
export interface WsClient {
  socket: WebSocket
  frames: any[]
  closed: Promise<{ code: number, reason: string }>
  /** Resolves once a frame matching `predicate` has arrived (any frame so far counts). */
  waitFor (predicate: (frame: any) => boolean, ms?: number): Promise<any>
  send (frame: object): void
}

export async function wsOpen (scope: Scope, url: string): Promise<WsClient> {
  const socket = new WebSocket(url.replace(/^http/, 'ws'))
  scope.track({ destroy: () => socket.terminate() })
  socket.on('error', () => {})
  const frames: any[] = []
  const wake: Array<() => void> = []
  let isClosed = false
  socket.on('message', (data: Buffer) => {
    frames.push(JSON.parse(data.toString()))
    for (const waiter of wake.splice(0)) waiter()
  })
  const closed = new Promise<{ code: number, reason: string }>((resolve) => {
    socket.once('close', (code, reason) => {
      isClosed = true
      for (const waiter of wake.splice(0)) waiter()
      resolve({ code, reason: reason.toString() })
    })
  })
  await within(new Promise((resolve, reject) => {
    socket.once('open', resolve)
    socket.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused: ${response.statusCode}`)))
    socket.once('error', reject)
  }), 3000, 'the upgrade')
  return {
    socket,
    frames,
    closed,
    waitFor (predicate, ms = 3000) {
      return within((async () => {
        for (;;) {
          const frame = frames.find(predicate)
          if (frame !== undefined) return frame
          if (isClosed) throw new Error(`the socket closed after ${frames.length} frames`)
          await new Promise<void>((resolve) => wake.push(resolve))
        }
      })(), ms, 'a WebSocket frame')
    },
    send: (frame) => socket.send(JSON.stringify(frame))
  }
}
