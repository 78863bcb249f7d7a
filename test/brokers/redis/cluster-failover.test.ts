// A Redis Cluster failover under traffic, on a private cluster of 3 masters and 3 replicas (this
// file fails nodes over and kills them, so never the shared one): two Fastify instances publish
// continuously, with SSE and WebSocket subscribers on both, while the master of their log fails
// over. Every publish that resolved reaches every subscriber on both instances exactly once, in
// one order; one that rejected arrives once or never. A planned failover (CLUSTER FAILOVER on the
// replica) with waitReplicas 0; the master killed outright (SIGKILL) with waitReplicas 1, which
// is what makes a resolved publish survive the death of its master. Afterwards no connection of
// either instance is left on any node.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { Cluster } from 'ioredis'
import { instance, openSse, openWs, readEventsUntil, type Client, type Instance } from '../../helpers/redis.js'
import { inCI, nodeCommand, RedisCluster, sharedClusterNodes } from '../../helpers/redis-cluster.js'
import { recordEscapes } from '../../helpers/index.js'
import { sleep, until, within } from '../../helpers/ws.js'

const escaped = recordEscapes(t)

// Two cases, each a failover of a 6-node cluster started here (its node timeout, 2 s, bounds
// how fast a killed master is replaced): longer than tap's default for a file.
t.setTimeout(240000)

/** A publish and how it ended. */
interface Outcome {
  data: string
  id?: string
  rejected?: string
}

/** Publishes continuously on `inst`, 8 at a time, until `running()` is false; records every outcome. */
async function publishLoop (inst: Instance, from: string, outcomes: Outcome[], running: () => boolean): Promise<void> {
  for (let n = 0; running(); n += 8) {
    await Promise.all(Array.from({ length: 8 }, async (_, k) => {
      const payload = { n: n + k, from }
      const outcome: Outcome = { data: JSON.stringify(payload) }
      outcomes.push(outcome)
      try {
        outcome.id = await inst.lobby.publish('message', payload)
      } catch (err) {
        outcome.rejected = (err as { code?: string }).code
      }
    }))
    await sleep(2)
  }
}

function compareIds (a: string, b: string): number {
  const [am, as] = a.split('-').map(Number) as [number, number]
  const [bm, bs] = b.split('-').map(Number) as [number, number]
  return am === bm ? as - bs : am - bm
}

/** How many connections on the running nodes carry `name` (the writer's, the reader's, ioredis' slot refreshers). */
async function connectionsNamed (cluster: RedisCluster, name: string): Promise<number> {
  let total = 0
  for (const server of cluster.servers.filter((server) => server.running)) {
    const list = await nodeCommand(server.port, 'CLIENT', 'LIST') as string
    total += list.split('\n').filter((line) => line.includes(name)).length
  }
  return total
}

