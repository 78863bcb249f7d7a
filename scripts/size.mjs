// Bundles fastify-realtime/client (both transports) for a browser, minified, and reports its size
// gzipped: the figure the README states. Exits 1 over the bound. `--json` prints the figures as JSON.
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

/** The most the client may weigh, gzipped. */
export const LIMIT_BYTES = 6 * 1024

const result = await build({
  entryPoints: ['lib/client/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  write: false,
  logLevel: 'error'
})
const minified = result.outputFiles[0].contents
const gzipped = gzipSync(minified, { level: 9 }).length
const figures = { minified: minified.length, gzipped, limit: LIMIT_BYTES }
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(figures))
} else {
  const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`
  console.log(`fastify-realtime/client: ${kb(gzipped)} gzipped (${kb(minified.length)} minified), both transports, for browsers; the bound is ${kb(LIMIT_BYTES)}`)
}
if (gzipped > LIMIT_BYTES) process.exitCode = 1
