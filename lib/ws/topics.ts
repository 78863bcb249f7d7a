// Client-driven subscriptions on app.ws() routes: `realtime.subscribe` and `realtime.unsubscribe`,
// allowed by the route's `topics` (exact names and `prefix*` keys, each with an optional authorize).
// The answer to a subscribe goes out after the replay (or the reset) and before any live event.
import type { ValidationDetail } from '../contract.js'
import type { Subscription } from '../hub/subscription.js'
import type { TopicRule, TopicRules } from '../options.js'
import { parseEventId } from '../protocol/event-id.js'
import { ErrorCode, errorMessage, replyMessage, subscribedReply, type MessageId, type SubscribeData } from '../protocol/messages.js'
import { isValidName } from '../protocol/names.js'
import type { ConnectionImpl, WsRouteSettings } from './connection.js'
import type { InboundMessage } from './inbound.js'

const FORBIDDEN_MESSAGE = 'This topic cannot be subscribed to.'
const TOPIC_DETAIL = 'Expected a topic name: 1 to 64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-", not starting with "realtime."'
const AFTER_DETAIL = 'Expected an event id such as "1732431712345-3"'

// The subscriptions a client made (the server's own, from conn.subscribe(), a client cannot undo).
const clientMade = new WeakSet<Subscription>()

/** The rule of `topics` that covers a name: its exact key, else the longest matching prefix. @internal */
export function matchTopic (rules: TopicRules | undefined, name: string): TopicRule | undefined {
  if (rules === undefined) return undefined
  const exact = rules.exact.get(name)
  if (exact !== undefined) return exact
  return rules.prefixes.find(({ prefix }) => name.startsWith(prefix))?.rule
}

/** The data of a subscribe (`after` only when asked) or unsubscribe, or the first thing wrong with it. */
function parseTopicData (data: unknown, withAfter: boolean): SubscribeData | ValidationDetail {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return { path: '', message: 'Expected an object' }
  const { topic, after } = data as { topic?: unknown, after?: unknown }
  if (!isValidName(topic)) return { path: '/topic', message: TOPIC_DETAIL }
  if (!withAfter || after === undefined) return { topic }
  if (parseEventId(after) === undefined) return { path: '/after', message: AFTER_DETAIL }
  return { topic, after: after as string }
}

function invalid (conn: ConnectionImpl, message: InboundMessage, failure: ValidationDetail): undefined {
  return conn.badMessage(message.id, ErrorCode.Validation, `The data of "${message.type}" does not match its schema.`, [failure])
}

function refuse (conn: ConnectionImpl, id: MessageId | undefined, code: string, text: string): undefined {
  conn.answer(errorMessage(id, code, text))
  return undefined
}

/**
 * `realtime.subscribe`: checks the route's `topics` and `authorize`, then subscribes with `after`;
 * the reply `{ topic, position, resumed }` goes out once the replay is written. Subscribing to a
 * topic the connection holds already is a no-op that answers the same way. Never rejects.
 * @internal
 */
export function clientSubscribe (conn: ConnectionImpl, route: WsRouteSettings, message: InboundMessage): Promise<void> | undefined {
  const request = parseTopicData(message.data, true)
  if ('path' in request) return invalid(conn, message, request)
  conn.goodMessage()
  const rule = matchTopic(route.topics, request.topic)
  if (rule === undefined) return refuse(conn, message.id, ErrorCode.Forbidden, FORBIDDEN_MESSAGE)
  return subscribe(conn, route, rule, request, message.id)
}

async function subscribe (conn: ConnectionImpl, route: WsRouteSettings, rule: TopicRule, request: SubscribeData, id: MessageId | undefined): Promise<void> {
  const { topic, after } = request
  if (rule.authorize !== undefined) {
    if (!await authorized(conn, rule, topic, after)) return refuse(conn, id, ErrorCode.Forbidden, FORBIDDEN_MESSAGE)
    // authorize may have taken a while: the connection may have closed meanwhile.
    if (!conn.isOpen) return
  }
  const existing = conn.subscriptionOf(topic)
  if (existing !== undefined) {
    // Once it is live, its position is where the client stands (it may still be replaying, if the server made it).
    await existing.ready
    if (id !== undefined) conn.answer(subscribedReply(id, { topic, position: existing.position, resumed: false }))
    return
  }
  if (conn.subscriptionCount >= route.maxSubscriptions) {
    return refuse(conn, id, ErrorCode.TooManySubscriptions, `At most ${route.maxSubscriptions} subscriptions per connection.`)
  }
  let subscription: Subscription
  try {
    const hubTopic = conn.hub.clientTopic(topic, rule.contract)
    subscription = conn.addSubscription(hubTopic, after, id === undefined
      ? undefined
      : (position, resumed) => conn.answer(subscribedReply(id, { topic, position, resumed })))
  } catch (err) {
    // The app made this topic with another contract than the route declares: a server bug, logged;
    // the client gets the answer that reveals nothing.
    conn.log.error({ err, topic }, 'fastify-realtime: a client subscription was refused: the topic exists with another contract')
    return refuse(conn, id, ErrorCode.Forbidden, FORBIDDEN_MESSAGE)
  }
  clientMade.add(subscription)
  await subscription.ready
}

async function authorized (conn: ConnectionImpl, rule: TopicRule, topic: string, after: string | undefined): Promise<boolean> {
  try {
    return await (rule.authorize as NonNullable<TopicRule['authorize']>)(conn, topic, { after }) === true
  } catch (err) {
    conn.log.error({ err, topic }, 'fastify-realtime: authorize failed; the subscription was refused')
    return false
  }
}

/**
 * `realtime.unsubscribe`: ends the client's own subscription to the topic, if any, and answers `{}`.
 * @internal
 */
export function clientUnsubscribe (conn: ConnectionImpl, message: InboundMessage): undefined {
  const request = parseTopicData(message.data, false)
  if ('path' in request) return invalid(conn, message, request)
  conn.goodMessage()
  const subscription = conn.subscriptionOf(request.topic)
  if (subscription !== undefined && clientMade.has(subscription)) conn.removeSubscription(subscription)
  if (message.id !== undefined) conn.answer(replyMessage(message.id, '{}'))
  return undefined
}
