// The Redis fault cases of faults.test.ts on a Redis Cluster of this file's own (3 masters, 3
// replicas; it pauses and kills nodes, so never the shared one): the log's master paused (kill
// -STOP, shorter than the node timeout, so no failover), the log's master killed and not restarted
// (its replica takes over), every node killed and the cluster started anew, empty. Publishes
// reject and then recover, open connections stay open, nothing is delivered twice, and a client
// that left resumes on the other instance with no gap (or a reset where the log is gone).
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { idOf, instance as sharedInstance, openSse, openWs, readUntil, transports, type Instance } from '../../helpers/redis.js'
import { inCI, nodeCommand, RedisCluster, sharedClusterNodes } from '../../helpers/redis-cluster.js'
import { recordEscapes } from '../../helpers/index.js'
import { sleep, within } from '../../helpers/ws.js'
import type { RedisBrokerOptions } from '../../../lib/brokers/redis/index.js'

const escaped = recordEscapes(t)

// Three cases on a 6-node cluster started here, one of which waits out a failover and one of
// which makes the cluster anew: longer than tap's default for a file.
t.setTimeout(240000)

/** Short, so a paused master fails a publish quickly; the assertions never measure it. */
const COMMAND_TIMEOUT = 300

function instance (t: Test, cluster: RedisCluster, ns: string, options: Partial<RedisBrokerOptions> = {}): Promise<Instance> {
  return sharedInstance(t, { cluster: cluster.startupNodes }, ns, { commandTimeout: COMMAND_TIMEOUT, ...options })
}

/** Publishes until the broker takes the event (each attempt its own data); bounded. */
async function publishWhenBack (inst: Instance, from: string): Promise<string> {
  return within((async () => {
    for (let attempt = 0; ; attempt++) {
      try {
        return await inst.lobby.publish('message', { n: 1000 + attempt, from })
      } catch (err) {
        if ((err as { code?: string }).code !== 'FRT_ERR_BROKER_UNAVAILABLE') throw err
        await sleep(50)
      }
    }
  })(), 30000, `a publish on ${from} once the cluster is back`)
}

/**
 * Publishes on the `other` topic until the broker takes it: the instance's connections to the
 * cluster are up (found its slots, connected to the master) before the case starts.
 */
async function warmUp (inst: Instance): Promise<void> {
  await within((async () => {
    for (;;) {
      try {
        await inst.other.publish('message', { n: 0, from: 'warm-up' })
        return
      } catch {
        await sleep(50)
      }
    }
  })(), 30000, 'the first publish')
}

/** The ids of the topic's entries in the log, read on its master. */
async function storedIds (cluster: RedisCluster, ns: string, topic = 'lobby'): Promise<string[]> {
  const master = await cluster.masterOf(`frt:{${ns}}:log`)
  const entries = await nodeCommand(master.port, 'XRANGE', `frt:{${ns}}:log`, '-', '+') as Array<[string, string[]]>
  return entries.filter(([, fields]) => fields[fields.indexOf('t') + 1] === topic).map(([id]) => id)
}

async function closeAll (t: Test, instances: Instance[]): Promise<void> {
  for (const inst of instances) await t.resolves(inst.close(), 'app.close() and broker.close() resolve')
}

