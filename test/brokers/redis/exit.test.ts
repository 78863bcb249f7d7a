// A process whose Redis is down (stopped, or paused so it never answers) exits by itself as soon
// as its app and broker are closed: the broker leaves no socket, timer or reconnection behind. The
// process runs the built package (dist/), so `npm run build` must run first (npm test does).
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { RedisServer } from '../../helpers/redis.js'
import { within } from '../../helpers/ws.js'

const child = fileURLToPath(new URL('../../helpers/exit-child.mjs', import.meta.url))

/** Runs the child against `url`; resolves with its exit code and its report. */
function run (url: string): Promise<{ code: number | null, report: { publish: string, alive: string[] } | undefined, stderr: string }> {
  return new Promise((resolve, reject) => {
    const process_ = spawn(process.execPath, [child, url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    process_.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    process_.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    process_.on('error', reject)
    process_.on('exit', (code) => {
      const line = stdout.trim().split('\n').at(-1)
      resolve({ code, report: line === undefined || line === '' ? undefined : JSON.parse(line), stderr })
    })
  })
}

if (spawnSync('redis-server', ['--version']).status !== 0) {
  if (process.env.CI) {
    t.fail('redis-server is not installed: in CI the Redis tests must run, never be skipped (.ci/run installs it)')
  } else {
    t.plan(0, 'redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)')
  }
} else {
  for (const fault of ['stopped', 'paused'] as const) {
    t.test(`Redis ${fault}: the process exits by itself once the app and the broker are closed`, async (t) => {
      const server = await RedisServer.start((cleanup) => t.teardown(cleanup))
      if (fault === 'stopped') await server.stop('SIGKILL')
      else server.pause()
      // A hang detector only: without it, a process kept alive would hang the test until tap's timeout.
      const { code, report, stderr } = await within(run(server.url), 20000, 'the child process to exit')
      t.equal(code, 0, `it exits with 0${stderr === '' ? '' : `: ${stderr}`}`)
      t.equal(report?.publish, 'FRT_ERR_BROKER_UNAVAILABLE', 'its publish rejected')
      t.same(report?.alive, [], 'nothing keeps its event loop alive a turn after close()')
    })
  }
}
