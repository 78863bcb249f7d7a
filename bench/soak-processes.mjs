// @ts-check
// The processes `npm run soak` drives (bench/soak.mjs): the soak server (bench/soak-server.mjs), and
// the load generator's shares (bench/soak-clients.mjs), each over IPC with a deadline on every
// request. Every process gets the soft limit of open files raised to the hard one; with more than
// one core, servers run on CPU 1 and the load generator on CPU 0.

import { spawn, spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import os from 'node:os'
import { fileLimits, root, within, wrapCommand } from './util.mjs'

export const pinned = os.cpus().length > 1 && spawnSync('taskset', ['-c', '1', 'true']).status === 0
export const limits = fileLimits()
const sleep = (/** @type {number} */ ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The open file descriptors of a process, or NaN where /proc cannot tell. */
export function openFiles (/** @type {number} */ pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return NaN
  }
}

/**
 * A Node process driven by `{ id, cmd, ...args }` messages, each answered `{ id, ...result }` or
 * `{ id, error }`; it announces itself with `{ ready: true, ... }`.
 */
class Driven {
  /** @type {import('node:child_process').ChildProcess} */
  child
  /** @type {Record<string, unknown>} */
  hello = {}
  #nextId = 0
  /** @type {Map<number, { resolve: (value: any) => void, reject: (err: Error) => void }>} */
  #pending = new Map()
  /** @type {Promise<void>} */
  #ready

  /**
   * @param {string} name what errors call it
   * @param {string[]} command
   * @param {Record<string, string>} [env]
   */
  constructor (name, command, env = {}) {
    const [file = process.execPath, ...args] = command
    this.name = name
    this.child = spawn(file, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
    this.#ready = within(new Promise((resolve, reject) => this.#pending.set(-1, { resolve, reject })), 15000, `the start of ${name}`)
    this.child.on('message', (/** @type {any} */ message) => {
      if (message.ready === true) {
        this.hello = message
        this.#pending.get(-1)?.resolve(undefined)
        this.#pending.delete(-1)
        return
      }
      const waiter = this.#pending.get(message.id)
      this.#pending.delete(message.id)
      if (message.error !== undefined) waiter?.reject(new Error(`${name}: ${message.error}`))
      else waiter?.resolve(message)
    })
    this.child.on('exit', (code, signal) => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error(`${name} exited (${code ?? signal})`))
      this.#pending.clear()
    })
  }

  get pid () {
    return this.child.pid ?? 0
  }

  ready () {
    return this.#ready
  }

  /**
   * @param {string} cmd
   * @param {Record<string, unknown>} [args]
   * @param {number} [timeout]
   * @returns {Promise<any>}
   */
  request (cmd, args = {}, timeout = 30000) {
    const id = this.#nextId++
    return within(new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject })
      this.child.send({ id, cmd, ...args })
    }), timeout, `${this.name}'s answer to ${cmd}`)
  }

  /** Asks the process to end with `cmd`; kills it when it has not exited 10 s later. */
  async end (/** @type {string} */ cmd) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = new Promise((resolve) => this.child.once('exit', resolve))
    await this.request(cmd, {}, 10000).catch(() => {})
    await within(exited, 10000, `the exit of ${this.name}`).catch(() => this.child.kill('SIGKILL'))
  }
}

/**
 * @typedef {object} Stats
 * @property {number} heapUsed
 * @property {number} rss
 * @property {number} sse open SSE streams
 * @property {number} ws open WebSocket connections
 * @property {number} wsSockets sockets ws still holds
 * @property {number} heapTotal
 */

/** The soak server, bench/soak-server.mjs, with --expose-gc. */
export class Server extends Driven {
  port = 0

  /** @param {string[]} args */
  static async start (args = []) {
    const command = wrapCommand([process.execPath, '--expose-gc', `${root}bench/soak-server.mjs`, ...args], { cpu: pinned ? 1 : undefined, fileLimit: limits.hard })
    const server = new Server('the server', command)
    await server.ready()
    server.port = Number(server.hello.port)
    return server
  }

  /** @param {boolean} gc @returns {Promise<Stats>} */
  stats (gc) {
    return this.request('stats', { gc })
  }