function suite (): void {
  let cluster: RedisCluster
  t.before(async () => {
    // A node timeout well above the pause below: a paused master is not failed over.
    cluster = await RedisCluster.start((cleanup) => t.teardown(cleanup), 6000)
  })

  function test (name: string, fn: (t: Test) => Promise<void>): void {
    t.test(name, async (t) => {
      await fn(t)
      t.same(escaped.splice(0), [], 'no uncaughtException or unhandledRejection')
    })
  }

  test('the log\'s master paused (kill -STOP): publishes reject, connections stay, and after kill -CONT every event arrives once', async (t) => {
    const ns = `faults-${randomUUID()}`
    const a = await instance(t, cluster, ns)
    const b = await instance(t, cluster, ns)
    await Promise.all([warmUp(a), warmUp(b)])
    const clients = [await openSse(a), await openWs(a), await openSse(b), await openWs(b)]
    const leaving = await openSse(a)
    const before: string[] = []
    for (let n = 0; n < 6; n++) before.push(await (n % 2 === 0 ? a : b).lobby.publish('message', { n, from: 'before' }))
    const seenByLeaving = [idOf(await leaving.next()), idOf(await leaving.next())]
    seenByLeaving.push(...(await leaving.leave()).map(idOf))
    for (const client of clients) t.same(await readUntil(client, before.at(-1) as string, before.length), before)

    const master = await cluster.masterOf(`frt:{${ns}}:log`)
    master.pause()
    for (const [n, inst] of [a, b, a].entries()) {
      await t.rejects(within(inst.lobby.publish('message', { n: 100 + n, from: 'paused' }), 5000, 'a publish while the master is paused'),
        { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, `publish ${n} rejects while the master is paused`)
    }
    t.same(clients.map((client) => client.ended), [false, false, false, false], 'open connections stay open')
    master.resume()

    const after = [await publishWhenBack(b, 'B'), await publishWhenBack(a, 'A')]
    const last = after.at(-1) as string
    const stored = await storedIds(cluster, ns)
    t.ok([...before, ...after].every((id) => stored.includes(id)), 'every accepted publish is in the log')
    const rest = stored.slice(before.length)
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, last, stored.length), rest, `client ${i}: everything after the pause, once, in log order`)
    }
    for (const [name, open] of Object.entries(transports)) {
      const resumed = await open(b, seenByLeaving.at(-1))
      t.same([...seenByLeaving, ...await readUntil(resumed, last, stored.length)], stored, `${name}: a client that left before the pause resumes on B with no gap and no duplicate`)
      await resumed.leave()
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })

  test('the log\'s master killed (SIGKILL): publishes reject until its replica takes over, then every event arrives once', async (t) => {
    const ns = `faults-${randomUUID()}`
    const a = await instance(t, cluster, ns)
    const b = await instance(t, cluster, ns)
    await Promise.all([warmUp(a), warmUp(b)])
    const clients = [await openSse(a, undefined, 30000), await openWs(a, undefined, 30000), await openSse(b, undefined, 30000), await openWs(b, undefined, 30000)]
    const before: string[] = []
    for (let n = 0; n < 4; n++) before.push(await (n % 2 === 0 ? a : b).lobby.publish('message', { n, from: 'before' }))
    for (const client of clients) t.same(await readUntil(client, before.at(-1) as string, before.length), before)
    // Replicated before the kill: WAIT on the master (a test's own connection) for its replica.
    const { master, replica } = await cluster.ownersOf(`frt:{${ns}}:log`)
    t.equal(await nodeCommand(master.port, 'WAIT', 1, 5000), 1, 'the replica holds the events so far')

    await master.stop('SIGKILL')
    for (const [n, inst] of [a, b].entries()) {
      await t.rejects(within(inst.lobby.publish('message', { n: 100 + n, from: 'down' }), 5000, 'a publish while the master is down'),
        { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, `publish ${n} rejects while the master is down`)
    }
    t.same(clients.map((client) => client.ended), [false, false, false, false], 'open connections stay open')
    await cluster.healthy()
    t.equal((await cluster.masterOf(`frt:{${ns}}:log`)).port, replica.port, 'the replica is the master now')

    const after = [await publishWhenBack(a, 'A'), await publishWhenBack(b, 'B')]
    const stored = await storedIds(cluster, ns)
    t.same(stored.slice(0, before.length), before, 'the events from before the kill are in the new master\'s log')
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, after.at(-1) as string, stored.length), stored.slice(before.length), `client ${i}: every event after the kill, once, in order`)
    }
    for (const [name, open] of Object.entries(transports)) {
      const resumed = await open(b, before.at(-1))
      t.same(await readUntil(resumed, after.at(-1) as string, stored.length), stored.slice(before.length), `${name}: an id from before the kill resumes on the new master`)
      await resumed.leave()
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
    await master.start() // it rejoins as a replica
    await cluster.healthy()
  })

  test('every node killed and the cluster started anew, empty: publishes reject, connections stay, readers read the new log', async (t) => {
    const ns = `faults-${randomUUID()}`
    const a = await instance(t, cluster, ns)
    const b = await instance(t, cluster, ns)
    await Promise.all([warmUp(a), warmUp(b)])
    const clients = [await openSse(a, undefined, 30000), await openWs(a, undefined, 30000), await openSse(b, undefined, 30000), await openWs(b, undefined, 30000)]
    const before: string[] = []
    for (let n = 0; n < 4; n++) before.push(await (n % 2 === 0 ? a : b).lobby.publish('message', { n, from: 'before' }))
    for (const client of clients) t.same(await readUntil(client, before.at(-1) as string, before.length), before)

    await cluster.stopAll()
    await sleep(100) // the brokers see their connections close
    for (const [n, inst] of [a, b].entries()) {
      await t.rejects(within(inst.lobby.publish('message', { n: 100 + n, from: 'down' }), 5000, 'a publish while the cluster is down'),
        { code: 'FRT_ERR_BROKER_UNAVAILABLE' }, `publish ${n} rejects while the cluster is down`)
    }
    t.same(clients.map((client) => client.ended), [false, false, false, false], 'open connections stay open')

    await cluster.startEmpty()
    const after = [await publishWhenBack(a, 'A'), await publishWhenBack(b, 'B')]
    after.push(await a.lobby.publish('message', { n: 2000, from: 'A' }), await b.lobby.publish('message', { n: 2001, from: 'B' }))
    const stored = await storedIds(cluster, ns)
    t.ok(after.every((id) => stored.includes(id)), 'the publishes after the restart are in the new log')
    for (const [i, client] of clients.entries()) {
      t.same(await readUntil(client, after.at(-1) as string, stored.length), stored, `client ${i}: every event of the new log, once, in order`)
    }
    for (const [name, open] of Object.entries(transports)) {
      const resumed = await open(b, before.at(-1))
      t.same(await resumed.next(), { type: 'reset' }, `${name}: an id from before the restart is a reset`)
      const live = await a.lobby.publish('message', { n: 3000, from: 'A' })
      t.equal(idOf(await resumed.next()), live, `${name}: then live`)
      await resumed.leave()
    }
    for (const client of clients) await client.leave()
    await closeAll(t, [a, b])
  })
}

const shared = sharedClusterNodes()
if ('missing' in shared) {
  if (inCI) t.fail(shared.missing)
  else t.plan(0, shared.missing)
} else {
  suite()
}
