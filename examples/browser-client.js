// @ts-check
// Serves fastify-realtime/client to the example pages as the package builds it: the ES modules of
// dist/esm/client/ and the wire facts of dist/esm/protocol/ they import, unbundled, so a page loads
// exactly what an app would bundle, with no bundler and no CDN. `npm install` builds dist/ (the
// `prepare` script), and `npm start` builds it again first.
//
// Run:  npm start   (the chat and ticks pages load it)
// Poke: curl -i http://127.0.0.1:3000/fastify-realtime/client/index.js
//       curl -i http://127.0.0.1:3000/fastify-realtime/protocol/names.js   (what index.js imports, in turn)

import { createReadStream, existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Type } from '@sinclair/typebox'

/** Where a page imports the client from: `import { createWsClient } from '${CLIENT_URL}'`. */
export const CLIENT_URL = '/fastify-realtime/client/index.js'

// The folders of the built package a page may load: the client, and the only part of the library
// it imports at run time. Their relative imports (`../protocol/names.js`) resolve under the same prefix.
const FOLDERS = ['client', 'protocol']
// dist/esm/, found the way an app finds the client: through the package's exports.
const ESM = new URL('..', import.meta.resolve('fastify-realtime/client'))
const JAVASCRIPT = 'text/javascript; charset=utf-8'

/**
 * Route: GET /fastify-realtime/:folder/:file, the built client's modules.
 * @param {import('fastify').FastifyInstance} fastify
 */
export default async function browserClient (fastify) {
  fastify.get('/fastify-realtime/:folder/:file', {
    schema: {
      params: Type.Object({
        folder: Type.Union(FOLDERS.map((folder) => Type.Literal(folder))),
        // A module's own name only: no path, no dot segment, no declaration file.
        file: Type.String({ pattern: '^[a-z0-9-]+\\.js$' })
      })
    }
  }, (request, reply) => {
    const { folder, file } = /** @type {{ folder: string, file: string }} */ (request.params)
    const path = fileURLToPath(new URL(`${folder}/${file}`, ESM))
    if (!existsSync(path)) return reply.code(404).type('text/plain').send(`no ${folder}/${file} in the built client: npm run build`)
    // Rebuilt by every `npm start`: the browser asks again instead of keeping an older build.
    return reply.type(JAVASCRIPT).header('cache-control', 'no-cache').send(createReadStream(path))
  })
}
