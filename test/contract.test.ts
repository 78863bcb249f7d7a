import t from 'tap'
import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import {
  assertName,
  Checker,
  CompiledContract,
  compiledOf,
  defineContract,
  serializeJson,
  validationError
} from '../lib/contract.js'

function errorOf (fn: () => unknown): any {
  try {
    fn()
  } catch (err) {
    return err
  }
  return { code: 'did not throw' }
}

/** An array nested `depth` levels deep, built without recursion. */
function nested (depth: number): unknown {
  let value: unknown = []
  for (let i = 0; i < depth; i++) value = [value]
  return value
}

const chat = defineContract({
  events: {
    message: Type.Object({ user: Type.String(), text: Type.String({ minLength: 1 }) }),
    status: Type.String(),
    anything: Type.Unknown()
  },
  messages: { say: Type.Object({ text: Type.String() }) },
  replies: { say: Type.Object({ id: Type.String() }) }
})

t.test('defineContract compiles every schema once, when the contract is defined', async (t) => {
  const compile = TypeCompiler.Compile
  let compiles = 0
  ;(TypeCompiler as any).Compile = (...args: Parameters<typeof compile>) => {
    compiles++
    return compile(...args)
  }
  t.teardown(() => { (TypeCompiler as any).Compile = compile })
  const contract = defineContract({
    events: { a: Type.String(), b: Type.Number() },
    messages: { m: Type.String() },
    replies: { m: Type.Boolean() }
  })
  t.equal(compiles, 4, 'one compilation per schema')
  const compiled = compiledOf(contract)
  for (let i = 0; i < 100; i++) {
    compiled.serializeEvent('a', `text ${i}`)
    t.equal(compiledOf(contract), compiled, 'the same compiled contract every time')
  }
  t.equal(compiles, 4, 'no compilation per message')
})

t.test('one schema object in two places behaves the same in both', async (t) => {
  const schema = Type.Object({ text: Type.String() })
  const contract = defineContract({ events: { a: schema, b: schema } })
  const compiled = compiledOf(contract)
  t.equal(compiled.serializeEvent('a', { text: 'x' }), compiled.serializeEvent('b', { text: 'x' }))
  t.same(errorOf(() => compiled.serializeEvent('a', {})).details, errorOf(() => compiled.serializeEvent('b', {})).details)
})

t.test('the contract is frozen and keeps its schemas; every map defaults to empty', async (t) => {
  t.ok(Object.isFrozen(chat))
  t.same(Object.keys(chat), ['events', 'messages', 'replies'])
  const sseOnly = defineContract({ events: { tick: Type.Number() } })
  t.same(sseOnly.messages, {})
  t.same(sseOnly.replies, {})
  t.same([...compiledOf(defineContract({})).events.keys()], [])
  const compiled = compiledOf(chat)
  t.same([...compiled.messages.keys()], ['say'])
  t.same([...compiled.replies.keys()], ['say'])
})

t.test('compiledOf of anything not made by defineContract throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const value of [{ events: {}, messages: {}, replies: {} }, { ...chat }, undefined, null, 'contract']) {
    t.equal(errorOf(() => compiledOf(value)).code, 'FRT_ERR_INVALID_OPTION', String(value))
  }
  t.match(errorOf(() => compiledOf({}, 'routeOptions.contract')).message, /"routeOptions\.contract"/, 'names the option')
})

t.test('names: 1 to 64 of [A-Za-z0-9_.:-] are accepted', async (t) => {
  for (const name of ['a', 'A-z_0.9:x', 'x'.repeat(64), 'realtime', 'realtimeX', 'my.realtime.x', '-', '0']) {
    t.doesNotThrow(() => defineContract({ events: { [name]: Type.Null() } }), name)
  }
})

t.test('names: empty, too long or outside the alphabet throw FRT_ERR_INVALID_NAME', async (t) => {
  for (const name of ['', 'x'.repeat(65), 'a b', 'é', 'a/b', 'a\nb', 'a\n', 'a\0', '😀']) {
    t.equal(errorOf(() => defineContract({ events: { [name]: Type.Null() } })).code, 'FRT_ERR_INVALID_NAME', JSON.stringify(name))
    t.equal(errorOf(() => defineContract({ messages: { [name]: Type.Null() } })).code, 'FRT_ERR_INVALID_NAME', `message ${JSON.stringify(name)}`)
  }
  for (const name of [undefined, null, 5, {}]) {
    t.equal(errorOf(() => assertName('topic', name)).code, 'FRT_ERR_INVALID_NAME', String(name))
  }
  t.match(errorOf(() => assertName('topic', 'a b')).message, /topic name "a b"/)
})

t.test('names starting with "realtime." are reserved: FRT_ERR_INVALID_NAME', async (t) => {
  const err = errorOf(() => defineContract({ events: { 'realtime.reset': Type.Null() } }))
  t.equal(err.code, 'FRT_ERR_INVALID_NAME')
  t.match(err.message, /reserved/)
  t.equal(errorOf(() => defineContract({ messages: { 'realtime.x': Type.Null() } })).code, 'FRT_ERR_INVALID_NAME')
})

t.test('a reply without a message of that name throws FRT_ERR_INVALID_OPTION', async (t) => {
  const err = errorOf(() => defineContract({ messages: { say: Type.Null() }, replies: { shout: Type.Null() } }))
  t.equal(err.code, 'FRT_ERR_INVALID_OPTION')
  t.match(err.message, /"shout"/)
  t.equal(errorOf(() => defineContract({ replies: { say: Type.Null() } })).code, 'FRT_ERR_INVALID_OPTION')
})

t.test('a definition that is not an object throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const definition of [undefined, null, 'events', 5]) {
    t.equal(errorOf(() => defineContract(definition as any)).code, 'FRT_ERR_INVALID_OPTION', String(definition))
  }
})

