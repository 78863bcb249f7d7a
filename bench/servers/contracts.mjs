// @ts-check
// fastify-realtime's contracts for the bench, made of the schemas every implementation uses
// (schemas.mjs); only the fastify-realtime servers load the library.

import { defineContract } from './library.mjs'
import { Add, AddReply, Tick } from './schemas.mjs'

/** The topic's events (SSE and WS fan-out). */
export const tickContract = defineContract({ events: { tick: Tick } })
/** The echo route's message and reply. */
export const addContract = defineContract({ messages: { add: Add }, replies: { add: AddReply } })

export const TOPIC = 'bench'
