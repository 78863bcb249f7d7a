import type { FastifyBaseLogger } from 'fastify'
import {
  compiledOf,
  assertName,
  serializeEventData,
  type AnyContract,
  type CompiledContract,
  type EventData,
  type EventName
} from '../contract.js'
import { FRT_ERR_ASYNCAPI_NOT_READY, FRT_ERR_INVALID_OPTION, FRT_ERR_TOPIC_CONTRACT } from '../errors.js'
import type { Broker, BrokerEvent } from '../brokers/broker.js'
import { assembleDocument, describeRoutes, type AsyncApiDocument, type AsyncApiOptions, type DocumentBody } from '../asyncapi/document.js'
import { RouteRegistry } from '../asyncapi/registry.js'
import { channels } from '../diagnostics.js'
import { asyncapiDocumentOptions } from '../options.js'
import { Counters, type RealtimeStats } from './stats.js'

/** Turns a broker event into what one transport writes (an SSE frame, a WebSocket frame). */
export type Encoder<F> = (event: BrokerEvent) => F

/** A transport's receiver of topic events. `deliver` must not throw. @internal */
export interface Subscriber<F> {
  deliver (frame: F, event: BrokerEvent): void
}

/** `publish` of a topic: typed by the topic's contract, untyped without one. */
export type PublishFunction<C extends AnyContract | undefined> = [C] extends [AnyContract]
  ? <K extends EventName<C>>(event: K, data: EventData<C, K>) => Promise<string>
  : (event: string, data: unknown) => Promise<string>

/** A named stream of events, shared by SSE streams and WebSocket connections. */
export interface Topic<C extends AnyContract | undefined = AnyContract | undefined> {
  /** The topic's name. */
  readonly name: string
  /** The contract that types and validates the topic's events, if any. */
  readonly contract: C
  /**
   * Validates the data once, serializes it once and appends the event to the broker's log;
   * resolves to the event id. Rejects with `FRT_ERR_UNKNOWN_EVENT`, `FRT_ERR_VALIDATION`,
   * `FRT_ERR_SERIALIZE` or `FRT_ERR_BROKER_UNAVAILABLE`; never delivers to local subscribers only.
   */
  readonly publish: PublishFunction<C>
}

/** Any topic, whatever its contract: what `subscribe()` takes. */
export interface AnyTopic {
  readonly name: string
  readonly contract: AnyContract | undefined
}

/** Options of `fastify.realtime.topic()`. */
export interface TopicOptions<C extends AnyContract | undefined> {
  /** Types and validates the topic's events. Every call for one name must pass the same object. */
  contract?: C
}

/** `fastify.realtime`: the hub shared by the SSE and WebSocket plugins of one Fastify instance. */
export interface Realtime {
  /** The broker events go through. */
  readonly broker: Broker
  /** The topic of this name, created on first use (memoized by name). */
  topic<C extends AnyContract> (name: string, options: { contract: C }): Topic<C>
  topic (name: string, options?: { contract?: undefined }): Topic<undefined>
  /**
   * The AsyncAPI 3.0.0 document (a plain object, a fresh copy per call) of every `app.ws()` route
   * and every route declared with the route option `sse`. Built once, on the first call after
   * `app.ready()` (before it, throws `FRT_ERR_ASYNCAPI_NOT_READY`); a schema with no JSON form
   * throws `FRT_ERR_ASYNCAPI_SCHEMA`, naming its route and message.
   */
  asyncapi (options?: AsyncApiOptions): AsyncApiDocument
  /** A snapshot of this instance's connections, subscriptions, topics and totals, O(1). */
  stats (): RealtimeStats
}

class TopicImpl {
  readonly name: string
  // [name], made once: every subscription to this topic alone shares it.
  readonly names: readonly string[]
  readonly contract: AnyContract | undefined
  /** The app asked for it by name: kept for the hub's life. Else made for client subscriptions, and forgotten once none holds it. */
  pinned = false
  private readonly hub: Hub
  private readonly compiled: CompiledContract | undefined

  constructor (hub: Hub, name: string, contract: AnyContract | undefined) {
    this.hub = hub
    this.name = name
    this.names = Object.freeze([name])
    this.contract = contract
    this.compiled = contract === undefined ? undefined : compiledOf(contract)
    this.publish = this.publish.bind(this)
  }

