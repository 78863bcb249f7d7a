import { execFile } from 'node:child_process'
import t from 'tap'

t.test('the client, bundled and minified for a browser with both transports, is at most 6 KB gzipped and smaller than its peers', async (t) => {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['scripts/size.mjs', '--json', '--peers'], (err, out) => err === null ? resolve(out) : reject(err))
  })
  const { gzipped, minified, limit, peers } = JSON.parse(stdout)
  t.equal(limit, 6 * 1024)
  t.ok(gzipped > 1000, `a real bundle (${gzipped} bytes)`)
  t.ok(gzipped <= limit, `${gzipped} bytes gzipped, ${minified} minified`)
  for (const [name, peer] of Object.entries<{ gzipped: number }>(peers)) {
    t.ok(gzipped < peer.gzipped, `smaller than ${name} bundled the same way (${peer.gzipped} bytes)`)
  }
})
