import { execFile } from 'node:child_process'
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { defineContract } from '../../lib/index.js'
import { freePort } from '../helpers/index.js'
import { serve, within } from '../helpers/client.js'

// Runs against dist/: `npm run build` first.
t.test('close() leaves nothing behind: a process with clients in every state exits by itself', async (t) => {
  const server = await serve(t, (app) => {
    app.ws('/ws', { contract: defineContract({ messages: { wait: Type.Object({}) } }), handlers: { wait: () => new Promise<void>(() => {}) } })
    app.get('/sse', (request, reply) => { reply.sse() })
  })
  const deadPort = await freePort()
  const output = await within(new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['test/client/fixtures/close-all.mjs', server.url, String(deadPort)], (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  }), 20000, 'the process with closed clients')
  const { results, escaped } = JSON.parse(output)
  t.same(results, ['CLOSED', 'CLOSED', 'CLOSED', { code: 1000 }, { code: 1000 }], 'everything pending settles with CLOSED')
  t.equal(escaped, 0)
})
