// @ts-check
// Prometheus metrics for fastify-realtime, with prom-client. Gauges read `fastify.realtime.stats()`
// when Prometheus scrapes (prom-client's `collect()`, no timer); counters and histograms follow the
// library's diagnostics channels. Labels are the transport, the route's URL pattern and a few
// bounded values (a close code, a status, a message type): never a topic or a connection id, whose
// values are unbounded and would make a time series per client.
// - GET /metrics: the Prometheus text format.
//
// Diagnostics channels are process-wide: register this plugin once per process (an app registered
// twice, or two apps in one process, would count each event twice).
//
// Run:  npm start   (then open a few demo pages)
// Poke: curl -s http://127.0.0.1:3000/metrics | grep ^realtime_

import diagnostics from 'node:diagnostics_channel'
import client from 'prom-client'
import { DiagnosticsChannel } from 'fastify-realtime'

/** @typedef {import('fastify-realtime').ConnectionCloseEvent} ConnectionCloseEvent */
/** @typedef {import('fastify-realtime').WsHandlerContext} WsHandlerContext */

/**
 * @typedef {object} MetricsOptions
 * @property {client.Registry} [registry] where the metrics are registered (default: a registry of its own)
 * @property {string} [path] where they are served (default '/metrics')
 */

/** Connection lifetimes: from a page view to a day-long dashboard. */
const DURATION_BUCKETS = [0.1, 1, 10, 60, 300, 1800, 3600, 14400, 86400]
/** Message handlers: a cache hit to a slow database call. */
const HANDLER_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]

/**
 * Registers the metrics and the /metrics route. Needs `fastifySse` or `fastifyWs` registered on a
 * parent (for `fastify.realtime`).
 * @param {import('fastify').FastifyInstance} fastify
 * @param {MetricsOptions} options
 */
