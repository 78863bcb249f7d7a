import type { Static, TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import {
  FRT_ERR_INVALID_NAME,
  FRT_ERR_INVALID_OPTION,
  FRT_ERR_SERIALIZE,
  FRT_ERR_UNKNOWN_EVENT,
  FRT_ERR_VALIDATION
} from './errors.js'
import type { ValidationDetail } from './protocol/messages.js'
import { NAME_PATTERN, RESERVED_PREFIX } from './protocol/names.js'

export type { ValidationDetail } from './protocol/messages.js'

/** A map of names to TypeBox schemas. */
export type SchemaMap = Record<string, TSchema>

/**
 * One set of TypeBox schemas for both transports, made by {@link defineContract}.
 * - `events`: server -> client, over SSE and WebSocket.
 * - `messages`: client -> server, over WebSocket.
 * - `replies`: the reply payload of a message, keyed by the message name.
 */
export interface Contract<
  E extends SchemaMap = SchemaMap,
  M extends SchemaMap = SchemaMap,
  R extends SchemaMap = SchemaMap
> {
  readonly events: E
  readonly messages: M
  readonly replies: R
}

/** Any contract, whatever its schemas. */
export type AnyContract = Contract<any, any, any>

/** The event names of a contract. */
export type EventName<C extends AnyContract> = keyof C['events'] & string
/** The static type of an event's data, inferred from its schema. */
export type EventData<C extends AnyContract, K extends EventName<C>> = Static<C['events'][K]>
/** The message names of a contract. */
export type MessageName<C extends AnyContract> = keyof C['messages'] & string
/** The static type of a message's data, inferred from its schema. */
export type MessageData<C extends AnyContract, K extends MessageName<C>> = Static<C['messages'][K]>
/** The static type of a message's reply, or `void` when the contract declares no reply for it. */
export type ReplyData<C extends AnyContract, K extends MessageName<C>> =
  K extends keyof C['replies'] ? Static<C['replies'][K]> : void

/** What {@link defineContract} takes: each map is optional. */
export interface ContractDefinition<E extends SchemaMap, M extends SchemaMap, R extends SchemaMap> {
  /** Server -> client events, for SSE and WebSocket. */
  events?: E
  /** Client -> server messages, for WebSocket. */
  messages?: M
  /** Reply payloads, keyed by message name. */
  replies?: R
}

/**
 * Checks an event, message or topic name: 1..64 chars of `[A-Za-z0-9_.:-]`, not starting with `realtime.`.
 * @internal
 */
export function assertName (kind: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new FRT_ERR_INVALID_NAME(kind, JSON.stringify(name) ?? String(name), 'use 1 to 64 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-"')
  }
  if (name.startsWith(RESERVED_PREFIX)) {
    throw new FRT_ERR_INVALID_NAME(kind, JSON.stringify(name), 'names starting with "realtime." are reserved for the library')
  }
}

/** A schema compiled once, with its name. @internal */
export class Checker {
  readonly name: string
  private readonly compiled: TypeCheck<TSchema>

  constructor (name: string, schema: TSchema) {
    this.name = name
    this.compiled = TypeCompiler.Compile(schema)
  }

  /** Returns the first failure, or undefined when `value` matches. */
  check (value: unknown): ValidationDetail | undefined {
    try {
      if (this.compiled.Check(value)) return undefined
      const first = this.compiled.Errors(value).First()
      /* c8 ignore next -- Errors() reports at least one failure whenever Check() fails */
      return first === undefined ? { path: '', message: 'Invalid value' } : { path: first.path, message: first.message }
    } catch {
      // A recursive schema can overflow the stack on a nesting bomb: that is invalid data, not a crash.
      return { path: '', message: 'Value is nested too deeply' }
    }
  }
}

/** The compiled side of a contract, made once by defineContract. @internal */
export class CompiledContract {
  readonly events: Map<string, Checker>
  readonly messages: Map<string, Checker>
  readonly replies: Map<string, Checker>

  constructor (events: SchemaMap, messages: SchemaMap, replies: SchemaMap) {
    this.events = compileMap('event', events)
    this.messages = compileMap('message', messages)
    this.replies = compileMap('reply', replies)
    for (const name of this.replies.keys()) {
      if (!this.messages.has(name)) {
        throw new FRT_ERR_INVALID_OPTION('replies', `"${name}" has a reply schema but no message of that name`)
      }
    }
  }

