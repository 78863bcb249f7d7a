// TypeBox schemas as AsyncAPI Schema Objects (a superset of JSON Schema draft 07, AsyncAPI 3.0.0
// section "Schema Object"). A TypeBox schema is JSON Schema already, except for the types that have
// no JSON form (Type.Date, Type.Uint8Array, Type.Undefined...) and references, which the document
// cannot resolve: those are refused with an error that names the route and the message.
import { FRT_ERR_ASYNCAPI_SCHEMA } from '../errors.js'

/** A JSON Schema, as a plain JSON object. */
export type JsonSchema = Record<string, unknown>

const JSON_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'])
// Keywords whose values are instances, not schemas: a `type` inside them is data.
const VALUE_KEYWORDS = new Set(['const', 'enum', 'default', 'examples', 'example'])

/** The first part of a schema that is not JSON Schema, as a JSON pointer and why; undefined when none. */
function firstForeignPart (value: unknown, path: string): [string, string] | undefined {
  if (value === null || typeof value !== 'object') return undefined
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = firstForeignPart(value[i], `${path}/${i}`)
      if (found !== undefined) return found
    }
    return undefined
  }
  for (const [key, child] of Object.entries(value)) {
    if (VALUE_KEYWORDS.has(key)) continue
    if (key === '$ref') return [path, `a reference (${JSON.stringify(child)}) from Type.Ref or Type.Recursive`]
    if (key === 'type' && typeof child === 'string' && !JSON_TYPES.has(child)) {
      return [path, `the type "${child}", which has no JSON form`]
    }
    const found = firstForeignPart(child, `${path}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`)
    if (found !== undefined) return found
  }
  return undefined
}

/**
 * A copy of a TypeBox (or plain JSON) schema as JSON, without TypeBox's symbol keys. Throws
 * FRT_ERR_ASYNCAPI_SCHEMA, naming `where`, for a schema that is not JSON Schema. @internal
 */
export function jsonSchemaOf (schema: unknown, where: string): JsonSchema {
  let copy: JsonSchema
  try {
    copy = JSON.parse(JSON.stringify(schema)) as JsonSchema
  } catch (err) {
    throw new FRT_ERR_ASYNCAPI_SCHEMA(where, '/', `it cannot be written as JSON (${(err as Error).message})`)
  }
  const foreign = firstForeignPart(copy, '')
  if (foreign !== undefined) throw new FRT_ERR_ASYNCAPI_SCHEMA(where, foreign[0] || '/', foreign[1])
  return copy
}
