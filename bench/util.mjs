// @ts-check
// Helpers of the bench and soak scripts with no side effects on import (bench/common.mjs parses
// options and pins its process when imported; bench/run.mjs and bench/soak.mjs must not).

import { spawnSync } from 'node:child_process'
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
