// The client's public types. A contract reaches the client through `import type` only: its schemas
// give the types of every event, message and reply, and none of their code is bundled.
import type { Static, TSchema } from '@sinclair/typebox'
import type { RealtimeClientError } from './errors.js'

/** What the client reads of a contract made by `defineContract`: its types only. */
export interface ClientContract {
  readonly events: Record<string, TSchema>
  readonly messages: Record<string, TSchema>
  readonly replies: Record<string, TSchema>
}

/** The event names of a contract. */
export type ClientEventName<C extends ClientContract> = keyof C['events'] & string
/** The data of an event. */
export type ClientEventData<C extends ClientContract, K extends ClientEventName<C>> = Static<C['events'][K]>
/** The message names of a contract. */
export type ClientMessageName<C extends ClientContract> = keyof C['messages'] & string
/** The data of a message. */
export type ClientMessageData<C extends ClientContract, K extends ClientMessageName<C>> = Static<C['messages'][K]>
/** The data of a message's reply; `void` when the contract declares no reply for it. */
export type ClientReplyData<C extends ClientContract, K extends ClientMessageName<C>> =
  K extends keyof C['replies'] ? Static<C['replies'][K]> : void

/**
 * - `connecting`: the first attempt;
 * - `open`: connected (on WebSocket, once the server's `hello` came);
 * - `reconnecting`: waiting for, or making, another attempt;
 * - `closed`: for good; `closed` has resolved.
 */
export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'closed'

/** Why a token is asked for: the first or a routine attempt, after 4401, or after a refusal. */
export type TokenReason = 'connect' | 'expired' | 'rejected'

/** What `token()` is told. */
export interface TokenContext {
  reason: TokenReason
}

/** Reconnect delays: full jitter, a random delay between 0 and `min(maxMs, initialMs * factor ** attempt)`. */
export interface BackoffOptions {
  /** @default 500 */
  initialMs?: number
  /** @default 15000 */
  maxMs?: number
  /** @default 2 */
  factor?: number
}

/** What `shouldReconnect` is told about the end of a connection or attempt. */
export interface ReconnectInfo {
  /** The WebSocket close code. */
  code?: number
  /** The HTTP status: of an SSE response, or of a refused upgrade where it can be seen. */
  status?: number
  /** The close reason, when the server gave one. */
  reason?: string
  /** Whether the connection had opened. */
  opened: boolean
}

/** Options of both clients. */
export interface ClientOptions {
  /**
   * Called before every attempt; returns the token to send, or null/undefined for none. WebSocket
   * sends it as the `bearer.<token>` subprotocol next to `realtime.v1` (so it must be made of RFC
   * 7230 token characters: base64url, not base64), SSE as `Authorization: Bearer <token>`. Never
   * in the URL. `reason` is `expired` after the server closed with 4401, `rejected` after a refusal.
   */
  token?: (context: TokenContext) => string | null | undefined | Promise<string | null | undefined>
  /**
   * Reconnect delays; `false` never reconnects. The attempt count starts again once a connection
   * has stayed open for 5 s.
   * @default { initialMs: 500, maxMs: 15000, factor: 2 }
   */
  backoff?: BackoffOptions | false
  /**
   * Overrides the close-code table: true reconnects (after the table's delay, else the backoff),
   * false stops, undefined leaves the decision to the table.
   */
  shouldReconnect?: (info: ReconnectInfo) => boolean | undefined
  /**
   * An attempt that has not opened by then is abandoned, and backs off.
   * @default 10000
   */
  connectTimeoutMs?: number
}

