// Coverage is measured for the library only: examples and dist/ are exercised, not measured.
// lib/brokers/redis/ is measured when the Redis tests run, i.e. whenever REDIS_URL is set (always in CI).
import { readdirSync } from 'node:fs'

const files = readdirSync('lib', { recursive: true })
  .filter((file) => file.endsWith('.ts'))
  .map((file) => `lib/${file}`)
  .filter((file) => process.env.REDIS_URL !== undefined || !file.startsWith('lib/brokers/redis/'))

export default function coverageMap () {
  return files
}
