// @ts-check
// The classic secure echo server: wss:// on HTTPS, on the library's wire protocol. Each client is
// greeted with a `welcome` event; every `echo` message is answered with a reply carrying
// "Server received: <text>". The route is public (`authenticate: false`), yet a page of another
// site still cannot open it: by default the Origin must name the host the socket is opened on.
// The certificate in examples/certs/ is self-signed and for the examples and tests only.
//
// Run:  npm start   (then open https://127.0.0.1:3002/ and accept the certificate warning once)
// Poke: node -e "
//         const WebSocket = require('ws'), ca = require('fs').readFileSync('examples/certs/test-only-cert.pem')
//         const socket = new WebSocket('wss://127.0.0.1:3002/echo', 'realtime.v1', { ca })
//         socket.on('message', (frame) => console.log(String(frame)))
//         socket.on('open', () => socket.send(JSON.stringify({ type: 'echo', id: 1, data: { text: 'hi' } })))"
//       (prints the hello realtime.v1 clients get, the welcome event, then
//        {"type":"reply","id":1,"data":{"text":"Server received: hi"}};
//        Ctrl-C, and the server logs the disconnect)

import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifyWs } from 'fastify-realtime'
import { HTML, page } from './page.js'

export const echoContract = defineContract({
  events: { welcome: Type.Object({ text: Type.String() }) },
  messages: { echo: Type.Object({ text: Type.String({ maxLength: 1000 }) }) },
  replies: { echo: Type.Object({ text: Type.String() }) }
})

export const WELCOME = 'Welcome to the secure echo server: every message you send comes back.'

/**
 * The self-signed certificate for 127.0.0.1 and localhost in examples/certs/.
 * For the examples and tests only: its private key is public.
 * @returns {{ key: Buffer, cert: Buffer }}
 */
export function testOnlyTls () {
  return {
    key: readFileSync(new URL('./certs/test-only-key.pem', import.meta.url)),
    cert: readFileSync(new URL('./certs/test-only-cert.pem', import.meta.url))
  }
}

/**
 * @typedef {object} EchoOptions
 * @property {string} [home] where the page's "all demos" link points (default '/')
 */

/**
 * Routes: GET / (the page) and GET /echo (the socket), for a server of its own: the page opens
 * wss://<its own host>/echo. Needs `fastifyWs` registered on a parent.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {EchoOptions} options
 */
export default async function echo (fastify, { home = '/' }) {
  const html = echoPage(home)
  fastify.get('/', (request, reply) => reply.type(HTML).send(html))

  fastify.ws('/echo', {
    contract: echoContract,
    authenticate: false,
    onOpen (conn) {
      conn.log.info({ connection: conn.id }, 'echo: client connected')
      conn.send('welcome', { text: WELCOME })
    },
    handlers: {
      echo: ({ text }) => ({ text: `Server received: ${text}` })
    },
    onClose (conn, code) {
      conn.log.info({ connection: conn.id, code }, 'echo: client disconnected')
    }
  })
}

/**
 * @typedef {object} EchoBuildOptions
 * @property {boolean} [https] serve HTTPS (and so wss://) with the test-only certificate; plain HTTP otherwise
 * @property {import('fastify').FastifyServerOptions['logger']} [logger] (default false)
 */

/**
 * A standalone app serving this example, for tests and embedding.
 * @param {EchoBuildOptions} [options]
 */
export async function build ({ https = false, logger = false } = {}) {
  // `https: null` is Fastify's plain HTTP server.
  const app = Fastify({ logger, https: https ? testOnlyTls() : null })
  await app.register(fastifyWs)
  await app.register(echo)
  return app
}

/** @param {string} home */
const echoPage = (home) => page('Secure echo over wss://', `
<p>One <code>WebSocket</code> on <code>wss://</code> + this host + <code>/echo</code>, offering the
<code>realtime.v1</code> subprotocol. The server greets you with a <code>welcome</code> event and
answers each <code>{"type":"echo","id":…,"data":{"text":…}}</code> with a reply of the same id.</p>
<p>Status: <output id="status">connecting…</output></p>
<form id="form">
  <input id="input" maxlength="1000" size="40" autocomplete="off" aria-label="Message" required>
  <button id="send" type="submit" disabled>Send</button>
</form>
<ol id="messages"></ol>
<p class="note">The certificate is self-signed (for examples and tests only): the browser asked
you to accept it for this page, and the socket rides on that same exception.</p>
<script>
  const $ = (id) => document.getElementById(id)
  const socket = new WebSocket('wss://' + location.host + '/echo', 'realtime.v1')
  let nextId = 0

  function show (text) {
    const item = document.createElement('li')
    item.textContent = text
    $('messages').append(item)
    $('messages').scrollTop = $('messages').scrollHeight
  }

  socket.onopen = () => {
    $('status').textContent = 'open (subprotocol ' + socket.protocol + ')'
    $('send').disabled = false
  }
  socket.onclose = (event) => {
    $('status').textContent = 'closed (' + event.code + (event.reason ? ': ' + event.reason : '') + '); reload to reconnect'
    $('send').disabled = true
  }
  socket.onmessage = (message) => {
    const frame = JSON.parse(message.data)
    if (frame.type === 'event') show(frame.event + ': ' + frame.data.text)
    else if (frame.type === 'reply') show('reply to #' + frame.id + ': ' + frame.data.text)
    else if (frame.type === 'error') show('error for #' + frame.id + ': ' + frame.error.code + ', ' + frame.error.message)
  }
  $('form').onsubmit = (submit) => {
    submit.preventDefault()
    const id = ++nextId
    const text = $('input').value
    socket.send(JSON.stringify({ type: 'echo', id, data: { text } }))
    show('sent #' + id + ': ' + text)
    $('input').value = ''
  }
</script>`, { home })
