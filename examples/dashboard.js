// @ts-check
// A live dashboard of the server itself: every second the server samples `fastify.realtime.stats()`
// (open connections by transport, messages sent and received per second) and publishes the sample
// to the topic `dashboard`; the page plots the samples with uPlot as they arrive over SSE. Samples
// carry event ids, so a page that loses its connection resumes with Last-Event-ID and the series
// has no gap: the samples published meanwhile are replayed first.
// - GET /dashboard: the page; GET /dashboard/events: the samples (SSE, resumable);
//   POST /dashboard/drop: ends every dashboard stream, as a network blip would (the pages resume).
// uPlot is served from node_modules (a dev dependency of this repository, so `npm install` brings
// it); without it the page says so and shows the latest sample as text.
//
// Run:  npm start   (then open http://127.0.0.1:3000/dashboard, and other demos in other tabs)
// Poke: curl -N http://127.0.0.1:3000/dashboard/events
//       curl -X POST http://127.0.0.1:3000/dashboard/drop

import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse } from 'fastify-realtime'
import { servePackageFile } from './assets.js'
import { HTML, page } from './page.js'

export const dashboardContract = defineContract({
  events: {
    sample: Type.Object({
      /** 1, 2, 3...: consecutive samples, so a page can see a gap. */
      seq: Type.Integer({ minimum: 1 }),
      /** When the sample was taken, epoch ms. */
      time: Type.Number(),
      sse: Type.Integer({ minimum: 0 }),
      ws: Type.Integer({ minimum: 0 }),
      sentPerSecond: Type.Number({ minimum: 0 }),
      receivedPerSecond: Type.Number({ minimum: 0 })
    })
  }
})

/**
 * @typedef {object} DashboardOptions
 * @property {number} [intervalMs] between two samples (default 1000)
 */

/**
 * Routes: GET /dashboard, /dashboard/events, /dashboard/uplot.js, /dashboard/uplot.css; POST /dashboard/drop.
 * Needs `fastifySse` registered on a parent (it provides `reply.sse` and `fastify.realtime`).
 * @param {import('fastify').FastifyInstance} fastify
 * @param {DashboardOptions} options
 */
export default async function dashboard (fastify, { intervalMs = 1000 }) {
  const realtime = fastify.realtime
  const samples = realtime.topic('dashboard', { contract: dashboardContract })
  let seq = 0
  let last = { time: Date.now(), ...realtime.stats().totals }
  // Sampled whether anyone watches or not: the broker keeps the recent samples for pages that resume.
  const sampler = setInterval(() => {
    const { connections, totals } = realtime.stats()
    const time = Date.now()
    const seconds = Math.max(time - last.time, 1) / 1000
    samples.publish('sample', {
      seq: ++seq,
      time,
      sse: connections.sse,
      ws: connections.ws,
      sentPerSecond: Math.max(0, totals.sent - last.sent) / seconds,
      receivedPerSecond: Math.max(0, totals.received - last.received) / seconds
    }).catch((err) => fastify.log.warn({ err }, 'cannot publish a dashboard sample'))
    last = { time, ...totals }
  }, intervalMs)
  sampler.unref()
  fastify.addHook('onClose', async () => clearInterval(sampler))

  servePackageFile(fastify, '/dashboard/uplot.js', 'uplot/dist/uPlot.iife.min.js', 'text/javascript; charset=utf-8')
  servePackageFile(fastify, '/dashboard/uplot.css', 'uplot/dist/uPlot.min.css', 'text/css; charset=utf-8')
  fastify.get('/dashboard', (request, reply) => reply.type(HTML).send(dashboardPage))

  /** @type {Set<import('fastify-realtime').SseStream<typeof dashboardContract>>} */
  const open = new Set()
  // A declared SSE route: reply.sse() takes its contract, and the AsyncAPI document lists it.
  fastify.get('/dashboard/events', { sse: { contract: dashboardContract } }, async (request, reply) => {
    const stream = reply.sse({ retry: 1000 })
    open.add(stream)
    stream.closed.then(() => open.delete(stream))
    // Replays the samples after the request's Last-Event-ID, then live: the series has no gap.
    await stream.subscribe(samples)
    return reply
  })

  fastify.post('/dashboard/drop', async () => {
    const dropped = open.size
    for (const stream of open) stream.close()
    return { dropped }
  })
}

