import t from 'tap'
import fc from 'fast-check'
import { compareEventIds, formatEventId, isAfter, parseEventId } from '../../lib/protocol/event-id.js'

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
