// @ts-check
// An "AI answer" streamed token by token from an async generator, the way LLM APIs stream.
// reply.sse(iterable) pulls one item at a time (no faster than the client reads) and, when the
// client leaves, calls the generator's return() and aborts request.signal: nothing is generated
// for nobody. The answer is canned; a real model would sit where `answerTo()` is.
//
// Run:  npm start   (then open http://127.0.0.1:3000/ai)
// Poke: curl -N 'http://127.0.0.1:3000/ai/answer?q=what+is+sse'
//       (Ctrl-C halfway: the server logs "generation stopped after N tokens")

import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import { defineContract, fastifySse } from 'fastify-realtime'
import { HTML, page } from './page.js'

export const answerContract = defineContract({
  events: {
    token: Type.Object({ text: Type.String() }),
    done: Type.Object({ tokens: Type.Integer({ minimum: 0 }) })
  }
})

/**
 * @typedef {object} AiAnswerOptions
 * @property {number} [delayMs] between two tokens (default 60)
 * @property {(tokens: number) => void} [onStopped] called when a reader leaves before the answer is complete
 */

/**
 * The canned answer, in word-sized tokens (each keeps its trailing space).
 * @param {string} question
 * @returns {string[]}
 */
export function answerTo (question) {
  const text = `You asked: "${question}". This answer is canned, but it streams like a model's: ` +
    'one token at a time, as Server-Sent Events. Each token is a typed `token` event, checked ' +
    'against the contract; a `done` event closes the answer. Press Stop, or close the tab, and ' +
    'the server stops generating at once.'
  return text.split(/(?<= )/)
}

/**
 * @param {string} question
 * @param {AbortSignal} signal aborted when the reader leaves
 * @param {{ delayMs: number, log: import('fastify').FastifyBaseLogger, onStopped?: (tokens: number) => void }} options
 * @returns {AsyncGenerator<import('fastify-realtime').SseItem<typeof answerContract>>}
 */
async function * generate (question, signal, { delayMs, log, onStopped }) {
  let tokens = 0
  let complete = false
  try {
    for (const text of answerTo(question)) {
      // Rejects as soon as the reader leaves, rather than finishing the wait for nobody.
      await sleep(delayMs, undefined, { signal })
      tokens++
      yield { event: 'token', data: { text } }
    }
    yield { event: 'done', data: { tokens } }
    complete = true
  } finally {
    // Runs on return() and on the abort alike: where a real model's request would be cancelled.
    if (complete) {
      log.info(`answer complete after ${tokens} tokens`)
    } else {
      log.info(`generation stopped after ${tokens} tokens`)
      onStopped?.(tokens)
    }
  }
}

/**
 * Routes: GET /ai (the page) and GET /ai/answer?q=... Needs `fastifySse` registered on a parent.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {AiAnswerOptions} options
 */
export default async function aiAnswer (fastify, { delayMs = 60, onStopped }) {
  fastify.get('/ai', (request, reply) => reply.type(HTML).send(aiPage))

  fastify.get('/ai/answer', {
    sse: { contract: answerContract },
    schema: {
      querystring: Type.Object({ q: Type.String({ maxLength: 500, default: 'What is SSE?' }) })
    }
  }, (request, reply) => {
    const { q } = /** @type {{ q: string }} */ (request.query)
    const answer = generate(q, request.signal, { delayMs, log: request.log, onStopped })
    return reply.sse(answer)
  })
}

/**
 * A standalone app serving this example, for tests and embedding.
 * @param {AiAnswerOptions} [options]
 */
export async function build (options = {}) {
  const app = Fastify()
  await app.register(fastifySse)
  await app.register(aiAnswer, options)
  return app
}

const aiPage = page('AI answer, token by token', `
<p>The answer streams from an async generator on the server, one <code>token</code> event at a
time, then a <code>done</code> event. Stop closes the <code>EventSource</code>; the server notices,
stops the generator and logs how far it got.</p>
<form id="ask">
  <input id="question" name="q" size="40" value="What is SSE?" aria-label="Question">
  <button id="send" type="submit">Ask</button>
  <button id="stop" type="button" disabled>Stop</button>
</form>
<p>Status: <output id="status">idle</output></p>
<pre id="answer"></pre>
<script>
  const $ = (id) => document.getElementById(id)
  let source

  function finish (status) {
    // An EventSource reconnects when its stream ends: closing it keeps the question from being asked again.
    source.close()
    $('status').textContent = status
    $('stop').disabled = true
  }

  $('ask').onsubmit = (submit) => {
    submit.preventDefault()
    if (source) source.close()
    $('answer').textContent = ''
    $('status').textContent = 'connecting…'
    $('stop').disabled = false
    source = new EventSource('/ai/answer?q=' + encodeURIComponent($('question').value))
    source.onopen = () => { $('status').textContent = 'streaming…' }
    source.addEventListener('token', (event) => { $('answer').textContent += JSON.parse(event.data).text })
    source.addEventListener('done', (event) => finish('done: ' + JSON.parse(event.data).tokens + ' tokens'))
    source.addEventListener('realtime.error', (event) => finish('failed: ' + JSON.parse(event.data).message))
    source.onerror = () => finish('the stream ended early')
  }
  $('stop').onclick = () => finish('stopped by you')
</script>`)
