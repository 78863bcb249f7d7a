// The WebSocket client: requests and replies, fire-and-forget sends, client-driven subscriptions that
// resume exactly once, a bounded queue while disconnected, and an app-level ping browsers can see.
import { closeAction, CloseCode } from '../protocol/close-codes.js'
import { ServerMessageType, type HelloData, type ValidationDetail } from '../protocol/messages.js'
import { BEARER_PREFIX, ReservedMessage, SUBPROTOCOL } from '../protocol/names.js'
import { RealtimeClientError } from './errors.js'
import { Lifecycle, type End, type EndAction } from './lifecycle.js'
import { emit } from './listeners.js'
import { Queue, utf8Bytes } from './queue.js'
import { SubscriptionImpl } from './subscriptions.js'
import type { ClientContract, RequestOptions, WebSocketConstructor, WebSocketLike, WsClient, WsClientOptions } from './types.js'

/** A request waiting for its answer. */
interface Pending {
  resolve (data: any): void
  reject (error: RealtimeClientError): void
  /** On the wire: the end of its socket rejects it with `DISCONNECTED`. A queued one waits. */
  sent?: boolean
}

// `ws` reports a refused upgrade as an error event with this message; browsers never show the status.
const REFUSED_UPGRADE = /Unexpected server response: (\d{3})/

function noop (): void {}

function disconnected (): RealtimeClientError {
  return new RealtimeClientError('DISCONNECTED', 'the connection dropped before the reply came: the request may or may not have run')
}

class WsClientImpl extends Lifecycle {
  private readonly url: string
  private readonly wsOptions: WsClientOptions
  private readonly queue: Queue
  private readonly pending = new Map<number, Pending>()
  private readonly subscriptions = new Map<string, SubscriptionImpl>()
  private socket: WebSocketLike | undefined
  private ids = 0
  private maxPayload = Infinity
  private connectTimer: ReturnType<typeof setTimeout> | undefined
  private pingTimer: ReturnType<typeof setInterval> | undefined
  /** Something came since the last ping. */
  private alive = true

  constructor (url: string, options: WsClientOptions) {
    super(options)
    this.url = url
    this.wsOptions = options
    this.queue = new Queue(options.queue ?? {})
    this.attempt()
  }