  publish (event: string, data: unknown): Promise<string> {
    try {
      const json = serializeEventData(this.compiled, event, data)
      // Inside the try too: a broker that throws instead of rejecting still yields a rejection.
      const published = this.hub.broker.publish(this.name, event, json)
      return channels.topicPublish.hasSubscribers ? published.then((id) => this.announce(event, id)) : published
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Publishes the diagnostics event of a publish, once the broker took it. */
  private announce (event: string, id: string): string {
    channels.topicPublish.publish({ topic: this.name, event, id })
    return id
  }
}

/** The names of a subscription's topics, without repeats; one topic's is shared by all its subscriptions. @internal */
export function topicNames (topics: readonly AnyTopic[]): readonly string[] {
  if (topics.length === 1) return (topics[0] as TopicImpl).names
  return [...new Set(topics.map((topic) => topic.name))]
}

/** True for a topic made by a hub. @internal */
export function isTopic (value: unknown): value is Topic {
  return value instanceof TopicImpl
}

/** The hub: topics by name, and local subscribers grouped by encoder so each event is encoded once per transport. @internal */
export class Hub implements Realtime {
  readonly broker: Broker
  readonly ownsBroker: boolean
  /** What the transports count for stats(). */
  readonly counters = new Counters()
  /** The routes the AsyncAPI document describes. */
  readonly registry = new RouteRegistry()
  /** Set once the app is ready: no route can be added after it. */
  ready = false
  private readonly log: FastifyBaseLogger
  private readonly topics = new Map<string, TopicImpl>()
  private readonly routes = new Map<string, Map<Encoder<unknown>, Set<Subscriber<unknown>>>>()
  private subscriptions = 0
  private document: DocumentBody | undefined
  private unlisten: (() => void) | undefined

  constructor (broker: Broker, ownsBroker: boolean, log: FastifyBaseLogger) {
    this.broker = broker
    this.ownsBroker = ownsBroker
    this.log = log
  }

  topic (name: string, options?: TopicOptions<AnyContract | undefined>): any {
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new FRT_ERR_INVALID_OPTION('topic options', 'expected an object such as { contract }')
    }
    const topic = this.clientTopic(name, options?.contract)
    topic.pinned = true
    return topic
  }

  /**
   * The topic of this name for a client subscription: the app's own if it made one, else one the
   * hub forgets once no local subscriber holds it, so clients subscribing to ever new names cannot
   * grow memory. Subscribe to it before anything else can run. Throws like topic().
   */
  clientTopic (name: string, contract: AnyContract | undefined): TopicImpl {
    const existing = this.topics.get(name)
    if (existing !== undefined) {
      if (existing.contract !== contract) throw new FRT_ERR_TOPIC_CONTRACT(name)
      return existing
    }
    assertName('topic', name)
    const topic = new TopicImpl(this, name, contract)
    this.topics.set(name, topic)
    return topic
  }

  /** Adds a local subscriber of a topic. */
  add<F> (topic: string, encoder: Encoder<F>, subscriber: Subscriber<F>): void {
    if (this.unlisten === undefined) this.unlisten = this.broker.listen(this.dispatch)
    let groups = this.routes.get(topic)
    if (groups === undefined) {
      groups = new Map()
      this.routes.set(topic, groups)
    }
    let subscribers = groups.get(encoder as Encoder<unknown>)
    if (subscribers === undefined) {
      subscribers = new Set()
      groups.set(encoder as Encoder<unknown>, subscribers)
    }
    // Counted once however often it is added.
    const before = subscribers.size
    subscribers.add(subscriber as Subscriber<unknown>)
    this.subscriptions += subscribers.size - before
  }

  /** Removes a local subscriber; a no-op when it is not there. */
  remove<F> (topic: string, encoder: Encoder<F>, subscriber: Subscriber<F>): void {
    const groups = this.routes.get(topic)
    const subscribers = groups?.get(encoder as Encoder<unknown>)
    if (subscribers === undefined || !subscribers.delete(subscriber as Subscriber<unknown>)) return
    this.subscriptions--
    if (subscribers.size === 0) {
      (groups as Map<Encoder<unknown>, Set<Subscriber<unknown>>>).delete(encoder as Encoder<unknown>)
      if ((groups as Map<Encoder<unknown>, Set<Subscriber<unknown>>>).size === 0) {
        this.routes.delete(topic)
        if (this.topics.get(topic)?.pinned === false) this.topics.delete(topic)
      }
    }
  }

  /** True while the hub holds a topic of this name (asked for by the app, or held by a subscriber). */
  hasTopic (name: string): boolean {
    return this.topics.has(name)
  }

  /** How many local subscribers a topic has (all transports). */
  subscriberCount (topic: string): number {
    let count = 0
    for (const subscribers of this.routes.get(topic)?.values() ?? []) count += subscribers.size
    return count
  }

  /** Stops listening to the broker, and closes it when the hub created it. */
  async close (): Promise<void> {
    this.unlisten?.()
    this.unlisten = undefined
    this.routes.clear()
    this.subscriptions = 0
    if (this.ownsBroker) await this.broker.close()
  }

  asyncapi (options?: AsyncApiOptions): AsyncApiDocument {
    const parsed = asyncapiDocumentOptions(options)
    if (!this.ready) throw new FRT_ERR_ASYNCAPI_NOT_READY()
    this.document ??= describeRoutes(this.registry.routes)
    return assembleDocument(this.document, parsed)
  }

  stats (): RealtimeStats {
    const counters = this.counters
    return {
      connections: { sse: counters.sse, ws: counters.ws },
      subscriptions: this.subscriptions,
      topics: this.routes.size,
      totals: {
        opened: counters.opened,
        closed: counters.closed,
        rejected: counters.rejected,
        received: counters.received,
        sent: counters.sent,
        invalid: counters.invalid,
        slowConsumers: counters.slowConsumers,
        resumed: counters.resumed,
        resets: counters.resets
      }
    }
  }

  private readonly dispatch = (event: BrokerEvent): void => {
    const groups = this.routes.get(event.topic)
    if (groups === undefined) return
    for (const [encode, subscribers] of groups) {
      let frame: unknown
      try {
        frame = encode(event)
      } catch (err) {
        this.log.error({ err, topic: event.topic, eventId: event.id }, 'fastify-realtime: cannot encode a topic event; it was not delivered')
        continue
      }
      for (const subscriber of subscribers) subscriber.deliver(frame, event)
    }
  }
}