t.test('a map that is not an object throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const key of ['events', 'messages', 'replies']) {
    for (const map of ['x', 5, true]) {
      t.equal(errorOf(() => defineContract({ [key]: map } as any)).code, 'FRT_ERR_INVALID_OPTION', `${key}: ${String(map)}`)
    }
  }
  t.equal(errorOf(() => new CompiledContract({}, null as any, {})).code, 'FRT_ERR_INVALID_OPTION', 'null, when compiled directly')
})

t.test('CompiledContract treats an absent map as empty', async (t) => {
  const compiled = new CompiledContract({ tick: Type.Number() }, undefined as any, undefined as any)
  t.same([...compiled.events.keys()], ['tick'])
  t.equal(compiled.messages.size, 0)
  t.equal(compiled.replies.size, 0)
})

t.test('a schema that is not an object throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const schema of ['string', 5, null, undefined, true]) {
    const err = errorOf(() => defineContract({ events: { tick: schema as any } }))
    t.equal(err.code, 'FRT_ERR_INVALID_OPTION', String(schema))
    t.match(err.message, /events\.tick/)
  }
})

t.test('an object that is not a TypeBox schema throws FRT_ERR_INVALID_OPTION, not a TypeBox internal error', async (t) => {
  for (const schema of [{ type: 'string' }, {}]) {
    t.equal(errorOf(() => defineContract({ events: { tick: schema as any } })).code, 'FRT_ERR_INVALID_OPTION', JSON.stringify(schema))
  }
})

t.test('serializeEvent of an unknown event throws FRT_ERR_UNKNOWN_EVENT listing the declared events', async (t) => {
  const err = errorOf(() => compiledOf(chat).serializeEvent('nope', {}))
  t.equal(err.code, 'FRT_ERR_UNKNOWN_EVENT')
  t.match(err.message, /"nope"/)
  t.match(err.message, /"message", "status", "anything"/)
  t.match(errorOf(() => compiledOf(defineContract({})).serializeEvent('x', 1)).message, /no events/)
})

t.test('serializeEvent of invalid data throws FRT_ERR_VALIDATION with the first failure as a JSON pointer', async (t) => {
  const err = errorOf(() => compiledOf(chat).serializeEvent('message', { user: 'ann', text: '' }))
  t.equal(err.code, 'FRT_ERR_VALIDATION')
  t.equal(err.details.length, 1)
  t.equal(err.details[0].path, '/text')
  t.type(err.details[0].message, 'string')
  t.ok(err.details[0].message.length > 0)
  t.match(err.message, /"message" at "\/text"/)
  t.same(errorOf(() => compiledOf(chat).serializeEvent('message', { user: 1, text: 2 })).details.map((d: any) => d.path), ['/user'],
    'only the first failure')
})

t.test('a failure at the root is reported at "/" in the message and "" in details', async (t) => {
  const err = errorOf(() => compiledOf(chat).serializeEvent('status', 42))
  t.equal(err.code, 'FRT_ERR_VALIDATION')
  t.equal(err.details[0].path, '')
  t.match(err.message, /at "\/"/)
  t.same(validationError('x', { path: '/a', message: 'bad' }).details, [{ path: '/a', message: 'bad' }])
})

t.test('serializeEvent returns JSON; a Type.String() event is a JSON string', async (t) => {
  const compiled = compiledOf(chat)
  t.equal(compiled.serializeEvent('status', 'online'), '"online"')
  t.equal(compiled.serializeEvent('status', 'a\nb"'), '"a\\nb\\""')
  t.equal(compiled.serializeEvent('message', { user: 'ann', text: 'hi' }), '{"user":"ann","text":"hi"}')
})

t.test('serializeJson throws FRT_ERR_SERIALIZE for a BigInt, a cycle, undefined, a function, a symbol', async (t) => {
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  for (const [label, value] of [['BigInt', 1n], ['cycle', cycle], ['undefined', undefined], ['function', () => 1], ['symbol', Symbol('s')], ['nested BigInt', { n: [2n] }]] as const) {
    const err = errorOf(() => serializeJson('tick', value))
    t.equal(err.code, 'FRT_ERR_SERIALIZE', label)
    t.match(err.message, /"tick"/, `${label}: names the event`)
  }
  t.equal(serializeJson('x', { a: [1, 'b', null] }), '{"a":[1,"b",null]}')
})

t.test('a nesting bomb against a recursive schema is a validation failure, not a RangeError', async (t) => {
  const tree = new Checker('tree', Type.Recursive((This) => Type.Array(This)))
  t.equal(tree.check(nested(10)), undefined, 'shallow nesting is valid')
  const failure = tree.check(nested(100000))
  t.same(failure, { path: '', message: 'Value is nested too deeply' })
  const contract = defineContract({ events: { tree: Type.Recursive((This) => Type.Array(This)) } })
  t.equal(errorOf(() => compiledOf(contract).serializeEvent('tree', nested(100000))).code, 'FRT_ERR_VALIDATION')
})

t.test('Checker.check reports the first failure of a flat schema', async (t) => {
  const checker = new Checker('n', Type.Object({ n: Type.Number() }))
  t.equal(checker.name, 'n')
  t.equal(checker.check({ n: 1 }), undefined)
  t.match(checker.check({ n: 'x' }), { path: '/n', message: String })
})

t.test('a 1e5-deep array against Type.Unknown() throws FRT_ERR_SERIALIZE, not a RangeError', async (t) => {
  const err = errorOf(() => compiledOf(chat).serializeEvent('anything', nested(100000)))
  t.equal(err.code, 'FRT_ERR_SERIALIZE')
  t.notOk(err instanceof RangeError)
})
