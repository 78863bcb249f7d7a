// A private Redis Cluster of 3 masters and 3 replicas (Debian's redis-server and
// `redis-cli --cluster create`), on free loopback ports, no persistence, for the tests that fail
// nodes over, pause or kill them: never the shared one of REDIS_CLUSTER_NODES, which other test
// files use at the same time.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './index.js'
import { sleep, within } from './ws.js'

const inCI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false'

/**
 * The startup nodes of the shared test cluster (REDIS_CLUSTER_NODES, `host:port,host:port,...`),
 * or a reason it is missing: in CI the caller fails with it, elsewhere it skips with it.
 */
export function sharedClusterNodes (): { nodes: Array<{ host: string, port: number }> } | { missing: string } {
  const value = process.env.REDIS_CLUSTER_NODES
  if (value === undefined || value === '') {
    return {
      missing: inCI
        ? 'REDIS_CLUSTER_NODES is not set: .ci/run must start the Redis Cluster (scripts/redis-cluster-test-server.sh)'
        : 'REDIS_CLUSTER_NODES not set: start a Redis Cluster with scripts/redis-cluster-test-server.sh to run the Redis Cluster tests'
    }
  }
  return {
    nodes: value.split(',').map((node) => {
      const [host, port] = node.trim().split(':') as [string, string]
      return { host, port: Number(port) }
    })
  }
}

export { inCI }

const children = new Set<ChildProcess>()
// Should the process die without its teardowns, leave no node behind.
process.on('exit', () => {
  for (const child of children) {
    try { process.kill(child.pid as number, 'SIGCONT') } catch {}
    try { process.kill(child.pid as number, 'SIGKILL') } catch {}
  }
})

/** Runs one command on the node at `port`, on a connection of its own. */
export async function nodeCommand (port: number, ...args: Array<string | number>): Promise<any> {
  const redis = new Redis({ port, host: '127.0.0.1', retryStrategy: null, maxRetriesPerRequest: 0, connectTimeout: 2000 })
  redis.on('error', () => {})
  try {
    return await within(redis.call(...(args as [string, ...Array<string | number>])), 5000, `${args.join(' ')} on ${port}`)
  } finally {
    redis.disconnect()
  }
}

/** One redis-server of the cluster. */
export class ClusterServer {
  readonly port: number
  readonly busPort: number
  private readonly dir: string
  private readonly nodeTimeout: number
  private child: ChildProcess | undefined
  private exited: Promise<void> = Promise.resolve()
  private paused = false

  constructor (port: number, busPort: number, dir: string, nodeTimeout: number) {
    this.port = port
    this.busPort = busPort
    this.dir = dir
    this.nodeTimeout = nodeTimeout
    mkdirSync(dir, { recursive: true })
  }

  get running (): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** (Re)starts the node on its port with its nodes.conf (a restarted node rejoins the cluster); resolves on PONG. */
  async start (): Promise<void> {
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-port', String(this.busPort),
      '--cluster-config-file', path.join(this.dir, 'nodes.conf'), '--cluster-node-timeout', String(this.nodeTimeout),
      '--save', '', '--appendonly', 'no', '--dir', this.dir
    ], { stdio: 'ignore' })
    this.child = child
    children.add(child)
    this.exited = new Promise((resolve) => child.once('exit', () => {
      children.delete(child)
      resolve()
    }))
    child.on('error', () => {})
    await within((async () => {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`redis-server on ${this.port} exited with ${child.exitCode}`)
        if (await nodeCommand(this.port, 'PING').catch(() => undefined) === 'PONG') return
        await sleep(20)
      }
    })(), 10000, `redis-server on ${this.port} answering PING`)
  }

  /**
   * Forgets the node's cluster configuration (its nodes.conf) and data (a replica keeps the RDB its
   * master sent): started again, it is a new, empty node.
   */
  forget (): void {
    rmSync(this.dir, { recursive: true, force: true })
    mkdirSync(this.dir, { recursive: true })
  }

  /** kill -STOP: the process stops, its sockets stay open. */
  pause (): void {
    process.kill((this.child as ChildProcess).pid as number, 'SIGSTOP')
    this.paused = true
  }

  resume (): void {
    process.kill((this.child as ChildProcess).pid as number, 'SIGCONT')
    this.paused = false
  }

  /** Stops the node (its data is gone: no persistence) and waits for it to exit. */
  async stop (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (this.paused) this.resume()
    this.child?.kill(signal)
    await within(this.exited, 5000, `redis-server on ${this.port} to exit on ${signal}`)
  }

  async destroy (): Promise<void> {
    if (this.running) {
      try { process.kill((this.child as ChildProcess).pid as number, 'SIGCONT') } catch {}
      this.child?.kill('SIGKILL')
      await within(this.exited, 5000, `redis-server on ${this.port} to exit`)
    }
  }
}

