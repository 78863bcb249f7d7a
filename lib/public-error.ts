import { FRT_ERR_INVALID_OPTION } from './errors.js'

const PUBLIC_CODE = /^[A-Z_]{1,64}$/

/** An error whose `code` and `message` may be sent to the client as they are. */
export interface PublicError extends Error {
  readonly code: string
  readonly expose: true
}

/**
 * Makes an error that the client may see: its `code` (`[A-Z_]+`) and `message` are sent as they are,
 * in an SSE `realtime.error` event or a WebSocket error frame. Any other error's text stays on the server.
 *
 * @example
 * throw publicError('ROOM_FULL', 'This room has 50 members already')
 */
export function publicError (code: string, message: string): PublicError {
  if (typeof code !== 'string' || !PUBLIC_CODE.test(code)) {
    throw new FRT_ERR_INVALID_OPTION('code', `expected 1 to 64 characters of A-Z or "_", got ${JSON.stringify(code)}`)
  }
  const err = new Error(String(message)) as Error & { code: string, expose: true }
  err.name = 'PublicError'
  err.code = code
  err.expose = true
  return err
}

/** What a client may see of an error: its own code and message when public, else the fallback. @internal */
export function clientError (err: unknown, fallbackCode: string, fallbackMessage: string): { code: string, message: string } {
  const candidate = err as { expose?: unknown, code?: unknown, message?: unknown } | null
  if (candidate !== null && typeof candidate === 'object' && candidate.expose === true) {
    const code = typeof candidate.code === 'string' && PUBLIC_CODE.test(candidate.code) ? candidate.code : fallbackCode
    return { code, message: String(candidate.message) }
  }
  return { code: fallbackCode, message: fallbackMessage }
}
