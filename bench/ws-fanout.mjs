// @ts-check
// The ws-fanout suite: the shape of sse-fanout over WebSocket. C = 100 and 1,000 clients on one
// topic; the server publishes M events of 200 bytes of JSON as fast as backpressure allows.
// Implementations (bench/servers/):
//   raw ws (baseline)     ws-raw.mjs       serialize once, loop socket.send(message) over the clients
//   ws, framed once, corked  ws-corked.mjs the hand-optimised ceiling: the WebSocket frame built once
//                                          per event, written to each `ws._socket`, corked per tick
//   @fastify/websocket    ws-fastify.mjs   the same loop on a Fastify route
//   socket.io             ws-socketio.mjs  io.emit('tick', event), websocket transport
//   fastify-realtime      ws-realtime.mjs  topic.publish() -> conn.subscribe(topic) in onOpen
// Method, measures and table: bench/fanout.mjs; the servers' side: bench/servers/harness.mjs.
//
// Run:  npm run bench -- ws-fanout [--reps=5] [--quick]     or  node --expose-gc bench/ws-fanout.mjs
// Results: tables on stdout, and bench/results/ws-fanout-<time>.json.

import { quick, withBaseline } from './common.mjs'
import { runFanout } from './fanout.mjs'

const scale = quick ? 0.2 : 1

await runFanout({
  name: 'ws-fanout',
  transport: 'ws',
  path: '/ws',
  implementations: withBaseline([
    { name: 'ws', server: 'ws-raw' },
    { name: 'ws, framed once, corked', server: 'ws-corked' },
    { name: '@fastify/websocket', server: 'ws-fastify' },
    { name: 'socket.io', server: 'ws-socketio', protocol: 'socket.io' },
    { name: 'fastify-realtime', server: 'ws-realtime' }
  ]),
  ceiling: 'ws, framed once, corked',
  sizes: [
    { clients: 100, events: Math.round(3000 * scale), warm: Math.round(300 * scale) },
    { clients: 1000, events: Math.round(200 * scale), warm: Math.round(20 * scale) }
  ],
  packages: ['fastify', 'ws', '@fastify/websocket', 'socket.io', 'engine.io', 'fastify-realtime'],
  notes: [
    'every implementation with its defaults (fastify-realtime: maxBufferedBytes 1 MiB, which the publisher never lets a client reach; heartbeat 30 s, socket.io pings every 25 s: both beyond one run)'
  ]
})