/** A line of CLUSTER NODES. */
export interface NodeView {
  id: string
  port: number
  role: 'master' | 'replica'
  masterId: string | undefined
  failed: boolean
  slots: Array<[number, number]>
}

function parseNodes (text: string): NodeView[] {
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, masterId, , , , , ...slots] = line.trim().split(' ') as string[]
    const flagList = (flags as string).split(',')
    return {
      id: id as string,
      port: Number((address as string).split('@')[0]?.split(':')[1]),
      role: flagList.includes('master') ? 'master' : 'replica',
      masterId: masterId === '-' ? undefined : masterId,
      failed: flagList.includes('fail') || flagList.includes('fail?'),
      slots: slots.filter((range) => !range.startsWith('[')).map((range) => {
        const [from, to = from] = range.split('-')
        return [Number(from), Number(to)] as [number, number]
      })
    }
  })
}

/** A private cluster: 3 masters, each with one replica. */
export class RedisCluster {
  readonly servers: ClusterServer[]
  private readonly dir: string

  private constructor (servers: ClusterServer[], dir: string) {
    this.servers = servers
    this.dir = dir
  }

  /**
   * Starts 6 nodes and makes them a cluster; `onEnd` receives its cleanup (kill every node, remove
   * its directory), e.g. `(cleanup) => t.teardown(cleanup)`. `nodeTimeout`: how long a master may
   * be unreachable before its replica takes over (a failover after SIGKILL takes about that long).
   */
  static async start (onEnd: (cleanup: () => Promise<void>) => void, nodeTimeout = 2000): Promise<RedisCluster> {
    const dir = mkdtempSync(path.join(tmpdir(), 'frt-cluster-'))
    const servers: ClusterServer[] = []
    const cluster = new RedisCluster(servers, dir)
    onEnd(() => cluster.destroy())
    const ports = new Set<number>()
    while (ports.size < 12) ports.add(await freePort())
    const [clientPorts, busPorts] = [[...ports].slice(0, 6), [...ports].slice(6)]
    for (const [i, port] of clientPorts.entries()) servers.push(new ClusterServer(port, busPorts[i] as number, path.join(dir, String(port)), nodeTimeout))
    await cluster.create()
    return cluster
  }

