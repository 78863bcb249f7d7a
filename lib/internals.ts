// Every reach into another library's private state, in one place. Each has a test in
// test/internals.test.ts that fails by name when that library changes under it.
import { ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Socket } from 'node:net'
import type { FastifyRequest } from 'fastify'
import type WebSocket from 'ws'
import { CloseCode } from './protocol/close-codes.js'

/** The TCP socket under a ws WebSocket (ws keeps it in `_socket`). @internal */
export function tcpSocketOf (socket: WebSocket): Socket {
  return (socket as unknown as { _socket: Socket })._socket
}

// ws's public error codes (`err.code`) and the close codes ws sends for them (ws lib/receiver.js).
const WS_ERROR_CLOSE_CODES: Readonly<Record<string, number>> = Object.freeze({
  WS_ERR_INVALID_OPCODE: CloseCode.ProtocolError,
  WS_ERR_UNEXPECTED_RSV_1: CloseCode.ProtocolError,
  WS_ERR_UNEXPECTED_RSV_2_3: CloseCode.ProtocolError,
  WS_ERR_EXPECTED_FIN: CloseCode.ProtocolError,
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: CloseCode.ProtocolError,
  WS_ERR_EXPECTED_MASK: CloseCode.ProtocolError,
  WS_ERR_UNEXPECTED_MASK: CloseCode.ProtocolError,
  WS_ERR_INVALID_CLOSE_CODE: CloseCode.ProtocolError,
  WS_ERR_INVALID_UTF8: CloseCode.InvalidPayload,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig
})

// ws keeps the close code of a protocol error under this symbol; an inflate failure (a zlib error,
// whose `code` is zlib's) or a code ws adds later has no public code to read it from.
let kStatusCode: symbol | undefined

/** The close code ws sent after a protocol error, or undefined for any other error. @internal */
export function closeCodeOfWsError (err: object): number | undefined {
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && Object.hasOwn(WS_ERROR_CLOSE_CODES, code)) return WS_ERROR_CLOSE_CODES[code]
  kStatusCode ??= Object.getOwnPropertySymbols(err).find((symbol) => symbol.description === 'status-code')
  return kStatusCode === undefined ? undefined : (err as Record<symbol, number | undefined>)[kStatusCode]
}

// Fastify creates request.signal lazily, keeping its controller under this symbol.
let kRequestSignal: symbol | undefined

/** The controller behind `request.signal`, if the handler has made it. @internal */
export function requestSignalController (request: FastifyRequest): AbortController | undefined {
  kRequestSignal ??= Object.getOwnPropertySymbols(request).find((symbol) => symbol.description === 'fastify.request.signal')
  const controller = kRequestSignal === undefined ? undefined : (request as any)[kRequestSignal] as AbortController | null | undefined
  return controller ?? undefined
}

/**
 * The socket of an HTTP/1.1 response that may take pre-built chunks as they are: chunked, written
 * through Node's own write(), the response the socket is serving (`_httpMessage`: not one queued
 * behind another on a pipelined connection), with nothing of its own left unsent. @internal
 */
export function chunkedSocketOf (raw: ServerResponse | object): Socket | undefined {
  if (!(raw instanceof ServerResponse) || !raw.chunkedEncoding || raw.write !== ServerResponse.prototype.write) return undefined
  const socket = raw.socket as (Socket & { _httpMessage?: unknown }) | null
  if (socket === null || socket._httpMessage !== raw || raw.writableLength !== socket.writableLength) return undefined
  return socket
}

/**
 * The bytes of a socket's write in progress that the kernel has not taken yet: libuv's write queue,
 * which Node's handle reports as `writeQueueSize` and which falls as the kernel accepts each part
 * (`writableLength` only falls once a whole write is done). 0 where the socket has no such handle. @internal
 */
export function queuedBytesOf (socket: Socket | null): number {
  const size = (socket as unknown as { _handle?: { writeQueueSize?: unknown } | null } | null)?._handle?.writeQueueSize
  return typeof size === 'number' ? size : 0
}

/**
 * Makes a ws WebSocket the client end of an already upgraded socket: ws only does that for sockets
 * it upgraded itself, so the server-mode instance is switched (`_isServer`) and given the socket
 * (`setSocket`). @internal
 */
export function attachClientSocket (socket: WebSocket, duplex: Duplex, head: Buffer): void {
  ;(socket as unknown as { _isServer: boolean })._isServer = false
  ;(socket as unknown as { setSocket: (socket: Duplex, head: Buffer, options: object) => void })
    .setSocket(duplex, head, { maxPayload: 0 })
}
