// @ts-check
// The schemas every implementation uses: a `tick` event (what the fan-out suites publish) and the
// `add` request of the echo suite, with its reply. The baselines and the other libraries check
// requests with the TypeCompiler check compiled here, once; fastify-realtime with its contracts
// (contracts.mjs), which compile the same schemas.

import { Type } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'

export const Tick = Type.Object({ seq: Type.Integer({ minimum: 0 }), ts: Type.Number(), text: Type.String() })
export const Add = Type.Object({ a: Type.Integer(), b: Type.Integer(), text: Type.String({ maxLength: 256 }) })
export const AddReply = Type.Object({ sum: Type.Integer(), text: Type.String() })

export const checkAdd = TypeCompiler.Compile(Add)

/**
 * The raw baselines' and @fastify/websocket's answer to one echo request, in fastify-realtime's
 * envelope: `{"type":"reply","id":n,"data":{...}}`, or an error frame when the request is not valid.
 * @param {import('node:buffer').Buffer | ArrayBuffer | Buffer[]} data
 */
export function answerAdd (data) {
  let message
  try {
    message = JSON.parse(String(data))
  } catch {
    return '{"type":"error","error":{"code":"BAD_JSON","message":"Invalid JSON."}}'
  }
  const id = message?.id
  if (message?.type !== 'add' || !checkAdd.Check(message.data)) {
    return JSON.stringify({ type: 'error', id, error: { code: 'VALIDATION', message: 'The data of "add" does not match its schema.' } })
  }
  return JSON.stringify({ type: 'reply', id, data: { sum: message.data.a + message.data.b, text: message.data.text } })
}
