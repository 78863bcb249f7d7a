import t from 'tap'
import fc from 'fast-check'
import { LOG_START, compareEventIds, formatEventId, isAfter, newerEventId, parseEventId } from '../../lib/protocol/event-id.js'

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

t.test('isAfter: anything is after nothing; event ids by their order, numerically', async (t) => {
  t.ok(isAfter('1-0', undefined))
  t.ok(isAfter('10-0', '9-5'), 'numbers, not strings')
  t.ok(isAfter('9-10', '9-9'))
  t.notOk(isAfter('9-9', '9-9'), 'the same id is not after itself')
  t.notOk(isAfter('9-8', '9-9'))
  t.notOk(isAfter('0-0', '1-0'))
})

t.test('isAfter: ids of another form are new unless equal (their order is unknown)', async (t) => {
  t.ok(isAfter('custom', '1-0'))
  t.ok(isAfter('1-0', 'custom'))
  t.ok(isAfter('b', 'a'))
  t.notOk(isAfter('a', 'a'))
})

t.test('isAfter agrees with compareEventIds on any two event ids', async (t) => {
  const part = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
  t.doesNotThrow(() => fc.assert(fc.property(part, part, part, part, (ms1, seq1, ms2, seq2) => {
    const a = formatEventId(ms1, seq1)
    const b = formatEventId(ms2, seq2)
    return isAfter(a, b) === (compareEventIds(parseEventId(a)!, parseEventId(b)!) > 0)
  })))
})
