import http from 'node:http'
import net from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { fastifySse, memoryBroker, type Broker, type FastifySseOptions } from '../../lib/index.js'

/** An app with fastifySse registered (heartbeat off unless asked), closed when the test ends. */
export async function build (t: Test, options: FastifySseOptions = {}, serverOptions: FastifyServerOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, ...serverOptions })
  await app.register(fastifySse, { heartbeat: 0, ...options })
  t.teardown(() => app.close())
  return app
}

/**
 * Records every uncaughtException and unhandledRejection until the test (or file) `t` ends: the
 * caller asserts the list is empty.
 */
export function recordEscapes (t: Test): unknown[] {
  const escaped: unknown[] = []
  const onEscape = (err: unknown): void => { escaped.push(err) }
  process.on('uncaughtException', onEscape)
  process.on('unhandledRejection', onEscape)
  t.teardown(() => {
    process.off('uncaughtException', onEscape)
    process.off('unhandledRejection', onEscape)
  })
  return escaped
}

/** A loopback port free right now, for a server whose port must be known before it listens. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Listens on a private loopback port; returns the base URL. */
export async function listen (app: { listen: (options: { port: number, host: string }) => Promise<string> }): Promise<string> {
  return app.listen({ port: 0, host: '127.0.0.1' })
}

/** A log destination that keeps every line, for asserting what the library logged. */
export function captureLogs (): { stream: { write: (line: string) => void }, lines: Array<Record<string, any>> } {
  const lines: Array<Record<string, any>> = []
  return { stream: { write: (line: string) => { lines.push(JSON.parse(line)) } }, lines }
}

/** An SSE client over a real socket, parsed by eventsource-parser (a parser this project did not write). */
export interface RealClient {
  response: http.IncomingMessage
  raw: string
  /** Every event but `realtime.position`, whose ids are in `positions`. */
  events: EventSourceMessage[]
  /** The ids of the `realtime.position` events, in order. */
  positions: string[]
  /** Resolves once `count` events have arrived in total. */
  waitFor (count: number): Promise<EventSourceMessage[]>
  /** Resolves when the server ends the response or the socket closes. */
  ended: Promise<void>
  destroy (): void
}

export function connect (url: string, headers: http.OutgoingHttpHeaders = {}): Promise<RealClient> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
      const events: EventSourceMessage[] = []
      const positions: string[] = []
      const waiters: Array<{ count: number, resolve: (events: EventSourceMessage[]) => void, reject: (err: Error) => void }> = []
      let done = false
      const parser = createParser({
        onEvent (event) {
          if (event.event === 'realtime.position') {
            positions.push(event.id as string)
            return
          }
          events.push(event)
          for (const waiter of [...waiters]) {
            if (events.length >= waiter.count) {
              waiters.splice(waiters.indexOf(waiter), 1)
              waiter.resolve(events.slice(0, waiter.count))
            }
          }
        }
      })
      const client: RealClient = {
        response,
        raw: '',
        events,
        positions,
        waitFor (count) {
          if (events.length >= count) return Promise.resolve(events.slice(0, count))
          if (done) return Promise.reject(new Error(`stream ended after ${events.length} events, waiting for ${count}`))
          return new Promise((resolve, reject) => waiters.push({ count, resolve, reject }))
        },
        ended: new Promise((resolve) => {
          const end = (): void => {
            if (done) return
            done = true
            for (const waiter of waiters.splice(0)) waiter.reject(new Error(`stream ended after ${events.length} events, waiting for ${waiter.count}`))
            resolve()
          }
          response.on('end', end)
          response.on('close', end)
          response.on('error', end)
        }),
        destroy () { request.destroy() }
      }
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        client.raw += chunk
        parser.feed(chunk)
      })
      resolve(client)
    })
    request.on('error', reject)
  })
}

/** Resolves on the next turn of the event loop after pending I/O callbacks. */
export function tick (): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** A raw TCP client that sends a GET and leaves reading to the caller (pause() it to stop reading). */
export async function rawRequest (baseUrl: string, path: string, headers: Record<string, string> = {}): Promise<net.Socket> {
  const { hostname, port } = new URL(baseUrl)
  const socket = net.connect(Number(port), hostname)
  await new Promise((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const lines = [`GET ${path} HTTP/1.1`, `host: ${hostname}:${port}`, 'accept: text/event-stream', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
  socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  socket.on('error', () => {})
  return socket
}

/** A promise with its resolve function. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((_resolve) => { resolve = _resolve })
  return { promise, resolve }
}

/** A broker whose history() waits until released, so events can be published during the replay. */
export function slowHistoryBroker (): Broker & { release: () => void, asked: Promise<void> } {
  const inner = memoryBroker()
  const gate = deferred<void>()
  const asked = deferred<void>()
  return {
    publish: (topic, event, data) => inner.publish(topic, event, data),
    listen: (listener) => inner.listen(listener),
    position: () => inner.position(),
    async history (after, topics) {
      const events = await inner.history(after, topics)
      asked.resolve()
      await gate.promise
      return events
    },
    close: () => inner.close(),
    release: () => gate.resolve(),
    asked: asked.promise
  }
}

/** An event as the test helpers parse it. */
interface ParsedSseEvent { event: string, data: string, id: string | undefined }

/**
 * Reads the next event of an injected SSE stream, which must be the `realtime.position` a
 * subscription writes once live; returns its id.
 */
export async function nextPosition (sse: { next: () => Promise<ParsedSseEvent> }): Promise<string> {
  const event = await sse.next()
  if (event.event !== 'realtime.position' || event.data !== '{}' || event.id === undefined) {
    throw new Error(`expected a realtime.position event, got ${JSON.stringify(event)}`)
  }
  return event.id
}

/** Reads the next event of an injected SSE stream that is not a `realtime.position`. */
export async function nextTopicEvent (sse: { next: () => Promise<ParsedSseEvent> }): Promise<ParsedSseEvent> {
  for (;;) {
    const event = await sse.next()
    if (event.event !== 'realtime.position') return event
  }
}
