// Coverage is measured for the library only: examples and dist/ are exercised, not measured.
// lib/brokers/redis/ is measured when the Redis tests run, i.e. whenever REDIS_URL is set (always in
// CI); its cluster.ts when the Redis Cluster tests run too, i.e. when REDIS_CLUSTER_NODES is set
// (always in CI): its paths are those of a Redis Cluster only.
import { readdirSync } from 'node:fs'

const files = readdirSync('lib', { recursive: true })
  .filter((file) => file.endsWith('.ts'))
  .map((file) => `lib/${file}`)
  .filter((file) => process.env.REDIS_URL !== undefined || !file.startsWith('lib/brokers/redis/'))
  .filter((file) => process.env.REDIS_CLUSTER_NODES !== undefined || file !== 'lib/brokers/redis/cluster.ts')

export default function coverageMap () {
  return files
}
