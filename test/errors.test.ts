import t from 'tap'
import { readFileSync } from 'node:fs'
import * as errors from '../lib/errors.js'
import { CloseCode, closeAction, type CloseAction } from '../lib/protocol/close-codes.js'
import { ErrorCode } from '../lib/protocol/messages.js'
import { clientError, publicError } from '../lib/public-error.js'

const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

/** The rows of the README table that follows `heading`, as arrays of trimmed cells. */
function tableAfter (heading: string): string[][] {
  const start = README.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`README has no ${heading}`)
  const lines = README.slice(start).split('\n')
  const first = lines.findIndex((line) => line.startsWith('|'))
  const rows: string[][] = []
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith('|')) break
    rows.push(line.slice(1, -1).split(' | ').map((cell) => cell.trim()))
  }
  return rows
}

function errorOf (fn: () => unknown): any {
  try {
    fn()
  } catch (err) {
    return err
  }
  return { code: 'did not throw' }
}

const entries = Object.entries(errors) as [string, new (...args: string[]) => Error & { code: string, statusCode: number }][]

t.test('lib/errors.ts exports exactly the library\'s errors, all constructors', async (t) => {
  t.equal(entries.length, 19, 'adding or removing an error changes this count, the README table and API.md')
  for (const [key, ErrorClass] of entries) t.type(ErrorClass, 'function', key)
})

t.test('the README errors table lists exactly the exported errors', async (t) => {
  const codes = tableAfter('## Errors').map(([code]) => (code as string).replace(/`/g, ''))
  t.same([...codes].sort(), entries.map(([key]) => key).sort())
  t.equal(new Set(codes).size, codes.length, 'no row twice')
})

t.test('the README table of error-frame codes lists exactly the codes of ErrorCode', async (t) => {
  const codes = tableAfter('### Wire format (JSON text frames)').map(([code]) => (code as string).replace(/`/g, ''))
  t.same(codes, Object.values(ErrorCode), 'one row per code, in order')
})