/**
 * A standalone app serving this example, for tests and embedding.
 * @param {DashboardOptions} [options]
 */
export async function build (options = {}) {
  const app = Fastify()
  await app.register(fastifySse)
  await app.register(dashboard, options)
  return app
}

const dashboardPage = page('Dashboard: this server, live', `
<link rel="stylesheet" href="/dashboard/uplot.css">
<p>Every second the server samples <code>fastify.realtime.stats()</code> and publishes the sample
to a topic; this page plots them over SSE. Open other demos in other tabs and watch the
connections come and go. Each sample has an event id: after a dropped connection the browser
resumes with <code>Last-Event-ID</code> and the samples published meanwhile are replayed, so the
series has no gap.</p>
<p><button id="drop">Drop the connection</button>
Status: <output id="status">connecting…</output> ·
samples: <output id="count">0</output> · reconnects: <output id="reconnects">0</output> ·
gaps: <output id="gaps">0</output></p>
<p>Latest: <output id="latest">none yet</output></p>
<p id="missing" class="note" hidden>The plot needs uPlot, a dev dependency of this repository:
run <code>npm install</code> (not <code>--omit=dev</code>). The numbers above still update.</p>
<div id="plot"></div>
<script src="/dashboard/uplot.js"></script>
<script>
  const $ = (id) => document.getElementById(id)
  const KEEP = 300
  // uPlot's columns: time (s), SSE connections, WebSocket connections, messages sent/s, received/s.
  const data = [[], [], [], [], []]
  const plot = typeof uPlot === 'function'
    ? new uPlot({
      width: Math.min(720, document.body.clientWidth),
      height: 320,
      scales: { connections: { auto: true }, rate: { auto: true } },
      series: [
        {},
        { label: 'SSE connections', scale: 'connections', stroke: '#1f77b4', width: 2 },
        { label: 'WebSocket connections', scale: 'connections', stroke: '#ff7f0e', width: 2 },
        { label: 'sent/s', scale: 'rate', stroke: '#2ca02c', dash: [6, 4] },
        { label: 'received/s', scale: 'rate', stroke: '#d62728', dash: [2, 4] }
      ],
      axes: [{}, { scale: 'connections', label: 'connections' }, { scale: 'rate', side: 1, label: 'messages/s', grid: { show: false } }]
    }, data, $('plot'))
    : undefined
  if (plot === undefined) $('missing').hidden = false
  const seen = []
  // For the browser test: what the page received and plotted.
  window.dashboard = { data, plot, seen }

  const source = new EventSource('/dashboard/events')
  let opened = false
  let lastSeq
  source.onopen = () => {
    $('status').textContent = 'open'
    if (opened) $('reconnects').textContent = Number($('reconnects').textContent) + 1
    opened = true
  }
  source.onerror = () => {
    $('status').textContent = source.readyState === EventSource.CONNECTING ? 'reconnecting…' : 'closed'
  }
  source.addEventListener('sample', (event) => {
    const sample = JSON.parse(event.data)
    if (lastSeq !== undefined && sample.seq !== lastSeq + 1) $('gaps').textContent = Number($('gaps').textContent) + 1
    lastSeq = sample.seq
    seen.push(sample.seq)
    const row = [sample.time / 1000, sample.sse, sample.ws, sample.sentPerSecond, sample.receivedPerSecond]
    row.forEach((value, column) => {
      data[column].push(value)
      if (data[column].length > KEEP) data[column].shift()
    })
    plot?.setData(data)
    $('count').textContent = seen.length
    $('latest').textContent = 'SSE ' + sample.sse + ', WebSocket ' + sample.ws + ', ' +
      sample.sentPerSecond.toFixed(1) + ' sent/s, ' + sample.receivedPerSecond.toFixed(1) + ' received/s'
  })
  // The Last-Event-ID has left the history: what follows is live, after a gap the page cannot fill.
  source.addEventListener('realtime.reset', () => { lastSeq = undefined })

  $('drop').onclick = () => fetch('/dashboard/drop', { method: 'POST' })
</script>`)