function suite (): void {
  let cluster: RedisCluster
  t.before(async () => {
    cluster = await RedisCluster.start((cleanup) => t.teardown(cleanup))
  })

  const cases = [
    { name: 'CLUSTER FAILOVER on the replica of the log\'s master, waitReplicas 0', fault: 'failover', waitReplicas: 0 },
    { name: 'the log\'s master killed (SIGKILL), waitReplicas 1', fault: 'kill', waitReplicas: 1 }
  ] as const

  for (const { name, fault, waitReplicas } of cases) {
    t.test(name, async (t: Test) => {
      const ns = `failover-${randomUUID()}`
      const connectionName = `frt-failover-${randomUUID()}`
      const clientOf = (): Cluster => {
        const client = new Cluster(cluster.startupNodes, { lazyConnect: true, redisOptions: { connectionName } })
        t.teardown(() => client.disconnect())
        return client
      }
      const options = { waitReplicas, commandTimeout: 1000 }
      const a = await instance(t, { client: clientOf() }, ns, options)
      const b = await instance(t, { client: clientOf() }, ns, options)
      const clients: Array<[string, Client]> = [
        ['SSE on A', await openSse(a, undefined, 30000)],
        ['WebSocket on A', await openWs(a, undefined, 30000)],
        ['SSE on B', await openSse(b, undefined, 30000)],
        ['WebSocket on B', await openWs(b, undefined, 30000)]
      ]
      const { master, replica } = await cluster.ownersOf(`frt:{${ns}}:log`)

      const outcomes: Outcome[] = []
      let running = true
      const loops = Promise.all([publishLoop(a, 'A', outcomes, () => running), publishLoop(b, 'B', outcomes, () => running)])
      const resolved = (): number => outcomes.filter((outcome) => outcome.id !== undefined).length
      await until(() => resolved() >= 400, 20000, '400 publishes before the fault')

      if (fault === 'failover') {
        await cluster.failover(replica)
      } else {
        await master.stop('SIGKILL')
        // The replica takes over once the cluster sees its master down (the node timeout) ...
        await cluster.healthy()
        // ... and publishes resolve again once a replica holds them: the old master rejoins as one.
        await master.start()
        await cluster.healthy()
      }
      t.equal((await cluster.masterOf(`frt:{${ns}}:log`)).port, replica.port, 'the replica is the log\'s master now')
      const atFailover = resolved()
      await until(() => resolved() >= atFailover + 400, 30000, '400 publishes after the fault')
      running = false
      await within(loops, 10000, 'the publish loops')

      // The marker: published once the loops are done, read by every client as its last event.
      let marker: string | undefined
      for (let attempt = 0; marker === undefined; attempt++) {
        if (attempt > 100) throw new Error('the marker was never published')
        marker = await a.lobby.publish('message', { n: -1, from: 'marker' }).catch(async () => { await sleep(50); return undefined })
      }
      const acknowledged = outcomes.filter((outcome) => outcome.id !== undefined)
      const rejected = outcomes.filter((outcome) => outcome.rejected !== undefined)
      t.ok(acknowledged.length >= 800, `${acknowledged.length} publishes resolved, ${rejected.length} rejected`)
      t.same([...new Set(rejected.map((outcome) => outcome.rejected))], rejected.length === 0 ? [] : ['FRT_ERR_BROKER_UNAVAILABLE'], 'rejections are FRT_ERR_BROKER_UNAVAILABLE')
      const dataOfId = new Map(acknowledged.map((outcome) => [outcome.id as string, outcome.data]))
      const published = new Set(outcomes.map((outcome) => outcome.data))

      const sequences: string[][] = []
      for (const [label, client] of clients) {
        const events = await readEventsUntil(client, marker, outcomes.length + 1)
        events.pop() // the marker
        const ids = events.map((event) => event.id)
        t.same([...ids].sort(compareIds), ids, `${label}: in id order`)
        t.equal(new Set(events.map((event) => event.data)).size, events.length, `${label}: no event twice`)
        t.same(events.filter((event) => !published.has(event.data)), [], `${label}: nothing that was not published`)
        const received = new Map(events.map((event) => [event.id, event.data]))
        const missing = acknowledged.filter((outcome) => received.get(outcome.id as string) !== outcome.data)
        t.same(missing, [], `${label}: every publish that resolved, with its data`)
        sequences.push(ids.filter((id) => dataOfId.has(id)))
      }
      t.ok(sequences.every((sequence) => JSON.stringify(sequence) === JSON.stringify(sequences[0])), 'every subscriber saw the resolved publishes in one order')
      const stored = await nodeCommand(replica.port, 'XRANGE', `frt:{${ns}}:log`, '-', '+') as Array<[string, string[]]>
      const storedIds = new Set(stored.map(([id]) => id))
      t.same(acknowledged.filter((outcome) => !storedIds.has(outcome.id as string)), [], 'every resolved publish is in the log on the new master')

      for (const [, client] of clients) await client.leave()
      await t.resolves(a.close(), 'A: app.close() and broker.close()')
      await t.resolves(b.close(), 'B: app.close() and broker.close()')
      let left = await connectionsNamed(cluster, connectionName)
      for (let i = 0; i < 150 && left > 0; i++) {
        await sleep(20)
        left = await connectionsNamed(cluster, connectionName)
      }
      t.equal(left, 0, 'no connection of either instance is left on any node')
      t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
    })
  }
}

const shared = sharedClusterNodes()
if ('missing' in shared) {
  if (inCI) t.fail(shared.missing)
  else t.plan(0, shared.missing)
} else {
  suite()
}
