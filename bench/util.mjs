// @ts-check
// Helpers of the bench and soak scripts with no side effects on import (bench/common.mjs parses
// options and pins its process when imported; bench/run.mjs and bench/soak.mjs must not).

import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const root = fileURLToPath(new URL('..', import.meta.url))

/**
 * Rejects when `promise` has not settled within `ms`.
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what
 * @returns {Promise<T>}
 */
export function within (promise, ms, what) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  return Promise.race([
    promise,
    /** @type {Promise<never>} */ (new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) }))
  ]).finally(() => clearTimeout(timer))
}

/**
 * The q-quantile (nearest rank) of samples.
 * @param {ArrayLike<number>} samples
 * @param {number} q
 */
export function quantile (samples, q) {
  const sorted = Float64Array.from(samples).sort()
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? NaN
}

/** The newest modification time of the files under a directory, or 0 when there are none. */
function newest (/** @type {string} */ dir) {
  if (!existsSync(dir)) return 0
  return Math.max(0, ...readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((name) => statSync(`${dir}/${name}`))
    .filter((stats) => stats.isFile())
    .map((stats) => stats.mtimeMs))
}

/** Builds dist/ when it is missing or older than lib/; exits with the build's status when it fails. */
export function ensureBuilt (/** @type {string} */ name) {
  const built = existsSync(`${root}dist/esm/index.js`) && existsSync(`${root}dist/cjs/index.js`)
  if (built && newest(`${root}lib`) <= newest(`${root}dist`)) return
  console.log(`${name}: building dist/ (missing or older than lib/)`)
  const result = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) {
    console.error(`${name}: the build exited with ${result.status ?? result.signal}`)
    process.exit(result.status ?? 1)
  }
}

/** The soft and hard limits of open files of a process started from here (`ulimit -Sn`, `ulimit -Hn`). */
export function fileLimits () {
  const read = (/** @type {string} */ flag) => {
    const text = spawnSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).stdout.trim()
    return text === 'unlimited' ? Infinity : Number(text)
  }
  return { soft: read('-Sn'), hard: read('-Hn') }
}

/**
 * The command that runs `command` with the soft limit of open files raised to `fileLimit` (when
 * given), pinned to `cpu` with taskset (when given), at niceness `nice` (when given).
 * @param {string[]} command
 * @param {{ cpu?: number, fileLimit?: number, nice?: number }} options
 * @returns {string[]}
 */
export function wrapCommand (command, { cpu, fileLimit, nice }) {
  let wrapped = command
  if (cpu !== undefined) wrapped = ['taskset', '-c', String(cpu), ...wrapped]
  if (nice !== undefined) wrapped = ['nice', '-n', String(nice), ...wrapped]
  // sh's ulimit, then exec: the process keeps the pid spawn() reports, and the IPC channel.
  if (fileLimit !== undefined) wrapped = ['sh', '-c', 'ulimit -Sn "$0" && exec "$@"', String(fileLimit), ...wrapped]
  return wrapped
}

/**
 * @typedef {object} ServerProcess
 * @property {number} port
 * @property {number} pid
 * @property {(message: Record<string, unknown>, timeoutMs?: number) => Promise<any>} request one command, its answer
 * @property {() => Promise<void>} stop asks the server to exit; kills it when it does not within 5 s
 */

/**
 * Spawns a server of bench/servers/ (`--expose-gc`, and the Node flags in BENCH_SERVER_FLAGS) and
 * waits for its port; bench/servers/harness.mjs documents its commands. Every request has a deadline.
 * @param {string} name the file name without .mjs, e.g. 'sse-raw'
 * @param {{ cpu?: number, fileLimit?: number, env?: Record<string, string> }} [options] see {@link wrapCommand}; `env` is added to this process's
 * @returns {Promise<ServerProcess>}
 */
export async function spawnServer (name, { cpu, fileLimit, env = {} } = {}) {
  const file = `${root}bench/servers/${name}.mjs`
  // BENCH_SERVER_FLAGS: extra Node flags for the servers, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
  const flags = (process.env.BENCH_SERVER_FLAGS ?? '').split(' ').filter((flag) => flag !== '')
  const [command = process.execPath, ...args] = wrapCommand([process.execPath, '--expose-gc', ...flags, file], { cpu, fileLimit })
  const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
  /** @type {any[]} */
  const inbox = []
  /** @type {((message: any) => void) | undefined} */
  let waiter
  /** @type {Error | undefined} */
  let failure
  const fail = (/** @type {Error} */ err) => {
    failure ??= err
    if (waiter !== undefined) waiter({ type: 'error', message: failure.message })
  }
  child.on('message', (message) => {
    if (waiter !== undefined) {
      const resolve = waiter
      waiter = undefined
      resolve(message)
    } else {
      inbox.push(message)
    }
  })
  child.on('exit', (code, signal) => fail(new Error(`server ${name} exited (${code ?? signal})`)))
  child.on('error', fail)

  /** @param {number} timeoutMs @param {string} what */
  function next (timeoutMs, what) {
    if (inbox.length > 0) return Promise.resolve(inbox.shift())
    if (failure !== undefined) return Promise.reject(failure)
    return within(new Promise((resolve) => { waiter = resolve }), timeoutMs, `server ${name}, ${what}`)
      .finally(() => { waiter = undefined })
  }

  /** @param {Record<string, unknown>} message @param {number} timeoutMs */
  async function request (message, timeoutMs = 30000) {
    if (failure !== undefined) throw failure
    child.send(message)
    const answer = await next(timeoutMs, String(message.cmd))
    if (answer.type === 'error') throw new Error(`server ${name}: ${answer.message}`)
    return answer
  }

  const ready = await next(15000, 'start').catch((err) => {
    child.kill('SIGKILL')
    throw err
  })
  if (ready.type !== 'ready') {
    child.kill('SIGKILL')
    throw new Error(`server ${name} did not start: ${ready.message}`)
  }
  return {
    port: ready.port,
    pid: child.pid ?? 0,
    request,
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      if (child.connected) child.send({ cmd: 'exit' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
  }
}

/**
 * The child side of a driven process: answers each `{ id, cmd, ...args }` message with the result
 * of `commands[cmd](args)` (or its error's stack) under the same id, exits once the driver is gone,
 * and tells the driver it is ready, with `ready` added to that message.
 * @param {Record<string, (args: any) => unknown>} commands
 * @param {Record<string, unknown>} [ready]
 */
export function serveCommands (commands, ready = {}) {
  process.on('message', async (/** @type {any} */ message) => {
    const { id, cmd, ...args } = message
    try {
      const command = commands[cmd]
      if (command === undefined) throw new Error(`unknown command ${cmd}`)
      process.send?.({ id, ...(/** @type {object} */ (await command(args))) })
    } catch (err) {
      process.send?.({ id, error: String(/** @type {Error} */ (err).stack ?? err) })
    }
  })
  // The driver gone (killed, crashed): do not outlive it.
  process.on('disconnect', () => process.exit(0))
  process.send?.({ ready: true, ...ready })
}