  /** Validates an outbound event and returns its JSON text. Throws a coded error on any failure. */
  serializeEvent (event: string, data: unknown): string {
    const checker = this.events.get(event)
    if (checker === undefined) {
      throw new FRT_ERR_UNKNOWN_EVENT(event, describeNames(this.events))
    }
    const failure = checker.check(data)
    if (failure !== undefined) throw validationError(event, failure)
    return serializeJson(event, data)
  }
}

function compileMap (kind: string, schemas: SchemaMap | undefined): Map<string, Checker> {
  const map = new Map<string, Checker>()
  if (schemas === undefined) return map
  if (schemas === null || typeof schemas !== 'object') {
    throw new FRT_ERR_INVALID_OPTION(`${kind}s`, 'expected an object of TypeBox schemas')
  }
  for (const [name, schema] of Object.entries(schemas)) {
    assertName(kind, name)
    if (schema === null || typeof schema !== 'object') {
      throw new FRT_ERR_INVALID_OPTION(`${kind}s.${name}`, 'expected a TypeBox schema')
    }
    let checker: Checker
    try {
      checker = new Checker(name, schema)
    } catch (err) {
      throw new FRT_ERR_INVALID_OPTION(`${kind}s.${name}`, `expected a TypeBox schema (${(err as Error).message})`)
    }
    map.set(name, checker)
  }
  return map
}

function describeNames (map: Map<string, Checker>): string {
  return map.size === 0 ? 'no events' : [...map.keys()].map((name) => `"${name}"`).join(', ')
}

/** Builds FRT_ERR_VALIDATION with its `details`. @internal */
export function validationError (name: string, failure: ValidationDetail): Error & { details: ValidationDetail[] } {
  const err = new FRT_ERR_VALIDATION(name, failure.path || '/', failure.message) as unknown as unknown as Error & { details: ValidationDetail[] }
  err.details = [failure]
  return err
}

/** JSON.stringify that never throws anything but FRT_ERR_SERIALIZE, and never returns undefined. @internal */
export function serializeJson (name: string, data: unknown): string {
  let json: string | undefined
  try {
    json = JSON.stringify(data)
  } catch (err) {
    throw new FRT_ERR_SERIALIZE(name, (err as Error).message)
  }
  if (json === undefined) throw new FRT_ERR_SERIALIZE(name, `${typeof data} is not a JSON value`)
  return json
}

/**
 * An event's data as JSON: validated against the contract when there is one; without one, only the
 * event name is checked. Throws a coded error on any failure. @internal
 */
export function serializeEventData (compiled: CompiledContract | undefined, event: string, data: unknown): string {
  if (compiled !== undefined) return compiled.serializeEvent(event, data)
  assertName('event', event)
  return serializeJson(event, data)
}

const compiledContracts = new WeakMap<AnyContract, CompiledContract>()

/** The compiled form of a contract made by defineContract, or a coded error for anything else. @internal */
export function compiledOf (contract: unknown, option = 'contract'): CompiledContract {
  const compiled = compiledContracts.get(contract as AnyContract)
  if (compiled === undefined) {
    throw new FRT_ERR_INVALID_OPTION(option, 'expected a contract made by defineContract()')
  }
  return compiled
}

/**
 * Defines a contract: TypeBox schemas for server events, client messages and their replies.
 * Every schema is compiled once, here; payload types are inferred from the schemas.
 *
 * @example
 * const chat = defineContract({
 *   events: { message: Type.Object({ user: Type.String(), text: Type.String() }) },
 *   messages: { say: Type.Object({ text: Type.String({ minLength: 1 }) }) },
 *   replies: { say: Type.Object({ id: Type.String() }) }
 * })
 */
export function defineContract<
  E extends SchemaMap = {},
  M extends SchemaMap = {},
  R extends SchemaMap = {}
> (definition: ContractDefinition<E, M, R>): Contract<E, M, R> {
  if (definition === null || typeof definition !== 'object') {
    throw new FRT_ERR_INVALID_OPTION('definition', 'expected an object with events, messages and/or replies')
  }
  const events = definition.events === undefined ? ({} as E) : definition.events
  const messages = definition.messages === undefined ? ({} as M) : definition.messages
  const replies = definition.replies === undefined ? ({} as R) : definition.replies
  const compiled = new CompiledContract(events, messages, replies)
  const contract: Contract<E, M, R> = Object.freeze({ events, messages, replies })
  compiledContracts.set(contract, compiled)
  return contract
}
