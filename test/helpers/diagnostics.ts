import diagnostics from 'node:diagnostics_channel'
import type { Test } from 'tap'
import { DiagnosticsChannel } from '../../lib/index.js'

/** One message seen on a channel; tracing events are named `tracing:<event>`. */
export interface Seen {
  channel: string
  message: any
}

const TRACING_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const

/**
 * Subscribes to every channel of the library (and to every event of the handler tracing channel)
 * until the test ends; returns what was published, in order. Tracing contexts are copied at each
 * event, since one context travels through all five.
 */
export function recordChannels (t: Test): Seen[] {
  const seen: Seen[] = []
  const plain = Object.entries(DiagnosticsChannel).filter(([key]) => key !== 'WsHandler')
  const listeners = plain.map(([, name]) => {
    const listener = (message: unknown): void => { seen.push({ channel: name, message }) }
    diagnostics.subscribe(name, listener)
    return [name, listener] as const
  })
  const tracing = diagnostics.tracingChannel(DiagnosticsChannel.WsHandler)
  const handlers = Object.fromEntries(TRACING_EVENTS.map((event) => [event, (context: object) => {
    seen.push({ channel: `tracing:${event}`, message: { ...context } })
  }])) as unknown as diagnostics.TracingChannelSubscribers<object>
  tracing.subscribe(handlers)
  t.teardown(() => {
    for (const [name, listener] of listeners) diagnostics.unsubscribe(name, listener)
    tracing.unsubscribe(handlers)
  })
  return seen
}

/** The messages of one channel. */
export function on (seen: Seen[], channel: string): any[] {
  return seen.filter((entry) => entry.channel === channel).map((entry) => entry.message)
}
