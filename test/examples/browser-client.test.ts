// examples/browser-client.js: the built fastify-realtime/client, served to the example pages as ES
// modules. It reads the built package (dist/), so `npm run build` must run first (npm test does).
import { readdirSync } from 'node:fs'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import browserClient, { CLIENT_URL } from '../../examples/browser-client.js'

async function build (t: Test) {
  const app = Fastify()
  await app.register(browserClient)
  t.teardown(() => app.close())
  return app
}

/** The specifiers a module imports or re-exports. */
function importsOf (source: string): string[] {
  return [...source.matchAll(/^(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/gm)].map((match) => match[1] as string)
}

t.test('the client entry and every module it imports, transitively, are served as JavaScript', async (t) => {
  const app = await build(t)
  const served = new Set<string>()
  const queue = [CLIENT_URL]
  while (queue.length > 0) {
    const url = queue.shift() as string
    if (served.has(url)) continue
    served.add(url)
    const response = await app.inject(url)
    t.equal(response.statusCode, 200, url)
    t.equal(response.headers['content-type'], 'text/javascript; charset=utf-8', url)
    t.equal(response.headers['cache-control'], 'no-cache', url)
    for (const specifier of importsOf(response.body)) {
      t.match(specifier, /^\.\.?\//, `${url} imports ${specifier}: relative, so a browser resolves it without an import map`)
      queue.push(new URL(specifier, `http://localhost${url}`).pathname)
    }
  }
  t.ok(served.has('/fastify-realtime/client/ws-client.js') && served.has('/fastify-realtime/client/sse-client.js'), 'both transports')
  t.ok([...served].some((url) => url.startsWith('/fastify-realtime/protocol/')), 'and the wire facts they share')
  const built = readdirSync(new URL('../../dist/esm/client/', import.meta.url)).filter((file) => file.endsWith('.js'))
  t.ok(built.every((file) => served.has(`/fastify-realtime/client/${file}`) || file === 'types.js'), 'every built module of the client but its types')
})

t.test('nothing else of the package, and no path outside it', async (t) => {
  const app = await build(t)
  for (const url of [
    '/fastify-realtime/client/index.d.ts',
    '/fastify-realtime/hub/hub.js',
    '/fastify-realtime/ws/plugin.js',
    '/fastify-realtime/client/..%2F..%2F..%2Fpackage.json',
    '/fastify-realtime/client/%2E%2E.js',
    '/fastify-realtime/client/Index.js',
    '/fastify-realtime/client/'
  ]) {
    t.equal((await app.inject(url)).statusCode, 400, url)
  }
  t.equal((await app.inject('/fastify-realtime/client/missing.js')).statusCode, 404, 'a module the build does not have')
})
