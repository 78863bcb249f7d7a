// @ts-check
// The classic counter, twice:
// - GET /counter/events: a push stream from reply.sse(). Every tick sends the count as a plain
//   `message` event (what `onmessage` receives) and every few ticks a named `ping` event with JSON.
//   Each connection counts from 1: nothing is kept, so there is nothing to resume.
// - GET /ticks/events: the same beat published to the topic `ticks`. Topic events carry ids and
//   the broker keeps them, so a client that reconnects with Last-Event-ID gets what it missed. The
//   /ticks page reads it with createSseClient from fastify-realtime/client (served by
//   ./browser-client.js), which resumes across drops and restarts and shows every tick once.
//
// Run:  npm start   (then open http://127.0.0.1:3000/counter and http://127.0.0.1:3000/ticks;
//       stop and start the server while /ticks is open: the page resumes where it was)
// Poke: curl -N http://127.0.0.1:3000/counter/events
//       curl -N http://127.0.0.1:3000/ticks/events
//       curl -N -H 'Last-Event-ID: <an id printed above>' http://127.0.0.1:3000/ticks/events
//       curl -i http://127.0.0.1:3000/counter/stop          (204: an EventSource stops for good)
//       curl -X POST http://127.0.0.1:3000/ticks/drop       (ends every /ticks stream; browsers resume)

import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse } from 'fastify-realtime'
import browserClient, { CLIENT_URL } from './browser-client.js'
import { HTML, page } from './page.js'

export const counterContract = defineContract({
  events: {
    // `message` is the type of events sent without a name: a plain `onmessage` sees them.
    message: Type.Integer({ minimum: 1 }),
    ping: Type.Object({ time: Type.String() })
  }
})

export const ticksContract = defineContract({
  events: { tick: Type.Object({ n: Type.Integer({ minimum: 1 }), time: Type.String() }) }
})

/**
 * @typedef {object} CounterOptions
 * @property {number} [intervalMs] between two counts, and between two published ticks (default 1000)
 * @property {number} [pingEvery] a `ping` every this many counts (default 3)
 */

/**
 * Routes: GET /counter, /counter/events, /counter/stop, /ticks, /ticks/events; POST /ticks/drop.
 * Needs `fastifySse` registered on a parent (it provides `reply.sse` and `fastify.realtime`), and
 * ./browser-client.js registered once on the server for the /ticks page.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {CounterOptions} options
 */
export default async function counter (fastify, { intervalMs = 1000, pingEvery = 3 }) {
  fastify.get('/counter', (request, reply) => reply.type(HTML).send(counterPage))

  fastify.get('/counter/events', { sse: { contract: counterContract } }, (request, reply) => {
    const stream = reply.sse()
    let count = 0
    const timer = setInterval(() => {
      count++
      stream.send('message', count)
      if (count % pingEvery === 0) stream.send('ping', { time: new Date().toISOString() })
    }, intervalMs)
    // The stream outlives this handler; its end (client gone, or the server closing) stops the timer.
    stream.closed.then(() => clearInterval(timer))
  })

  // Any status other than 200 makes an EventSource give up instead of reconnecting (WHATWG HTML,
  // "fail the connection"); 204 is the conventional "done, do not come back".
  fastify.get('/counter/stop', (request, reply) => reply.code(204).send())

  const ticks = fastify.realtime.topic('ticks', { contract: ticksContract })
  let n = 0
  // Published whether anyone listens or not: the broker keeps recent events for clients that resume.
  const publisher = setInterval(() => {
    ticks.publish('tick', { n: ++n, time: new Date().toISOString() })
      .catch((err) => fastify.log.warn({ err }, 'cannot publish a tick'))
  }, intervalMs)
  publisher.unref()
  fastify.addHook('onClose', async () => clearInterval(publisher))

  /** @type {Set<import('fastify-realtime').SseStream<typeof ticksContract>>} */
  const open = new Set()

  fastify.get('/ticks', (request, reply) => reply.type(HTML).send(ticksPage))

  fastify.get('/ticks/events', { sse: { contract: ticksContract } }, async (request, reply) => {
    // No reconnect sooner than this: an EventSource would wait about 3 s, the client backs off from 0.5 s.
    const stream = reply.sse({ retry: 1000 })
    open.add(stream)
    stream.closed.then(() => open.delete(stream))
    // Replays the ticks after the request's Last-Event-ID, then goes live: no gap, no duplicate.
    await stream.subscribe(ticks)
    return reply
  })

  // What a network blip does, on demand: every /ticks client reconnects and resumes.
  fastify.post('/ticks/drop', async () => {
    const dropped = open.size
    for (const stream of open) stream.close()
    return { dropped }
  })
}

