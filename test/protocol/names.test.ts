import t from 'tap'
import fc from 'fast-check'
import { NAME_PATTERN, RESERVED_PREFIX, ReservedEvent, ReservedMessage, isValidName } from '../../lib/protocol/names.js'

t.test('a valid name: 1 to 64 characters of [A-Za-z0-9_.:-], not reserved', async (t) => {
  for (const name of ['a', 'message', 'room:42', 'a.b-c_d', 'x'.repeat(64)]) t.ok(isValidName(name), name)
  for (const name of ['', 'x'.repeat(65), 'has space', 'é', 'new\nline', 'realtime.reset', 'realtime.mine', 42, null, undefined]) {
    t.notOk(isValidName(name), String(name))
  }
})

t.test('every reserved event and message name starts with the reserved prefix and matches the pattern', async (t) => {
  for (const name of [...Object.values(ReservedEvent), ...Object.values(ReservedMessage)]) {
    t.ok(name.startsWith(RESERVED_PREFIX) && NAME_PATTERN.test(name), name)
    t.notOk(isValidName(name), `${name} is not for applications`)
  }
})

t.test('isValidName agrees with the pattern and the prefix on any string', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.string({ maxLength: 80 }), (name) =>
    isValidName(name) === (NAME_PATTERN.test(name) && !name.startsWith(RESERVED_PREFIX)))))
})
