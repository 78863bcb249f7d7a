// @ts-check
// The HTML shell shared by the example pages: one inline <style>, no bundler, no CDN.

/**
 * A complete HTML page. `body` is trusted markup written in these examples, never user input.
 * @param {string} title
 * @param {string} body
 * @param {{ home?: string }} [options] where the "all demos" link points (another origin for the CORS page)
 * @returns {string}
 */
export function page (title, body, { home = '/' } = {}) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · fastify-realtime</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  code, output, pre { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
  output { font-weight: 600; }
  ol, pre { background: #f6f6f6; padding: .5rem 2rem; max-height: 20rem; overflow: auto; }
  pre { white-space: pre-wrap; padding: .5rem 1rem; min-height: 3rem; }
  .note { color: #666; }
</style>
</head>
<body>
<p><a href="${home}">&larr; all demos</a></p>
<h1>${title}</h1>
${body}
</body>
</html>
`
}

/** The content type the pages are sent with. */
export const HTML = 'text/html; charset=utf-8'
