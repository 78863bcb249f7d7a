import t from 'tap'
import fc from 'fast-check'
import { LOG_START, compareEventIds, newerEventId, parseEventId } from '../../lib/protocol/event-id.js'

t.test('LOG_START is an event id before every other', async (t) => {
  t.equal(LOG_START, '0-0')
  t.same(parseEventId(LOG_START), { ms: 0, seq: 0 })
})

t.test('newerEventId returns the newer of two ids; one that does not parse counts as absent', async (t) => {
  t.equal(newerEventId('1-0', '2-0'), '2-0')
  t.equal(newerEventId('2-0', '1-5'), '2-0')
  t.equal(newerEventId('3-1', '3-1'), '3-1')
  t.equal(newerEventId('3-1', '3-2'), '3-2')
  t.equal(newerEventId(undefined, '1-0'), '1-0')
  t.equal(newerEventId('1-0', undefined), '1-0')
  t.equal(newerEventId(undefined, undefined), undefined)
  t.equal(newerEventId('garbage', '1-0'), '1-0')
  t.equal(newerEventId('1-0', '01-0'), '1-0')
  t.equal(newerEventId('x', 'y'), undefined)
})

t.test('property: newerEventId agrees with compareEventIds', async (t) => {
  const id = fc.tuple(fc.nat(), fc.nat()).map(([ms, seq]) => `${ms}-${seq}`)
  t.doesNotThrow(() => fc.assert(fc.property(id, id, (a, b) => {
    const newer = newerEventId(a, b)
    const order = compareEventIds(parseEventId(a) as { ms: number, seq: number }, parseEventId(b) as { ms: number, seq: number })
    return newer === (order >= 0 ? a : b)
  }), { numRuns: 1000 }))
})
