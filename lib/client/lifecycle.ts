// What both clients do between connections: state, tokens per attempt, the close-code table,
// backoff, and the end. A transport reports how each attempt or connection ended; this decides.
import { RATE_LIMITED_MS, SOON_MS, SPREAD_MS, type CloseAction } from '../protocol/close-codes.js'
import { Backoff, STABLE_MS } from './backoff.js'
import { RealtimeClientError } from './errors.js'
import { emit, listen, type Listeners } from './listeners.js'
import type { ClientOptions, ClientState, ClosedInfo, EventMeta, StateChange, TokenReason } from './types.js'

/**
 * How an attempt or a connection ended, as the transport saw it: an action of the close-code table, or
 * - `rejected`: the server refused the token, and the status can be seen (HTTP 401/403);
 * - `masked`: a browser's WebSocket failed before opening, which hides a refusal as well as a server that is down;
 * - `wait`: the server asked to wait (`Retry-After`), never less than the backoff.
 */
export type EndAction = CloseAction | 'rejected' | 'masked' | 'wait'

/** What the transport knows of the end. */
export interface End extends ClosedInfo {
  opened?: boolean
  /** For `wait`: what `Retry-After` asked for. */
  waitMs?: number
}

// Browsers and workers tell when the network comes back; Node has no such event.
const host = globalThis as { addEventListener?: (type: string, listener: () => void) => void, removeEventListener?: (type: string, listener: () => void) => void }

export function unauthorized (): RealtimeClientError {
  return new RealtimeClientError('UNAUTHORIZED', 'the server refused the token, and token() gave none it accepts')
}

export abstract class Lifecycle {
  state: ClientState = 'connecting'
  readonly closed: Promise<ClosedInfo>
  /** The server's `retry:` on SSE: no reconnect comes sooner. */
  protected floorMs = 0
  protected readonly options: ClientOptions
  /** Event listeners of the whole client, by event name. */
  protected readonly listeners: Listeners<(data: any, meta: EventMeta) => void> = new Map()
  private readonly stateListeners = new Set<(change: StateChange) => void>()
  private finish!: (info: ClosedInfo) => void
  private readonly backoff: Backoff | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private openedAt = 0
  private reason: TokenReason = 'connect'
  /** The token was asked for after a refusal or an expiry: one more refusal stops. */
  private renewed = false
  /** The server refused the last token for sure (not a browser's masked failure): the same one again stops. */
  private refused = false
  private token: string | undefined
  /** Counts attempts, so a token that arrives after close() or a newer attempt is dropped. */
  private generation = 0

  constructor (options: ClientOptions) {
    this.options = options
    this.closed = new Promise((resolve) => { this.finish = resolve })
    this.backoff = options.backoff === false ? undefined : new Backoff(options.backoff ?? {})
    host.addEventListener?.('online', this.online)
  }

  on (event: string, listener: (data: any, meta: EventMeta) => void): () => void {
    return listen(this.listeners, event, listener)
  }

  onState (listener: (change: StateChange) => void): () => void {
    this.stateListeners.add(listener)
    return () => { this.stateListeners.delete(listener) }
  }

  close (): void {
    this.stop({ code: 1000 })
  }

  /** Opens a connection with this token; reports its end with {@link end}. Never throws. */
  protected abstract connect (token: string | undefined): void
  /** Ends the connection, if any, and settles everything that waits on it with `error`. */
  protected abstract teardown (error: RealtimeClientError): void

  /** Asks for a token, then connects. */
  protected async attempt (): Promise<void> {
    const generation = ++this.generation
    let token: string | undefined
    const source = this.options.token
    if (source !== undefined) {
      let error: RealtimeClientError | undefined
      try {
        token = (await source({ reason: this.reason })) ?? undefined
      } catch (err) {
        error = new RealtimeClientError('UNAUTHORIZED', `token() failed: ${(err as Error)?.message}`)
      }
      if (generation !== this.generation) return
      if (error !== undefined) return this.end('backoff', { error })
      // The same token again after a refusal would be refused again.
      if (this.refused && token === this.token) return this.stop({ error: unauthorized() })
      this.token = token
    }
    this.connect(token)
  }

  /** The connection is open. */
  protected opened (): void {
    this.openedAt = Date.now()
    this.reason = 'connect'
    this.setState({ state: 'open' })
  }

  /** The attempt or the connection ended: reconnects or stops, by the table and `shouldReconnect`. */
  protected end (action: EndAction, info: End): void {
    if (this.openedAt > 0 && Date.now() - this.openedAt >= STABLE_MS) {
      this.renewed = false
      if (this.backoff !== undefined) this.backoff.attempt = 0
    }
    this.openedAt = 0
    this.refused = false
    const { code, status, reason, opened = false } = info
    let error = info.error
    let next: TokenReason = 'connect'
    let delay: number | undefined
    const backoff = (): number => this.backoff?.next() ?? 0
    switch (action) {
      case 'stop':
        break
      case 'refresh':
      case 'rejected':
        // Once per refusal: a token that is refused again, or expires before the connection
        // proved stable, stops the client instead of storming the server.
        if (this.renewed || this.options.token === undefined) {
          error = unauthorized()
          break
        }
        this.renewed = this.refused = true
        next = action === 'refresh' ? 'expired' : 'rejected'
        delay = 0
        break
      case 'masked':
        next = 'rejected'
        delay = backoff()
        break
      case 'spread':
        delay = Math.random() * SPREAD_MS
        break
      case 'soon':
        delay = Math.random() * SOON_MS
        break
      case 'slow-down':
        delay = Math.max(RATE_LIMITED_MS, backoff())
        break
      case 'wait':
        delay = Math.max(info.waitMs!, backoff())
        break
      default:
        delay = backoff()
    }
    const choice = this.options.shouldReconnect?.({ code, status, reason, opened })
    if (choice === false || (choice !== true && this.backoff === undefined)) delay = undefined
    else if (choice === true) delay ??= backoff()
    if (delay === undefined) {
      if (action !== 'stop') error ??= new RealtimeClientError('DISCONNECTED', 'the connection ended and the client does not reconnect')
      return this.stop({ code, status, reason, error })
    }
    delay = Math.max(delay, this.floorMs)
    this.reason = next
    this.setState({ state: 'reconnecting', code, status, retryInMs: delay, error })
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.attempt()
    }, delay)
  }

  /** Ends for good. */
  protected stop (info: ClosedInfo): void {
    if (this.state === 'closed') return
    this.generation++
    clearTimeout(this.timer)
    host.removeEventListener?.('online', this.online)
    this.state = 'closed'
    this.teardown(info.error ?? new RealtimeClientError('CLOSED', 'the client was closed'))
    this.setState({ ...info, state: 'closed' })
    this.finish(info)
  }

  private setState (change: StateChange): void {
    this.state = change.state
    emit(this.stateListeners, change)
  }

  /** Back online: the waiting attempt goes now. */
  private readonly online = (): void => {
    if (this.timer === undefined) return
    clearTimeout(this.timer)
    this.timer = undefined
    this.attempt()
  }
}