/** The parts of a WebSocket the client uses: the browser's, Node's, or `ws`'s. */
export interface WebSocketLike {
  onopen: ((event: any) => void) | null
  onmessage: ((event: any) => void) | null
  onclose: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
  send (data: string): void
  close (code?: number, reason?: string): void
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike

/** Options of {@link createWsClient}. */
export interface WsClientOptions extends ClientOptions {
  /**
   * How long a request waits for its reply, queueing included.
   * @default 10000
   */
  requestTimeoutMs?: number
  /**
   * A `realtime.ping` every this many ms; a connection that sent nothing between two pings is
   * dropped and reconnected. 0 sends none.
   * @default 25000
   */
  pingIntervalMs?: number
  /**
   * What may wait for a connection: messages and requests sent while disconnected.
   * @default { messages: 100, bytes: 262144 }
   */
  queue?: { messages?: number, bytes?: number }
  /**
   * The WebSocket constructor; Node 20 passes `WebSocket` from `ws`.
   * @default globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor
}

/** Options of {@link createSseClient}. */
export interface SseClientOptions extends ClientOptions {
  /**
   * No byte (heartbeats included) for this long: the stream is dropped and reconnected.
   * @default 45000
   */
  inactivityMs?: number
  /**
   * The fetch function.
   * @default globalThis.fetch
   */
  fetch?: typeof globalThis.fetch
  /** Headers sent with every request (e.g. for CORS or cookies-less auth schemes). */
  headers?: Record<string, string>
  /** Resume after this id (sent as `Last-Event-ID`), e.g. one stored by a previous page. */
  lastEventId?: string
}

/** A change of state. */
export interface StateChange {
  state: ClientState
  /** The WebSocket close code that ended the connection. */
  code?: number
  /** The HTTP status that ended the attempt. */
  status?: number
  /** The delay before the next attempt, when one is planned. */
  retryInMs?: number
  /** Why the client stopped or reconnects, when it is an error. */
  error?: RealtimeClientError
}

/** What `closed` resolves with. */
export interface ClosedInfo {
  /** The close code: 1000 after `close()`, else the server's. */
  code?: number
  /** The HTTP status that stopped the client. */
  status?: number
  /** The close reason the server gave. */
  reason?: string
  /** Why the client stopped, when it was not `close()`. */
  error?: RealtimeClientError
}

/** What an event listener gets next to the data. */
export interface EventMeta {
  /** The topic the event came from. */
  topic?: string
  /** The event's id: a resume point. */
  id?: string
}

/** Options of one request. */
export interface RequestOptions {
  /**
   * Overrides the client's `requestTimeoutMs`.
   */
  timeoutMs?: number
  /** Aborts the request: it rejects with `ABORTED` (a request already sent may still run). */
  signal?: AbortSignal
}

/** What a reset listener gets: the topics whose history since the resume point is gone. */
export interface ResetInfo {
  topics: string[]
}

/** An event listener. */
export type EventListener<C extends ClientContract, K extends ClientEventName<C>> =
  (data: ClientEventData<C, K>, meta: EventMeta) => void

/** A client-driven subscription to a topic. */
export interface Subscription<C extends ClientContract = ClientContract> {
  readonly topic: string
  /** The id of the last event delivered, or the position the server reported: where a resume starts. */
  readonly lastId: string | undefined
  /**
   * Resolves on the server's first reply: `resumed` is false when there was nothing to resume from,
   * or it could not be resumed. Rejects with the server's refusal (`FORBIDDEN`, ...), or `CLOSED`.
   */
  readonly ready: Promise<{ resumed: boolean }>
  /** Listens to one event of this topic; returns the function that removes the listener. */
  on<K extends ClientEventName<C>> (event: K, listener: EventListener<C, K>): () => void
  /** Called when the history since `lastId` is gone: reload the state this topic feeds. */
  onReset (listener: (info: ResetInfo) => void): () => void
  /** Stops the subscription, here and on the server. */
  unsubscribe (): void
}

/** What both clients have. */
export interface Client<C extends ClientContract = ClientContract> {
  readonly state: ClientState
  /** Listens to one event, from any topic; returns the function that removes the listener. */
  on<K extends ClientEventName<C>> (event: K, listener: EventListener<C, K>): () => void
  /** Listens to changes of state; returns the function that removes the listener. */
  onState (listener: (change: StateChange) => void): () => void
  /** Closes for good: pending requests reject with `CLOSED`, every timer is cleared. */
  close (): void
  /** Resolves (never rejects) once the client is closed for good. */
  readonly closed: Promise<ClosedInfo>
}

/** The WebSocket client. */
export interface WsClient<C extends ClientContract = ClientContract> extends Client<C> {
  /**
   * Sends a message and resolves with its reply. While disconnected the message waits in the queue
   * (and its timeout runs). Rejects with a {@link RealtimeClientError}.
   */
  request<K extends ClientMessageName<C>> (type: K, data: ClientMessageData<C, K>, options?: RequestOptions): Promise<ClientReplyData<C, K>>
  /** Sends a message without waiting for a reply; false when it could not be sent nor queued. */
  send<K extends ClientMessageName<C>> (type: K, data: ClientMessageData<C, K>): boolean
  /** Subscribes to a topic (once per topic: a second call returns the same subscription). */
  subscribe (topic: string, options?: { after?: string }): Subscription<C>
}

/** The SSE client. */
export interface SseClient<C extends ClientContract = ClientContract> extends Client<C> {
  /** The id to resume after: sent as `Last-Event-ID` on every reconnect. */
  readonly lastEventId: string | undefined
  /** Called when the stream could not resume from `lastEventId`. */
  onReset (listener: (info: ResetInfo) => void): () => void
}