/**
 * A standalone app serving this example, for tests and embedding.
 * @param {CounterOptions} [options]
 */
export async function build (options = {}) {
  const app = Fastify()
  await app.register(fastifySse)
  await app.register(browserClient)
  await app.register(counter, options)
  return app
}

const counterPage = page('Counter', `
<p>One <code>EventSource</code> on <code>/counter/events</code>: <code>onmessage</code> receives the
count (plain <code>message</code> events), <code>addEventListener('ping')</code> receives the named
<code>ping</code> events and their JSON.</p>
<p>Status: <output id="status">connecting…</output></p>
<p>Count: <output id="count">none yet</output></p>
<p>Pings (newest first):</p>
<ol id="pings" reversed></ol>
<h2>204 stops reconnection</h2>
<p>An <code>EventSource</code> reconnects whenever its stream ends, unless the server answers with
a status other than 200. <code>/counter/stop</code> answers 204:
<button id="try-stop">new EventSource('/counter/stop')</button> <output id="stop-status"></output></p>
<script>
  const $ = (id) => document.getElementById(id)
  const source = new EventSource('/counter/events')
  source.onopen = () => { $('status').textContent = 'open' }
  source.onerror = () => {
    $('status').textContent = source.readyState === EventSource.CONNECTING ? 'reconnecting…' : 'closed'
  }
  source.onmessage = (event) => { $('count').textContent = event.data }
  source.addEventListener('ping', (event) => {
    const item = document.createElement('li')
    item.textContent = JSON.parse(event.data).time
    $('pings').prepend(item)
    if ($('pings').children.length > 10) $('pings').lastElementChild.remove()
  })

  $('try-stop').onclick = () => {
    const stopped = new EventSource('/counter/stop')
    $('stop-status').textContent = 'connecting…'
    stopped.onerror = () => {
      $('stop-status').textContent = stopped.readyState === EventSource.CLOSED
        ? 'closed for good (readyState 2): the browser will not retry'
        : 'reconnecting…'
    }
  }
</script>`)

const ticksPage = page('Ticks: a topic that resumes', `
<p>The server publishes a tick to the topic <code>ticks</code> every second, whoever listens. Every
event carries its <code>id</code>. The page reads the stream with <code>createSseClient</code> from
<code>fastify-realtime/client</code>: when the connection drops, or the server restarts, it
reconnects with the last id as <code>Last-Event-ID</code>, the server replays the ticks published
meanwhile, and the client drops any tick it has already shown, so the numbers below never skip
and never repeat.</p>
<p><button id="drop">Drop the connection</button> <span class="note">(the server ends every
<code>/ticks</code> stream; the client comes back after the server's <code>retry: 1000</code>)</span></p>
<p>Status: <output id="status">connecting…</output></p>
<ol id="ticks" reversed></ol>
<script type="module">
  import { createSseClient } from '${CLIENT_URL}'
  const $ = (id) => document.getElementById(id)
  let opened = false
  let lastN

  function show (text) {
    const item = document.createElement('li')
    item.textContent = text
    $('ticks').prepend(item)
    if ($('ticks').children.length > 50) $('ticks').lastElementChild.remove()
  }

  const feed = createSseClient('/ticks/events')
  feed.onState(({ state, status, retryInMs }) => {
    if (state === 'open') {
      if (opened) show('reconnected with Last-Event-ID: ' + feed.lastEventId + '; any ticks missed meanwhile are replayed first')
      opened = true
    }
    $('status').textContent = state === 'reconnecting'
      ? 'reconnecting in ' + Math.round(retryInMs) + ' ms' + (status === undefined ? '' : ' (HTTP ' + status + ')')
      : state
  })
  feed.on('tick', ({ n, time }, { id }) => {
    const gap = lastN !== undefined && n !== lastN + 1 ? ' (gap!)' : ''
    lastN = n
    show('tick ' + n + ', id ' + id + ', ' + time + gap)
  })
  // The Last-Event-ID has left the history: what follows is live, not a replay.
  feed.onReset(() => {
    lastN = undefined
    show('history gone: reset, live from here')
  })
  // For the curious, in the console: feed.state, feed.lastEventId.
  window.feed = feed

  $('drop').onclick = () => fetch('/ticks/drop', { method: 'POST' })
</script>`)