  /** Waits until the server holds no connection. */
  async drained () {
    /** @type {Stats} */
    let stats = await this.stats(false)
    const deadline = Date.now() + 30000
    while (stats.sse + stats.ws + stats.wsSockets > 0) {
      if (Date.now() > deadline) throw new Error(`the server still holds ${stats.sse} SSE streams and ${stats.ws} WebSocket connections (${stats.wsSockets} sockets)`)
      await sleep(50)
      stats = await this.stats(false)
    }
  }

  close () {
    return this.end('close')
  }
}

/**
 * @typedef {object} OpenOptions
 * @property {'sse' | 'ws'} kind
 * @property {number} port
 * @property {string} path
 * @property {number} count
 * @property {string} marker what each event carries once (counted per client)
 * @property {string} [ready] what the server sends once it subscribed a connection; without it the response head confirms
 */

/**
 * The load generator: as many bench/soak-clients.mjs processes as `clients` connections need at
 * `perProcess` each, every one with source addresses of its own (127.0.0.2 and up, `addressesEach`
 * per process).
 */
export class Fleet {
  /** @type {Driven[]} */
  members = []
  /** @type {string[][]} */
  addresses = []

  /**
   * @param {number} clients
   * @param {number} perProcess
   * @param {number} addressesEach
   */
  static async start (clients, perProcess, addressesEach) {
    const fleet = new Fleet()
    const size = Math.max(1, Math.ceil(clients / perProcess))
    for (let i = 0; i < size; i++) {
      const addresses = Array.from({ length: addressesEach }, (_, j) => `127.0.0.${2 + i * addressesEach + j}`)
      const command = wrapCommand([process.execPath, `${root}bench/soak-clients.mjs`], { cpu: pinned ? 0 : undefined, fileLimit: limits.hard })
      fleet.members.push(new Driven(`load generator ${i + 1}`, command, { SOAK_LOCAL_ADDRESSES: addresses.join(',') }))
      fleet.addresses.push(addresses)
    }
    await Promise.all(fleet.members.map((member) => member.ready()))
    return fleet
  }

  /**
   * Opens `count` clients, split evenly over the processes; resolves once all are confirmed.
   * @param {OpenOptions} options
   * @param {number} [concurrency] handshakes in flight per process
   */
  async open ({ count, ...rest }, concurrency = 128) {
    const started = performance.now()
    const share = Math.floor(count / this.members.length)
    await Promise.all(this.members.map((member, i) => {
      const mine = share + (i < count - share * this.members.length ? 1 : 0)
      return mine === 0 ? undefined : member.request('open', { ...rest, count: mine, concurrency }, 300000)
    }))
    return (performance.now() - started) / 1000
  }

  /**
   * Arms every process to note when each of its clients has counted `target` markers, runs
   * `publish` (which resolves to the clock time publishing began, and how long the server took to
   * hand it to every socket), and resolves to the time from then to the last client's arrival.
   * @param {number} target
   * @param {() => Promise<{ start: number, writtenMs?: number }>} publish
   * @param {number} [stallMs]
   * @returns {Promise<{ arrivedMs: number, writtenMs: number }>}
   */
  async timeToAll (target, publish, stallMs = 20000) {
    await Promise.all(this.members.map((member) => member.request('arm', { target })))
    const { start, writtenMs = NaN } = await publish()
    const answers = await Promise.all(this.members.map((member) => member.request('reached', { stallMs }, 600000)))
    return { arrivedMs: Math.max(...answers.map((answer) => answer.at)) - start, writtenMs }
  }

  /**
   * Every client's count against `expected`, summed over the processes.
   * @param {number} expected
   * @returns {Promise<{ clients: number, total: number, short: number, over: number }>}
   */
  async counts (expected) {
    const answers = await Promise.all(this.members.map((member) => member.request('counts', { expected })))
    return answers.reduce((sum, answer) => ({
      clients: sum.clients + answer.clients,
      total: sum.total + answer.total,
      short: sum.short + answer.short,
      over: sum.over + answer.over
    }), { clients: 0, total: 0, short: 0, over: 0 })
  }

  /** Sets every client's count to 0, so that clients that joined late count from the same event. */
  async reset () {
    await Promise.all(this.members.map((member) => member.request('reset')))
  }

  /** Closes every client (a FIN each) and waits for the sockets to close. */
  async closeAll () {
    await Promise.all(this.members.map((member) => member.request('close', {}, 120000)))
  }

  async exit () {
    await Promise.all(this.members.map((member) => member.end('exit')))
  }
}
