// A client-driven subscription: its resume point, its listeners, and the de-duplication by id that
// makes a resumed subscription deliver each event once.
import { isAfter } from '../protocol/event-id.js'
import type { SubscribedData } from '../protocol/messages.js'
import type { RealtimeClientError } from './errors.js'
import { emit, listen, type Listeners } from './listeners.js'
import type { EventMeta, ResetInfo } from './types.js'

export class SubscriptionImpl {
  readonly topic: string
  /** The last event id delivered, or the position the server reported: the next `after`. */
  lastId: string | undefined
  readonly ready: Promise<{ resumed: boolean }>
  readonly listeners: Listeners<(data: any, meta: EventMeta) => void> = new Map()
  private readonly resetListeners = new Set<(info: ResetInfo) => void>()
  private resolve!: (value: { resumed: boolean }) => void
  private reject!: (error: RealtimeClientError) => void
  private readonly end: (subscription: SubscriptionImpl) => void

  constructor (topic: string, after: string | undefined, end: (subscription: SubscriptionImpl) => void) {
    this.topic = topic
    this.lastId = after
    this.end = end
    this.ready = new Promise((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    // A refusal nobody awaits is not an unhandled rejection: `ready` still rejects for those who do.
    this.ready.catch(() => {})
  }

  on (event: string, listener: (data: any, meta: EventMeta) => void): () => void {
    return listen(this.listeners, event, listener)
  }

  onReset (listener: (info: ResetInfo) => void): () => void {
    this.resetListeners.add(listener)
    return () => { this.resetListeners.delete(listener) }
  }

  unsubscribe (): void {
    this.end(this)
  }

  /** True when the event of this id is new, and then it is the resume point. */
  accept (id: string | undefined): boolean {
    if (id === undefined) return true
    if (!isAfter(id, this.lastId)) return false
    this.lastId = id
    return true
  }

  /** The server's reply: replayed events came before it, live ones come after `position`. */
  subscribed (reply: SubscribedData | undefined): void {
    const position = reply?.position
    if (typeof position === 'string' && isAfter(position, this.lastId)) this.lastId = position
    this.resolve({ resumed: reply?.resumed === true })
  }

  /** The server could not resume from `lastId`: it goes live from now, and its reply gives the new position. */
  reset (): void {
    this.lastId = undefined
    emit(this.resetListeners, { topics: [this.topic] })
  }

  deliver (event: string, data: unknown, meta: EventMeta): void {
    emit(this.listeners.get(event), data, meta)
  }

  fail (error: RealtimeClientError): void {
    this.reject(error)
  }
}
