import { Cluster, Redis } from 'ioredis'
import { expect, test } from 'tstyche'
import type { Broker } from 'fastify-realtime'
import { redisBroker, type RedisBrokerOptions, type RedisClusterNode } from 'fastify-realtime/redis'

test('redisBroker takes a URL, an ioredis Redis or Cluster, or the startup nodes of a Cluster', () => {
  expect(redisBroker({ url: 'redis://127.0.0.1:6379' })).type.toBe<Required<Broker>>()
  expect(redisBroker({ client: new Redis({ lazyConnect: true }) })).type.toBe<Required<Broker>>()
  expect(redisBroker({ client: new Cluster([{ host: '127.0.0.1', port: 7000 }], { lazyConnect: true }) })).type.toBe<Required<Broker>>()
  expect(redisBroker({ cluster: [{ host: '127.0.0.1', port: 7000 }], namespace: 'chat' })).type.toBe<Required<Broker>>()
  expect<RedisClusterNode>().type.toBe<{ host: string, port: number }>()
  expect(redisBroker({ url: 'redis://127.0.0.1:6379' }).position()).type.toBe<Promise<string>>()
})

test('the options of redisBroker, with their types', () => {
  expect(redisBroker({ url: 'redis://x', maxLen: 1000, maxAgeMs: 60000, maxScan: 500, commandTimeout: 1000, maxPending: 5000, waitReplicas: 1 })).type.toBe<Required<Broker>>()
  expect(redisBroker).type.not.toBeCallableWith({ url: 'redis://x', maxPending: '10' })
  expect(redisBroker).type.not.toBeCallableWith({ url: 'redis://x', waitReplicas: true })
  expect(redisBroker).type.not.toBeCallableWith({ cluster: ['127.0.0.1:7000'] })
  expect<RedisBrokerOptions['client']>().type.toBe<Redis | Cluster | undefined>()
})
