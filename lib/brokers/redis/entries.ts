// The log as Redis stores it: one stream entry per event, its fields the topic, the event name and
// the data; an entry's id is the event id.
import type { BrokerEvent } from '../broker.js'

/** An entry as XRANGE and XREAD return it. */
export type Entry = [id: string, fields: string[]]

/** The field names of an entry, in the order XADD writes them. */
export const TOPIC_FIELD = 't'
export const EVENT_FIELD = 'e'
export const DATA_FIELD = 'd'

/** The stream key of a namespace: its hash tag keeps the log in one Redis Cluster slot. */
export function logKey (namespace: string): string {
  return `frt:{${namespace}}:log`
}

/** An entry as an event, or undefined for an entry this library did not write or of another topic. */
export function toEvent (topicFilter: ReadonlySet<string> | undefined, [id, fields]: Entry): BrokerEvent | undefined {
  let topic: string | undefined
  let event: string | undefined
  let data: string | undefined
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1] as string
    switch (fields[i]) {
      case TOPIC_FIELD: topic = value; break
      case EVENT_FIELD: event = value; break
      case DATA_FIELD: data = value; break
    }
  }
  if (topic === undefined || event === undefined || data === undefined) return undefined
  if (topicFilter !== undefined && !topicFilter.has(topic)) return undefined
  return { id, topic, event, data }
}

/**
 * XREAD's entries for the one stream read: `null` when BLOCK timed out, `[[key, entries]]` in RESP2
 * and ioredis' default RESP3 mapping, `{ key: entries }` for a client made with `replyMapping: 'resp3'`.
 */
export function entriesOf (reply: unknown): Entry[] {
  if (reply === null) return []
  const streams = Array.isArray(reply) ? reply.map((stream) => (stream as [string, Entry[]])[1]) : Object.values(reply as object)
  return streams[0] as Entry[]
}

/** Orders two Redis entry ids, `<ms>-<seq>` with 64-bit parts (beyond safe integers). */
export function isBefore (a: string, b: string): boolean {
  return idValue(a) < idValue(b)
}

function idValue (id: string): bigint {
  const [ms, seq] = id.split('-') as [string, string]
  return (BigInt(ms) << 64n) + BigInt(seq)
}
