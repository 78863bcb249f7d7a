// The SSE client: its own fetch reader, so it can send `Authorization`, see the status and honour
// `Retry-After`, parsed by the library's own event-stream parser; resumes by `Last-Event-ID`.
import { isAfter } from '../protocol/event-id.js'
import { EventStreamParser, type ParsedEvent } from '../protocol/event-stream.js'
import { BEARER_SCHEME, EVENT_STREAM, Header, responseAction, retryAfterMs } from '../protocol/http.js'
import { ReservedEvent } from '../protocol/names.js'
import { RealtimeClientError } from './errors.js'
import { Lifecycle, type End, type EndAction } from './lifecycle.js'
import { emit } from './listeners.js'
import type { ClientContract, ResetInfo, SseClient, SseClientOptions } from './types.js'

function parse (data: string): any {
  try {
    return JSON.parse(data)
  } catch {
    return data
  }
}

class SseClientImpl extends Lifecycle {
  lastEventId: string | undefined
  private readonly url: string
  private readonly sseOptions: SseClientOptions
  private readonly resetListeners = new Set<(info: ResetInfo) => void>()
  private controller: AbortController | undefined
  private watchdog: ReturnType<typeof setTimeout> | undefined
  /** A `realtime.error` the server sent before ending the stream. */
  private failure: RealtimeClientError | undefined

  constructor (url: string, options: SseClientOptions) {
    super(options)
    this.url = url
    this.sseOptions = options
    this.lastEventId = options.lastEventId
    this.attempt()
  }

  onReset (listener: (info: ResetInfo) => void): () => void {
    this.resetListeners.add(listener)
    return () => { this.resetListeners.delete(listener) }
  }

  protected connect (token: string | undefined): void {
    const controller = new AbortController()
    this.controller = controller
    const headers: Record<string, string> = { ...this.sseOptions.headers, [Header.Accept]: EVENT_STREAM }
    if (token !== undefined) headers[Header.Authorization] = BEARER_SCHEME + token
    if (this.lastEventId !== undefined) headers[Header.LastEventId] = this.lastEventId
    this.read(controller, headers)
  }

  protected teardown (): void {
    this.drop()
  }

  private async read (controller: AbortController, headers: Record<string, string>): Promise<void> {
    let opened = false
    this.watch(controller, this.options.connectTimeoutMs ?? 10000, opened)
    try {
      const fetch = this.sseOptions.fetch ?? globalThis.fetch
      const response = await fetch(this.url, { headers, signal: controller.signal })
      const { status } = response
      const action = responseAction(status)
      if (action !== 'open' || response.headers.get(Header.ContentType)?.startsWith(EVENT_STREAM) !== true) {
        response.body?.cancel().catch(() => {})
        let error: RealtimeClientError | undefined
        if (action === 'open') error = new RealtimeClientError('BAD_RESPONSE', `the response is not ${EVENT_STREAM}`)
        else if (action === 'stop' && status !== 204) error = new RealtimeClientError('CLOSED', `the server answered ${status}`)
        return this.lost(controller, action === 'open' ? 'stop' : action, {
          status,
          error,
          waitMs: retryAfterMs(response.headers.get(Header.RetryAfter), Date.now())
        })
      }
      opened = true
      this.opened()
      const parser = new EventStreamParser((event) => this.event(controller, event))
      const reader = response.body!.getReader()
      for (;;) {
        this.watch(controller, this.sseOptions.inactivityMs ?? 45000, opened)
        const { done, value } = await reader.read()
        if (done) break
        parser.push(value)
        if (parser.retry !== undefined) this.floorMs = parser.retry
      }
      // The server ended the stream: reconnect and resume, as after a drop.
      this.lost(controller, 'backoff', { opened })
    } catch {
      this.lost(controller, 'backoff', { opened })
    }
  }

  /** Drops the attempt when nothing comes for `ms`. */
  private watch (controller: AbortController, ms: number, opened: boolean): void {
    // A listener may have closed the client, or dropped the stream, meanwhile.
    if (controller !== this.controller) return
    clearTimeout(this.watchdog)
    this.watchdog = setTimeout(() => this.lost(controller, 'backoff', { opened }), ms)
  }

  private event (controller: AbortController, { event, data, id }: ParsedEvent): void {
    if (controller !== this.controller) return
    if (id !== undefined) {
      if (id !== '' && !isAfter(id, this.lastEventId)) return
      this.lastEventId = id === '' ? undefined : id
    }
    switch (event) {
      case ReservedEvent.Position:
        return
      case ReservedEvent.Reset:
        // The stream goes live from now; the position that follows is the new resume point.
        this.lastEventId = undefined
        return emit(this.resetListeners, { topics: parse(data)?.topics ?? [] })
      case ReservedEvent.Error: {
        const error = parse(data)
        this.failure = new RealtimeClientError(String(error?.code), String(error?.message))
        return
      }
    }
    emit(this.listeners.get(event), parse(data), { id })
  }

  private lost (controller: AbortController, action: EndAction, info: End): void {
    if (controller !== this.controller) return
    this.drop()
    info.error ??= this.failure
    this.failure = undefined
    this.end(action, info)
  }

  private drop (): void {
    clearTimeout(this.watchdog)
    this.controller?.abort()
    this.controller = undefined
  }
}

/**
 * An SSE client for a `reply.sse()` route, typed by the route's contract:
 * `createSseClient<typeof chat>(url, options)` with `import type { chat }`.
 */
export function createSseClient<C extends ClientContract = ClientContract> (url: string, options: SseClientOptions = {}): SseClient<C> {
  return new SseClientImpl(url, options) as unknown as SseClient<C>
}