t.test('the README close-code table lists every CloseCode, with its name and what a client does', async (t) => {
  const actions: Record<CloseAction, string> = {
    stop: 'stop',
    backoff: 'back off, reconnect, resume',
    spread: 'reconnect after a random 0-2 s, resume',
    soon: 'reconnect within 1 s, resume',
    refresh: 'refresh the token, reconnect at once',
    'slow-down': 'back off (at least 10 s), reconnect, resume'
  }
  const rows = tableAfter('### Close codes')
  t.same(rows.map(([code, name]) => [Number(code), (name as string).replace(/`/g, '')]),
    Object.entries(CloseCode).map(([name, code]) => [code, name]), 'one row per code, in order, with its name')
  for (const [code, , , does] of rows) t.equal(does, actions[closeAction(Number(code))], `${code}: ${does}`)
})

t.test('every key equals its code', async (t) => {
  for (const [key, ErrorClass] of entries) {
    t.equal(new ErrorClass('a', 'b', 'c').code, key, key)
  }
})

t.test('every code matches /^FRT_ERR_[A-Z_]+$/', async (t) => {
  for (const [key, ErrorClass] of entries) t.match(new ErrorClass('a', 'b', 'c').code, /^FRT_ERR_[A-Z_]+$/, key)
})

t.test('every instance is an Error with a message, a name and a status code', async (t) => {
  for (const [key, ErrorClass] of entries) {
    const err = new ErrorClass('first', 'second', 'third')
    t.ok(err instanceof Error, `${key} is an Error`)
    t.type(err.message, 'string')
    t.ok(err.message.length > 0, `${key} has a message`)
    t.notMatch(err.message, /%s/, `${key} fills every placeholder`)
    t.equal(err.name, 'FastifyError', `${key} name`)
    // Refused upgrades answer the client with their status; everything else is a server-side error.
    const clientErrors: Record<string, number> = { FRT_ERR_WS_UNAUTHORIZED: 401, FRT_ERR_WS_FORBIDDEN_ORIGIN: 403 }
    if (key in clientErrors) t.equal(err.statusCode, clientErrors[key], `${key} is a ${clientErrors[key]}`)
    else t.ok(err.statusCode >= 500 && err.statusCode < 600, `${key} is a server error`)
  }
})

t.test('the arguments end up in the message', async (t) => {
  t.equal(new errors.FRT_ERR_INVALID_OPTION('maxLen', 'expected a positive integer').message,
    'Invalid option "maxLen": expected a positive integer.')
  t.match(new errors.FRT_ERR_UNKNOWN_EVENT('nope', '"message"').message, /Unknown event "nope": the contract declares "message"/)
  t.match(new errors.FRT_ERR_VALIDATION('message', '/text', 'too short').message, /"message" at "\/text": too short/)
  t.match(new errors.FRT_ERR_SSE_INVALID_FIELD('id').message, /SSE id must not contain CR, LF or NUL/)
  t.equal(new errors.FRT_ERR_TESTING('stream ended').message, 'stream ended')
})

t.test('option, name, event, validation, serialization and field errors are TypeErrors', async (t) => {
  for (const ErrorClass of [errors.FRT_ERR_INVALID_OPTION, errors.FRT_ERR_INVALID_NAME, errors.FRT_ERR_UNKNOWN_EVENT,
    errors.FRT_ERR_VALIDATION, errors.FRT_ERR_SERIALIZE, errors.FRT_ERR_SSE_INVALID_FIELD]) {
    t.ok(new ErrorClass('a', 'b', 'c') instanceof TypeError, ErrorClass.name)
  }
  t.equal(new errors.FRT_ERR_BROKER_UNAVAILABLE('closed').statusCode, 503, 'an unavailable broker is a 503')
})

t.test('publicError makes an exposable error with that code and message', async (t) => {
  const err = publicError('ROOM_FULL', 'This room has 50 members already')
  t.ok(err instanceof Error)
  t.equal(err.code, 'ROOM_FULL')
  t.equal(err.message, 'This room has 50 members already')
  t.equal(err.expose, true)
  t.equal(err.name, 'PublicError')
  t.equal(publicError('X', 42 as unknown as string).message, '42', 'the message is a string')
  t.equal(publicError('A'.repeat(64), 'm').code, 'A'.repeat(64))
})

t.test('publicError with an invalid code throws FRT_ERR_INVALID_OPTION', async (t) => {
  for (const code of ['bad', '', 'ROOM-FULL', 'ROOM FULL', 'A1', 'A'.repeat(65), 'É', 5, null, undefined]) {
    t.equal(errorOf(() => publicError(code as string, 'm')).code, 'FRT_ERR_INVALID_OPTION', String(code))
  }
  t.match(errorOf(() => publicError('bad', 'm')).message, /"bad"/)
})

t.test('clientError passes the code and message of a public error', async (t) => {
  t.same(clientError(publicError('ROOM_FULL', 'full'), 'HANDLER_ERROR', 'Internal error'), { code: 'ROOM_FULL', message: 'full' })
})

t.test('clientError of an expose:true error without a valid code: fallback code, its own message', async (t) => {
  const noCode = Object.assign(new Error('shown'), { expose: true })
  t.same(clientError(noCode, 'HANDLER_ERROR', 'Internal error'), { code: 'HANDLER_ERROR', message: 'shown' })
  const badCode = Object.assign(new Error('shown too'), { expose: true, code: 'lower-case' })
  t.same(clientError(badCode, 'HANDLER_ERROR', 'Internal error'), { code: 'HANDLER_ERROR', message: 'shown too' })
  const numberCode = { expose: true, code: 42, message: 'plain object' }
  t.same(clientError(numberCode, 'SOURCE_ERROR', 'x'), { code: 'SOURCE_ERROR', message: 'plain object' })
})

t.test('clientError of any other error hides it: fallback code and message', async (t) => {
  const secret = Object.assign(new Error('password=hunter2'), { code: 'SECRET_CODE' })
  t.same(clientError(secret, 'HANDLER_ERROR', 'Internal error'), { code: 'HANDLER_ERROR', message: 'Internal error' })
  const almost = Object.assign(new Error('password=hunter2'), { code: 'ROOM_FULL', expose: 'true' })
  t.same(clientError(almost, 'HANDLER_ERROR', 'Internal error'), { code: 'HANDLER_ERROR', message: 'Internal error' }, 'expose must be true itself')
  t.same(clientError(new errors.FRT_ERR_VALIDATION('a', '/', 'b'), 'SOURCE_ERROR', 'Stream failed'), { code: 'SOURCE_ERROR', message: 'Stream failed' })
})

t.test('clientError of null, undefined, strings and numbers: fallback code and message', async (t) => {
  for (const value of [null, undefined, 'boom', 42, true]) {
    t.same(clientError(value, 'SOURCE_ERROR', 'Stream failed'), { code: 'SOURCE_ERROR', message: 'Stream failed' }, String(value))
  }
})
