// The broker contract (test/helpers/broker-contract.ts) against redisBroker on a real Redis
// Cluster of 3 masters and 3 replicas (REDIS_CLUSTER_NODES; scripts/redis-cluster-test-server.sh
// starts one, .ci/run always does), plus what only a Cluster has: a namespace is one slot, several
// namespaces spread over the masters, a Cluster client passed in is only duplicated.
import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { Cluster, Redis } from 'ioredis'
import type { Broker } from '../../../lib/brokers/broker.js'
import { redisBroker, type RedisBrokerOptions } from '../../../lib/brokers/redis/index.js'
import { brokerContract, record, type ContractBrokerOptions } from '../../helpers/broker-contract.js'
import { inCI, nodeCommand, sharedClusterNodes } from '../../helpers/redis-cluster.js'
import { sleep, within } from '../../helpers/ws.js'

const shared = sharedClusterNodes()
if ('missing' in shared) {
  if (inCI) t.fail(shared.missing)
  else t.plan(0, shared.missing)
} else {
  clusterTests(shared.nodes)
}

/** CLUSTER SLOTS as seen from `port`: each master's port and its slot ranges. */
async function masters (port: number): Promise<Array<{ port: number, ranges: Array<[number, number]> }>> {
  const slots = await nodeCommand(port, 'CLUSTER', 'SLOTS') as Array<[number, number, [string, number]]>
  const byPort = new Map<number, Array<[number, number]>>()
  for (const [from, to, [, master]] of slots) byPort.set(master, [...(byPort.get(master) ?? []), [from, to]])
  return [...byPort].map(([port, ranges]) => ({ port, ranges }))
}

