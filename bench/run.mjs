// @ts-check
// `npm run bench`: builds dist/ when it is missing or older than lib/, then runs each suite of
// bench/ in a process of its own (pinned to CPU 0 with taskset when there is one and more than one
// core, so a server or Redis pinned elsewhere does not share its core). Not part of `npm test`.
// The transport suites start their servers on CPU 1 (bench/common.mjs).
//
//   npm run bench                           every suite: sse-fanout, ws-fanout, ws-echo, idle-memory, broker
//   npm run bench -- ws-echo --reps=9       some suites; `--` options go to each suite
//   npm run bench -- --quick                smaller windows and 2 repetitions, to try the harness
//   npm run bench -- sse-fanout --batch=1   fan-out servers publish one event per tick (default 16)
//   npm run bench -- --baseline=/tmp/base   fastify-realtime also as built in another checkout (its
//                                           dist/), e.g. the previous release, next to this tree's
//   npm run bench -- ws-fanout --only=ws-realtime   some implementations (files of bench/servers/; the baseline and ceiling run too)
//   BENCH_SERVER_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof' npm run bench -- ws-echo   Node flags for every server
// Suites read REDIS_URL where they measure Redis; results go to bench/results/ (gitignored).

import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import os from 'node:os'
import { ensureBuilt, root } from './util.mjs'

const SUITES = ['sse-fanout', 'ws-fanout', 'ws-echo', 'idle-memory', 'broker']

/**
 * Runs a command from the repository root with the terminal's stdio; exits with its status when it fails.
 * @param {string} command
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} [env]
 */
function run (command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env })
  if (result.error !== undefined) throw result.error
  if (result.status !== 0) {
    console.error(`bench: ${[command, ...args].join(' ')} exited with ${result.status ?? result.signal}`)
    process.exit(result.status ?? 1)
  }
}

const positional = process.argv.slice(2).filter((arg) => !arg.startsWith('--'))
const options = process.argv.slice(2).filter((arg) => arg.startsWith('--'))
const unknown = positional.filter((name) => !SUITES.includes(name))
if (unknown.length > 0) {
  console.error(`bench: no suite ${unknown.join(', ')}; suites: ${SUITES.join(', ')}`)
  process.exit(2)
}
const suites = (positional.length > 0 ? positional : SUITES).filter((name) => existsSync(`${root}bench/${name}.mjs`))

ensureBuilt('bench')

const pin = os.availableParallelism() > 1 && spawnSync('taskset', ['-c', '0', 'true']).status === 0
for (const suite of suites) {
  const node = [process.execPath, '--expose-gc', `bench/${suite}.mjs`, ...options]
  console.log(`\nbench: ${suite}${pin ? ' (pinned to CPU 0)' : ''}`)
  if (pin) run('taskset', ['-c', '0', ...node], { ...process.env, BENCH_PINNED: 'cpu 0' })
  else run(node[0] ?? process.execPath, node.slice(1))
}
