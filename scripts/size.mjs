// Bundles fastify-realtime/client (both transports) for a browser, minified, and reports its size
// gzipped: the figure the README states. Exits 1 over the bound. `--json` prints the figures as
// JSON; `--peers` also measures the peers' browser clients with the same settings.
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

/** The most the client may weigh, gzipped. */
export const LIMIT_BYTES = 6 * 1024

// What an app imports of each peer to connect, send, receive and reconnect.
const PEERS = {
  phoenix: "export { Socket } from 'phoenix'",
  'socket.io-client': "export { io } from 'socket.io-client'",
  centrifuge: "export { Centrifuge } from 'centrifuge'"
}

async function measure (entry) {
  const result = await build({
    ...entry,
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error'
  })
  const minified = result.outputFiles[0].contents
  return { minified: minified.length, gzipped: gzipSync(minified, { level: 9 }).length }
}

const figures = { ...await measure({ entryPoints: ['lib/client/index.ts'] }), limit: LIMIT_BYTES }
if (process.argv.includes('--peers')) {
  figures.peers = {}
  for (const [name, contents] of Object.entries(PEERS)) {
    figures.peers[name] = await measure({ stdin: { contents, resolveDir: process.cwd() } })
  }
}
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(figures))
} else {
  const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`
  console.log(`fastify-realtime/client: ${kb(figures.gzipped)} gzipped (${kb(figures.minified)} minified), both transports, for browsers; the bound is ${kb(LIMIT_BYTES)}`)
  for (const [name, { gzipped, minified }] of Object.entries(figures.peers ?? {})) {
    console.log(`${name}: ${kb(gzipped)} gzipped (${kb(minified)} minified), ${(gzipped / figures.gzipped).toFixed(1)}x`)
  }
}
if (figures.gzipped > LIMIT_BYTES) process.exitCode = 1