function clusterTests (nodes: Array<{ host: string, port: number }>): void {
  const prefix = `frt-cluster-test-${randomBytes(4).toString('hex')}`
  let count = 0
  const newNamespace = (): string => `${prefix}-${++count}`
  const namespaces = new WeakMap<Broker, string>()
  const firstPort = (nodes[0] as { port: number }).port

  // Every namespace of this run starts with this prefix: its keys are removed at the end, on every master.
  t.teardown(async () => {
    for (const { port } of await masters(firstPort)) {
      const redis = new Redis({ port, host: '127.0.0.1' })
      let cursor = '0'
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `*${prefix}-*`, 'COUNT', 1000)
        for (const key of keys) await redis.del(key)
        cursor = next
      } while (cursor !== '0')
      redis.disconnect()
    }
  })

  function open (t: Test, options: RedisBrokerOptions): Broker {
    const broker = redisBroker(options)
    t.teardown(() => broker.close())
    return broker
  }

  brokerContract(t, 'redisBroker on a Redis Cluster', (options?: ContractBrokerOptions) => {
    const namespace = newNamespace()
    const broker = redisBroker({ cluster: nodes, namespace, ...options } as RedisBrokerOptions)
    namespaces.set(broker, namespace)
    return broker
  }, {
    approximateTrim: true, // XADD MAXLEN ~
    startMarginMs: 1, // a new broker tails the log from the moment it was made
    makePeer: (broker, options) => redisBroker({ cluster: nodes, namespace: namespaces.get(broker), ...options } as RedisBrokerOptions)
  })

  t.test('redisBroker on a Redis Cluster', async (t) => {
    t.test('a namespace is one slot: its log is one key, on the master that serves its hash tag', async (t) => {
      const namespace = newNamespace()
      const broker = open(t, { cluster: nodes, namespace })
      const ids = [await broker.publish('a', 'e', '1'), await broker.publish('b', 'e', '2')]
      const slot = await nodeCommand(firstPort, 'CLUSTER', 'KEYSLOT', `{${namespace}}`) as number
      const owner = (await masters(firstPort)).find(({ ranges }) => ranges.some(([from, to]) => slot >= from && slot <= to))
      const stored = await nodeCommand(owner?.port as number, 'XRANGE', `frt:{${namespace}}:log`, '-', '+') as Array<[string, string[]]>
      t.same(stored.map(([id]) => id), ids, `the log is frt:{${namespace}}:log on the master of slot ${slot}`)
    })

    t.test('namespaces picked by their hash slot land on different masters, each a log of its own', async (t) => {
      // What the README says to do: pick names whose {namespace} slots are served by different masters.
      const owners = await masters(firstPort)
      const picked = new Map<number, string>()
      for (let i = 0; picked.size < owners.length && i < 1000; i++) {
        const namespace = `${prefix}-shard-${i}`
        const slot = await nodeCommand(firstPort, 'CLUSTER', 'KEYSLOT', `{${namespace}}`) as number
        const owner = owners.find(({ ranges }) => ranges.some(([from, to]) => slot >= from && slot <= to)) as { port: number }
        if (!picked.has(owner.port)) picked.set(owner.port, namespace)
      }
      t.equal(picked.size, owners.length, `one namespace per master (${owners.length})`)
      for (const [port, namespace] of picked) {
        const broker = open(t, { cluster: nodes, namespace })
        const seen = record(broker)
        const id = await broker.publish('lobby', 'message', JSON.stringify({ namespace }))
        t.same((await seen.waitFor(1)).map((event) => event.id), [id], `${namespace}: delivered`)
        t.equal(await nodeCommand(port, 'XLEN', `frt:{${namespace}}:log`), 1, `${namespace}: its log is on the master ${port}`)
      }
    })

    t.test('a Cluster client passed in is only duplicated: never connected or written to, never closed', async (t) => {
      const client = new Cluster(nodes, { lazyConnect: true })
      t.teardown(() => client.disconnect())
      const namespace = newNamespace()
      const broker = redisBroker({ client, namespace })
      const peer = open(t, { cluster: nodes, namespace })
      const seenByPeer = record(peer)
      const seen = record(broker)
      const id = await broker.publish('lobby', 'message', '"through a duplicate"')
      t.same((await seen.waitFor(1)).map((event) => event.id), [id], 'published and delivered')
      t.same((await seenByPeer.waitFor(1)).map((event) => event.id), [id], 'on every broker of the namespace')
      t.same((await broker.history(id, new Set(['lobby']))), [], 'history reads too')
      t.equal(client.status, 'wait', 'the client itself was never connected')
      await within(broker.close(), 3000, 'broker.close()')
      t.equal(client.status, 'wait', 'nor closed')
    })

    t.test('the connections of a broker on a Cluster are all closed by close()', async (t) => {
      const name = `${prefix}-conn`
      const client = new Cluster(nodes, { lazyConnect: true, redisOptions: { connectionName: name } })
      t.teardown(() => client.disconnect())
      const broker = redisBroker({ client, namespace: newNamespace() })
      const seen = record(broker)
      const id = await broker.publish('lobby', 'message', '{}')
      await seen.waitFor(1)
      t.same(await broker.history(id, new Set(['lobby'])), [])
      const named = async (): Promise<number> => {
        let total = 0
        for (const { port } of nodes) {
          const list = await nodeCommand(port, 'CLIENT', 'LIST') as string
          total += list.split('\n').filter((line) => line.includes(name)).length
        }
        return total
      }
      t.ok(await named() >= 2, 'it opened a writer and a reader (and ioredis its slot-refresh connections)')
      await broker.close()
      let left = await named()
      for (let i = 0; i < 100 && left > 0; i++) {
        await sleep(20)
        left = await named()
      }
      t.equal(left, 0, 'none of them is left')
    })

    t.test('unreachable startup nodes: publish and history reject with FRT_ERR_BROKER_UNAVAILABLE, never hang; close() resolves', async (t) => {
      const broker = open(t, { cluster: [{ host: '127.0.0.1', port: 1 }], commandTimeout: 300, namespace: newNamespace() })
      await Promise.all([
        t.rejects(within(broker.publish('lobby', 'message', '{}'), 10000, 'publish'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'publish'),
        t.rejects(within(broker.history('1-0', new Set(['lobby'])), 10000, 'history'), { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, 'history')
      ])
      await t.resolves(within(broker.close(), 3000, 'close()'))
    })
  })
}
