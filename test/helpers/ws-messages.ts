// Contracts and helpers shared by the tests of WebSocket message handling (test/ws/*.test.ts).
import type { Test } from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import type { ConnectedWS, WsFrame } from '../../lib/testing/index.js'
import { buildWs } from './ws.js'

/** A chat route's contract: one event, messages with and without replies. */
export const chat = defineContract({
  events: { message: Type.Object({ text: Type.String() }) },
  messages: {
    say: Type.Object({ text: Type.String({ minLength: 1 }) }),
    note: Type.Object({ text: Type.String() })
  },
  replies: { say: Type.Object({ id: Type.String() }) }
})

export const echo = defineContract({
  messages: { echo: Type.Unknown() },
  replies: { echo: Type.Unknown() }
})

export const HANDLER_FAILED = 'fastify-realtime: a WebSocket message handler failed'
export const BAD_CODES = ['BAD_JSON', 'BAD_FRAME', 'UNKNOWN_TYPE', 'VALIDATION']

/** Every frame the client receives, parsed, in order (request() replies included). */
export function record (ws: ConnectedWS): WsFrame[] {
  const frames: WsFrame[] = []
  ws.socket.on('message', (data: Buffer) => { frames.push(JSON.parse(data.toString())) })
  return frames
}

/** The next `count` frames not taken by request(). */
export async function frames (ws: ConnectedWS, count: number): Promise<WsFrame[]> {
  const got: WsFrame[] = []
  for (let i = 0; i < count; i++) got.push(await ws.nextFrame())
  return got
}

/** An echo route: replies with the data it got. */
export async function echoApp (t: Test, routeOptions: Record<string, unknown> = {}, pluginOptions: Record<string, unknown> = {}) {
  const app = await buildWs(t, pluginOptions)
  let calls = 0
  app.ws('/echo', {
    contract: echo,
    handlers: { echo: (data) => { calls++; return data } },
    ...routeOptions
  })
  await app.ready()
  return { app, calls: () => calls }
}
