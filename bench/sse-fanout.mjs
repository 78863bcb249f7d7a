// @ts-check
// The sse-fanout suite: C = 100 and 1,000 SSE clients on one topic; the server publishes M events
// of 200 bytes of JSON as fast as backpressure allows. Implementations (bench/servers/):
//   raw node:http (baseline)  sse-raw.mjs          one formatted string per event, res.write() to each
//   node:http, framed once, corked  sse-corked.mjs  the hand-optimised ceiling: the whole HTTP/1.1
//                                                  chunk built once per event, written to each socket,
//                                                  the sockets corked per tick
//   @fastify/sse              sse-fastify-sse.mjs  reply.sse.send({ event, data }) per client
//   fastify-sse-v2            sse-v2.mjs           an async iterable per client, reply.sse(iterable)
//   better-sse                sse-better.mjs       Channel.broadcast()
//   fastify-realtime          sse-realtime.mjs     topic.publish() -> reply.sse().subscribe(topic)
// Method, measures and table: bench/fanout.mjs; the servers' side: bench/servers/harness.mjs.
//
// Run:  npm run bench -- sse-fanout [--reps=5] [--quick]     or  node --expose-gc bench/sse-fanout.mjs
// Results: tables on stdout, and bench/results/sse-fanout-<time>.json.

import { quick, withBaseline } from './common.mjs'
import { runFanout } from './fanout.mjs'

const scale = quick ? 0.2 : 1

await runFanout({
  name: 'sse-fanout',
  transport: 'sse',
  path: '/events',
  implementations: withBaseline([
    { name: 'node:http', server: 'sse-raw' },
    { name: 'node:http, framed once, corked', server: 'sse-corked' },
    { name: '@fastify/sse', server: 'sse-fastify-sse' },
    { name: 'fastify-sse-v2', server: 'sse-v2' },
    { name: 'better-sse', server: 'sse-better' },
    { name: 'fastify-realtime', server: 'sse-realtime' }
  ]),
  ceiling: 'node:http, framed once, corked',
  sizes: [
    { clients: 100, events: Math.round(8000 * scale), warm: Math.round(800 * scale) },
    { clients: 1000, events: Math.round(300 * scale), warm: Math.round(30 * scale) }
  ],
  packages: ['fastify', '@fastify/sse', 'fastify-sse-v2', 'better-sse', 'fastify-realtime'],
  notes: [
    'every implementation with its defaults (fastify-realtime: maxBufferedBytes 1 MiB, which the publisher never lets a client reach)'
  ]
})