export default async function metrics (fastify, { registry = new client.Registry(), path = '/metrics' }) {
  const realtime = fastify.realtime
  const registers = [registry]

  // ---- what stats() knows at any moment, read at scrape time ----
  registry.registerMetric(new client.Gauge({
    name: 'realtime_connections',
    help: 'Open connections, by transport.',
    labelNames: ['transport'],
    registers: [],
    collect () {
      const { connections } = realtime.stats()
      this.set({ transport: 'sse' }, connections.sse)
      this.set({ transport: 'ws' }, connections.ws)
    }
  }))
  registry.registerMetric(new client.Gauge({
    name: 'realtime_subscriptions',
    help: 'Topic subscriptions of the open connections.',
    registers: [],
    collect () { this.set(realtime.stats().subscriptions) }
  }))
  registry.registerMetric(new client.Gauge({
    name: 'realtime_topics',
    help: 'Topics with at least one subscriber on this instance.',
    registers: [],
    collect () { this.set(realtime.stats().topics) }
  }))
  /**
   * A counter that mirrors one of stats().totals, which only grow.
   * @param {string} name
   * @param {string} help
   * @param {(totals: ReturnType<typeof realtime.stats>['totals']) => number} read
   */
  const total = (name, help, read) => new client.Counter({
    name,
    help,
    registers,
    collect () {
      this.reset()
      this.inc(read(realtime.stats().totals))
    }
  })
  total('realtime_messages_received_total', 'WebSocket messages received.', (totals) => totals.received)
  total('realtime_messages_sent_total', 'Events, replies and errors sent, both transports.', (totals) => totals.sent)

  // ---- what happens, from the diagnostics channels ----
  const opened = new client.Counter({
    name: 'realtime_connections_opened_total',
    help: 'Connections opened.',
    labelNames: ['transport', 'route'],
    registers
  })
  const closed = new client.Counter({
    name: 'realtime_connections_closed_total',
    help: 'Connections closed, by close code (SSE: the WebSocket code of the same meaning).',
    labelNames: ['transport', 'route', 'code'],
    registers
  })
  const duration = new client.Histogram({
    name: 'realtime_connection_duration_seconds',
    help: 'How long connections stayed open.',
    labelNames: ['transport', 'route'],
    buckets: DURATION_BUCKETS,
    registers
  })
  const rejected = new client.Counter({
    name: 'realtime_connections_rejected_total',
    help: 'Connection attempts answered without opening, by HTTP status.',
    labelNames: ['transport', 'route', 'status'],
    registers
  })
  const invalid = new client.Counter({
    name: 'realtime_messages_invalid_total',
    help: 'WebSocket messages answered with a bad-message error, by error code.',
    labelNames: ['route', 'code'],
    registers
  })
  const slow = new client.Counter({
    name: 'realtime_slow_consumers_total',
    help: 'Connections closed because the client did not read.',
    labelNames: ['transport', 'route'],
    registers
  })
  const resumes = new client.Counter({
    name: 'realtime_subscription_resumes_total',
    help: 'Subscriptions asked to resume after an event id, by outcome (resumed or reset).',
    labelNames: ['transport', 'route', 'outcome'],
    registers
  })
  const publishes = new client.Counter({
    name: 'realtime_topic_publishes_total',
    help: 'Events published to topics by this instance (once per event, whatever the number of subscribers).',
    registers
  })
  const handlers = new client.Histogram({
    name: 'realtime_ws_handler_duration_seconds',
    help: 'WebSocket message handlers, until their promise settled.',
    labelNames: ['route', 'type'],
    buckets: HANDLER_BUCKETS,
    registers
  })
  const handlerErrors = new client.Counter({
    name: 'realtime_ws_handler_errors_total',
    help: 'WebSocket message handlers that threw or rejected.',
    labelNames: ['route', 'type'],
    registers
  })

  /** @type {Array<[string, (message: any) => void]>} */
  const listeners = [
    [DiagnosticsChannel.ConnectionOpen, ({ transport, route }) => opened.inc({ transport, route })],
    [DiagnosticsChannel.ConnectionClose, (/** @type {ConnectionCloseEvent} */ { transport, route, code, durationMs }) => {
      closed.inc({ transport, route, code })
      duration.observe({ transport, route }, durationMs / 1000)
    }],
    // A route of null: refused before routing (upgradeRateLimit, a server that is closing).
    [DiagnosticsChannel.ConnectionReject, ({ transport, route, status }) => rejected.inc({ transport, route: route ?? '', status })],
    [DiagnosticsChannel.MessageInvalid, ({ route, code }) => invalid.inc({ route, code })],
    [DiagnosticsChannel.ConsumerSlow, ({ transport, route }) => slow.inc({ transport, route })],
    [DiagnosticsChannel.SubscriptionResume, ({ transport, route, resumed }) => resumes.inc({ transport, route, outcome: resumed ? 'resumed' : 'reset' })],
    [DiagnosticsChannel.TopicPublish, () => publishes.inc()]
  ]
  for (const [name, listener] of listeners) diagnostics.subscribe(name, listener)

  // One context object travels through a handler's five events: its start time is kept beside it.
  /** @type {WeakMap<WsHandlerContext, () => number>} */
  const timers = new WeakMap()
  /** @param {WsHandlerContext} context */
  const stopTimer = (context) => timers.get(context)?.()
  /** @type {import('node:diagnostics_channel').TracingChannel<unknown, WsHandlerContext>} */
  const tracing = diagnostics.tracingChannel(DiagnosticsChannel.WsHandler)
  /** @type {import('node:diagnostics_channel').TracingChannelSubscribers<WsHandlerContext>} */
  const handlerTracing = {
    start (context) { timers.set(context, handlers.startTimer({ route: context.route, type: context.type })) },
    end (context) { if (!context.async) stopTimer(context) },
    asyncStart () {},
    asyncEnd: stopTimer,
    error (context) { handlerErrors.inc({ route: context.route, type: context.type }) }
  }
  tracing.subscribe(handlerTracing)

  fastify.addHook('onClose', async () => {
    for (const [name, listener] of listeners) diagnostics.unsubscribe(name, listener)
    tracing.unsubscribe(handlerTracing)
  })

  fastify.get(path, async (request, reply) => {
    reply.type(registry.contentType)
    return registry.metrics()
  })
}
