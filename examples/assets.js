// @ts-check
// Files the demo pages load from packages in node_modules (uPlot, the AsyncAPI viewer), served as
// they are: no CDN, no bundler. They are dev dependencies of this repository, so `npm install`
// brings them; after `npm install --omit=dev` a page says which package is missing instead of
// breaking, and its data stays reachable (the dashboard's numbers, the AsyncAPI JSON).

import { createReadStream } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)

/**
 * The absolute path of a file of a package, or undefined when the package is not installed.
 * @param {string} specifier such as 'uplot/dist/uPlot.iife.min.js'
 * @returns {string | undefined}
 */
export function packageFile (specifier) {
  try {
    return require.resolve(specifier)
  } catch {
    return undefined
  }
}

/**
 * Serves a file of a package at `url`, or a 404 naming the missing package.
 * @param {import('fastify').FastifyInstance} fastify
 * @param {string} url
 * @param {string} specifier
 * @param {string} type the content type
 */
export function servePackageFile (fastify, url, specifier, type) {
  const file = packageFile(specifier)
  const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]
  fastify.get(url, (request, reply) => {
    if (file === undefined) return reply.code(404).type('text/plain').send(`${name} is not installed: run npm install (it is a dev dependency of the demo).`)
    return reply.type(type).header('cache-control', 'public, max-age=3600').send(createReadStream(file))
  })
}
