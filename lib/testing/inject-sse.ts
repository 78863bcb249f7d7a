import type { FastifyInstance } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Readable } from 'node:stream'
import { FRT_ERR_TESTING } from '../errors.js'
import { EventStreamParser, type ParsedEvent } from '../protocol/event-stream.js'

/** One event as a browser's EventSource would dispatch it. */
export type SseEvent = ParsedEvent

/** Options of {@link injectSSE}. */
export interface InjectSSEOptions {
  /** The path (and query) to request. */
  url: string
  /** @default 'GET' */
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  headers?: OutgoingHttpHeaders
  /** Sent as the `Last-Event-ID` header, as a reconnecting EventSource does. */
  lastEventId?: string
  /** A request body, for POST streams. */
  payload?: string | object | Buffer
  /**
   * How long (ms) the response headers and each `next()` may take before rejecting with `FRT_ERR_TESTING`.
   * @default 5000
   */
  timeout?: number
}

/** An SSE response read through `inject`, event by event. */
export interface InjectedSSE {
  statusCode: number
  headers: OutgoingHttpHeaders
  /** The next event; rejects with `FRT_ERR_TESTING` when the stream ends first or the timeout passes. */
  next (): Promise<SseEvent>
  /** The remaining events, until the stream ends. */
  events (): AsyncIterable<SseEvent>
  /** Simulates the client leaving; resolves once the server has seen it. */
  close (): Promise<void>
  /** The last event ID a browser would send on reconnect (`''` before any `id:` field). */
  readonly lastEventId: string
  /** The reconnection delay set by the server's last `retry:` field, if any. */
  readonly retry: number | undefined
  /** Resolves when the server ends the stream (or `close()` is called). */
  readonly ended: Promise<void>
}

interface Waiter {
  resolve: (event: SseEvent) => void
  reject: (err: Error) => void
  timer: NodeJS.Timeout
}

/**
 * Opens an SSE route through `app.inject()` (no network) and reads it as a browser would.
 *
 * @example
 * const sse = await injectSSE(app, { url: '/events' })
 * t.same(await sse.next(), { event: 'tick', data: '{"n":1}', id: undefined })
 * await sse.close()
 */
export async function injectSSE (app: FastifyInstance, options: InjectSSEOptions): Promise<InjectedSSE> {
  const timeout = options.timeout ?? 5000
  const controller = new AbortController()
  const headers: OutgoingHttpHeaders = { accept: 'text/event-stream', ...options.headers }
  if (options.lastEventId !== undefined) headers['last-event-id'] = options.lastEventId

  let timer: NodeJS.Timeout | undefined
  const response = await Promise.race([
    app.inject({
      method: options.method ?? 'GET',
      url: options.url,
      headers: headers as Record<string, string>,
      payload: options.payload,
      payloadAsStream: true,
      signal: controller.signal
    }),
    new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        controller.abort()
        reject(new FRT_ERR_TESTING(`injectSSE: no response headers from ${options.url} within ${timeout} ms`))
      }, timeout)
    })
  ]).finally(() => clearTimeout(timer))

  const queue: SseEvent[] = []
  const waiters: Waiter[] = []
  let done = false
  let resolveEnded!: () => void
  const ended = new Promise<void>((resolve) => { resolveEnded = resolve })
  const parser = new EventStreamParser((event) => {
    const waiter = waiters.shift()
    if (waiter === undefined) {
      queue.push(event)
      return
    }
    clearTimeout(waiter.timer)
    waiter.resolve(event)
  })
  const stream = response.stream() as Readable
  const onEnd = (): void => {
    if (done) return
    done = true
    parser.end()
    for (const waiter of waiters.splice(0)) {
      clearTimeout(waiter.timer)
      waiter.reject(new FRT_ERR_TESTING('injectSSE: the stream ended before the next event'))
    }
    resolveEnded()
  }
  stream.on('data', (chunk: Buffer) => parser.push(chunk))
  stream.on('end', onEnd)
  stream.on('error', onEnd)
  stream.on('close', onEnd)

  function next (): Promise<SseEvent> {
    const event = queue.shift()
    if (event !== undefined) return Promise.resolve(event)
    if (done) return Promise.reject(new FRT_ERR_TESTING('injectSSE: the stream has ended'))
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1)
          reject(new FRT_ERR_TESTING(`injectSSE: no event within ${timeout} ms`))
        }, timeout)
      }
      waiters.push(waiter)
    })
  }

  return {
    statusCode: response.statusCode,
    headers: response.headers,
    next,
    async * events () {
      while (true) {
        let event: SseEvent
        try {
          event = await next()
        } catch (err) {
          if (done) return
          throw err
        }
        yield event
      }
    },
    async close () {
      controller.abort()
      stream.destroy()
      onEnd()
      // Let the abort reach the server's 'close' and 'error' listeners before resolving.
      await new Promise((resolve) => setImmediate(resolve))
    },
    get lastEventId () { return parser.lastEventId },
    get retry () { return parser.retry },
    ended
  }
}