  request (type: string, data: unknown, options: RequestOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const { signal, timeoutMs = this.wsOptions.requestTimeoutMs ?? 10000 } = options
      if (signal?.aborted === true) return reject(new RealtimeClientError('ABORTED', 'the request was aborted'))
      const id = ++this.ids
      const settle = <T>(done: (value: T) => void) => (value: T): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', abort)
        this.pending.delete(id)
        this.queue.remove(id)
        done(value)
      }
      const entry: Pending = { resolve: settle(resolve), reject: settle(reject) }
      const abort = (): void => entry.reject(new RealtimeClientError('ABORTED', `the request "${type}" was aborted`))
      // Timers overflow past 2^31 - 1 ms and would fire at once: a longer timeout (Infinity) is that long.
      const timer = setTimeout(() => entry.reject(new RealtimeClientError('TIMEOUT', `no reply to "${type}" within ${timeoutMs} ms`)), Math.min(timeoutMs, 2 ** 31 - 1))
      signal?.addEventListener('abort', abort)
      this.pending.set(id, entry)
      const refused = this.out({ type, id, data }, id)
      if (refused !== undefined) entry.reject(refused)
    })
  }

  send (type: string, data: unknown): boolean {
    return this.out({ type, data }, undefined) === undefined
  }

  subscribe (topic: string, options: { after?: string } = {}): SubscriptionImpl {
    let subscription = this.subscriptions.get(topic)
    if (subscription !== undefined) return subscription
    subscription = new SubscriptionImpl(topic, options.after, (ended) => this.unsubscribe(ended))
    if (this.state === 'closed') {
      subscription.fail(new RealtimeClientError('CLOSED', 'the client is closed'))
    } else {
      this.subscriptions.set(topic, subscription)
      if (this.state === 'open') this.subscribeOnServer(subscription)
    }
    return subscription
  }

  protected connect (token: string | undefined): void {
    const protocols = token === undefined ? [SUBPROTOCOL] : [SUBPROTOCOL, BEARER_PREFIX + token]
    let socket: WebSocketLike
    try {
      const WebSocket = this.wsOptions.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
      socket = new WebSocket!(this.url, protocols)
    } catch (err) {
      return this.end('stop', {
        error: new RealtimeClientError('CLOSED', `cannot open a WebSocket (${(err as Error).message}): on Node 20 pass the WebSocket option, and make the token base64url`)
      })
    }
    this.socket = socket
    let opened = false
    let status: number | undefined
    this.connectTimer = setTimeout(() => this.lost('backoff', { opened }), this.options.connectTimeoutMs ?? 10000)
    // The connection is usable once the server's hello came (the first message of realtime.v1).
    socket.onopen = () => { opened = true }
    socket.onerror = (event: { message?: unknown }) => {
      const match = REFUSED_UPGRADE.exec(String(event?.message))
      if (match !== null) status = Number(match[1])
    }
    socket.onmessage = (event: { data: unknown }) => this.message(socket, event.data)
    socket.onclose = ({ code, reason }: { code: number, reason: string }) => {
      // Before open a browser shows no status: a refused upgrade and a server that is down both look like 1006.
      const action = opened ? closeAction(code) : status === 401 || status === 403 ? 'rejected' : 'masked'
      const error = action !== 'stop' || code === CloseCode.Normal
        ? undefined
        : new RealtimeClientError(code === CloseCode.MessageTooBig ? 'PAYLOAD_TOO_LARGE' : 'CLOSED', `the server closed the connection with ${code} ${reason}`)
      this.lost(action, { code, reason: reason === '' ? undefined : reason, status, opened, error })
    }
  }

  protected teardown (error: RealtimeClientError): void {
    for (const entry of this.pending.values()) entry.reject(error)
    this.pending.clear()
    this.queue.take()
    for (const subscription of this.subscriptions.values()) subscription.fail(error)
    this.subscriptions.clear()
    this.drop()
  }

  /** Sends, or queues while disconnected; returns why it could not. */
  private out (message: { type: string, id?: number, data: unknown }, id: number | undefined): RealtimeClientError | undefined {
    if (this.state === 'closed') return new RealtimeClientError('CLOSED', 'the client is closed')
    let text: string
    try {
      text = JSON.stringify(message)
    } catch (err) {
      return new RealtimeClientError('VALIDATION', `the data of "${message.type}" is not JSON: ${(err as Error).message}`)
    }
    const bytes = utf8Bytes(text)
    if (bytes > this.maxPayload) return tooLarge(bytes, this.maxPayload)
    if (this.state === 'open') {
      this.write(text, id)
      return undefined
    }
    if (!this.queue.push({ text, bytes, id })) return new RealtimeClientError('QUEUE_FULL', 'the queue of messages waiting for a connection is full (raise options.queue)')
  }

  private write (text: string, id: number | undefined): void {
    this.socket?.send(text)
    const entry = id === undefined ? undefined : this.pending.get(id)
    if (entry !== undefined) entry.sent = true
  }

  /** The connection is usable: subscriptions resume first, then what waited goes out. */
  private ready (socket: WebSocketLike, hello: HelloData | undefined): void {
    if (this.state === 'open') return
    clearTimeout(this.connectTimer)
    if (typeof hello?.maxPayload === 'number') this.maxPayload = hello.maxPayload
    for (const subscription of this.subscriptions.values()) this.subscribeOnServer(subscription)
    for (const item of this.queue.take()) {
      if (item.bytes > this.maxPayload) {
        if (item.id !== undefined) this.pending.get(item.id)?.reject(tooLarge(item.bytes, this.maxPayload))
      } else {
        this.write(item.text, item.id)
      }
    }
    const interval = this.wsOptions.pingIntervalMs ?? 25000
    if (interval > 0) {
      this.alive = true
      this.pingTimer = setInterval(() => {
        // Nothing since the last ping, not even its reply: the connection is gone without a close.
        if (!this.alive) return this.lost('backoff', { code: CloseCode.Abnormal, opened: true })
        this.alive = false
        socket.send(JSON.stringify({ type: ReservedMessage.Ping, id: ++this.ids }))
      }, interval)
    }
    this.opened()
  }

  private subscribeOnServer (subscription: SubscriptionImpl): void {
    const id = ++this.ids
    this.pending.set(id, {
      sent: true,
      resolve: (reply) => subscription.subscribed(reply),
      reject: (error) => {
        // A dropped connection resubscribes on the next one; a refusal ends the subscription.
        if (error.code === 'DISCONNECTED') return
        this.subscriptions.delete(subscription.topic)
        subscription.fail(error)
      }
    })
    this.socket!.send(JSON.stringify({ type: ReservedMessage.Subscribe, id, data: { topic: subscription.topic, after: subscription.lastId } }))
  }

  private unsubscribe (subscription: SubscriptionImpl): void {
    if (this.subscriptions.get(subscription.topic) !== subscription) return
    this.subscriptions.delete(subscription.topic)
    subscription.fail(new RealtimeClientError('CLOSED', `unsubscribed from "${subscription.topic}"`))
    if (this.state === 'open') this.socket!.send(JSON.stringify({ type: ReservedMessage.Unsubscribe, data: { topic: subscription.topic } }))
  }

  private message (socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket || typeof data !== 'string') return
    this.alive = true
    let message: any
    try {
      message = JSON.parse(data)
    } catch {
      return
    }
    switch (message?.type) {
      case ServerMessageType.Hello:
        return this.ready(socket, message.data)
      case ServerMessageType.Event: {
        const { topic, id, event } = message
        const meta = { topic, id }
        const subscription = this.subscriptions.get(topic)
        if (subscription !== undefined) {
          if (!subscription.accept(id)) return
          subscription.deliver(event, message.data, meta)
        }
        return emit(this.listeners.get(event), message.data, meta)
      }
      case ServerMessageType.Reset:
        return this.subscriptions.get(message.topic)?.reset()
      case ServerMessageType.Reply:
      case ServerMessageType.Error: {
        const entry = this.pending.get(message.id)
        if (entry === undefined) return
        this.pending.delete(message.id)
        if (message.type === ServerMessageType.Reply) return entry.resolve(message.data)
        const error: { code?: string, message?: string, details?: ValidationDetail[] } = message.error ?? {}
        entry.reject(new RealtimeClientError(String(error.code), String(error.message), error.details))
      }
    }
  }

  /** The socket is gone (closed, silent, or never opened in time): it is dropped, then the lifecycle decides. */
  private lost (action: EndAction, info: End): void {
    this.drop()
    this.end(action, info)
  }

  /** Leaves the socket: nothing more is read from it, and requests on it fail with `DISCONNECTED`. */
  private drop (): void {
    const socket = this.socket
    if (socket === undefined) return
    this.socket = undefined
    clearTimeout(this.connectTimer)
    clearInterval(this.pingTimer)
    socket.onopen = socket.onmessage = socket.onclose = null
    // ws emits 'error' on a socket closed while connecting, and an 'error' nobody listens to throws.
    socket.onerror = noop
    socket.close(CloseCode.Normal)
    for (const [id, entry] of this.pending) {
      if (entry.sent === true) {
        this.pending.delete(id)
        entry.reject(disconnected())
      }
    }
  }
}

function tooLarge (bytes: number, maxPayload: number): RealtimeClientError {
  return new RealtimeClientError('PAYLOAD_TOO_LARGE', `a message of ${bytes} bytes is over the server's maxPayload (${maxPayload})`)
}

/**
 * A WebSocket client for an `app.ws()` route, typed by the route's contract:
 * `createWsClient<typeof chat>(url, options)` with `import type { chat }`.
 */
export function createWsClient<C extends ClientContract = ClientContract> (url: string, options: WsClientOptions = {}): WsClient<C> {
  return new WsClientImpl(url, options) as unknown as WsClient<C>
}