  /** Starts every node as a new one and makes them a cluster. */
  private async create (): Promise<void> {
    await Promise.all(this.servers.map((server) => server.start()))
    await within(new Promise<void>((resolve, reject) => {
      const nodes = this.servers.map((server) => `127.0.0.1:${server.port}`)
      const create = spawn('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '1', '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      create.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
      create.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
      create.on('error', reject)
      create.on('exit', (code) => code === 0 ? resolve() : reject(new Error(`redis-cli --cluster create exited with ${code}: ${output}`)))
    }), 30000, 'redis-cli --cluster create')
    await this.healthy()
  }

  /** Kills every node (SIGKILL) and leaves the cluster down. */
  async stopAll (): Promise<void> {
    for (const server of this.servers) await server.stop('SIGKILL')
  }

  /** Starts a new, empty cluster on the same ports: what a cluster without persistence is after a restart. */
  async startEmpty (): Promise<void> {
    for (const server of this.servers) server.forget()
    await this.create()
  }

  get startupNodes (): Array<{ host: string, port: number }> {
    return this.servers.map((server) => ({ host: '127.0.0.1', port: server.port }))
  }

  server (port: number): ClusterServer {
    return this.servers.find((server) => server.port === port) as ClusterServer
  }

  /** The cluster as a running node sees it. */
  async view (): Promise<NodeView[]> {
    for (const server of this.servers) {
      if (!server.running) continue
      const text = await nodeCommand(server.port, 'CLUSTER', 'NODES').catch(() => undefined)
      if (typeof text === 'string') return parseNodes(text)
    }
    throw new Error('no node of the cluster answers CLUSTER NODES')
  }

  /** The master that serves `key`. */
  async masterOf (key: string): Promise<ClusterServer> {
    return this.server((await this.owners(key)).master.port)
  }

  /** The master that serves `key`, and its replica. */
  async ownersOf (key: string): Promise<{ master: ClusterServer, replica: ClusterServer }> {
    const { master, replica, view } = await this.owners(key)
    if (replica === undefined) throw new Error(`the master of ${key} has no replica: ${JSON.stringify(view)}`)
    return { master: this.server(master.port), replica: this.server(replica.port) }
  }

  private async owners (key: string): Promise<{ master: NodeView, replica: NodeView | undefined, view: NodeView[] }> {
    const slot = await nodeCommand((this.servers.find((server) => server.running) as ClusterServer).port, 'CLUSTER', 'KEYSLOT', key) as number
    const view = await this.view()
    const master = view.find((node) => node.role === 'master' && !node.failed && node.slots.some(([from, to]) => slot >= from && slot <= to))
    if (master === undefined) throw new Error(`no master serves slot ${slot}: ${JSON.stringify(view)}`)
    return { master, replica: view.find((node) => node.masterId === master.id && !node.failed), view }
  }

  /**
   * Resolves once every running node says the cluster is ok, agrees on which master serves each
   * slot, and every running replica is in sync with its master.
   */
  async healthy (timeoutMs = 30000): Promise<void> {
    await within((async () => {
      for (;;) {
        if (await this.isHealthy()) return
        await sleep(50)
      }
    })(), timeoutMs, 'the cluster to be healthy')
  }

  private async isHealthy (): Promise<boolean> {
    try {
      let agreed: string | undefined
      for (const server of this.servers.filter((server) => server.running)) {
        const info = await nodeCommand(server.port, 'CLUSTER', 'INFO') as string
        if (!info.includes('cluster_state:ok')) return false
        const view = parseNodes(await nodeCommand(server.port, 'CLUSTER', 'NODES') as string)
        const masters = view.filter((node) => node.role === 'master' && node.slots.length > 0)
        if (masters.some((node) => node.failed) || masters.length !== 3) return false
        // Every running node serves slots or replicates a master (a new one may still be a master of none).
        const running = new Set(this.servers.filter((server) => server.running).map((server) => server.port))
        if (view.some((node) => running.has(node.port) && node.role === 'master' && node.slots.length === 0)) return false
        const owners = masters.map((node) => `${node.port}:${JSON.stringify(node.slots)}`).sort().join(' ')
        if (agreed !== undefined && agreed !== owners) return false
        agreed = owners
        const replication = await nodeCommand(server.port, 'INFO', 'replication') as string
        if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false
        if (replication.includes('role:slave') && replication.includes('master_sync_in_progress:1')) return false
      }
      return true
    } catch {
      return false
    }
  }

  /** CLUSTER FAILOVER on `replica`: its master hands over once the replica has every write; resolves once all agree. */
  async failover (replica: ClusterServer): Promise<void> {
    await nodeCommand(replica.port, 'CLUSTER', 'FAILOVER')
    await within((async () => {
      for (;;) {
        const role = await nodeCommand(replica.port, 'ROLE').catch(() => undefined) as unknown[] | undefined
        if (role?.[0] === 'master') return
        await sleep(20)
      }
    })(), 30000, `${replica.port} to become a master`)
    await this.healthy()
  }

  async destroy (): Promise<void> {
    for (const server of this.servers) await server.destroy()
    rmSync(this.dir, { recursive: true, force: true })
  }
}
