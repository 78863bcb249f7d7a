// The broker's writer: every publish() is an XADD, and the XADDs of one tick, with those made while
// a batch is in flight, go to Redis as one pipeline on the broker's own connection: one write and
// one read for the lot, instead of one each per event. A lone publish goes out in the same tick
// (a microtask, no timer), so batching never delays it. One batch is in flight at a time: Redis runs
// a connection's commands in order, so ids increase in call order, and a batch sent again after a
// redirect cannot overtake the one behind it.
import type { Redis } from 'ioredis'
import { FRT_ERR_BROKER_UNAVAILABLE } from '../../errors.js'
import { DATA_FIELD, EVENT_FIELD, TOPIC_FIELD } from './entries.js'

/** At most this many XADDs per pipeline. */
const MAX_BATCH_ENTRIES = 512
/** A pipeline stops taking events once their topics, names and data reach this many bytes (one more may pass it). */
const MAX_BATCH_BYTES = 1 << 20
/** How long the publisher waits before sending again the commands that Redis did not run (a redirect, a busy or loading server). */
const RETRY_MS = 20
/** `XTRIM MINID` runs at most once per this many ms (with the next batch). */
const TRIM_EVERY_MS = 1000

/**
 * Replies by which Redis says it did not run the command, so sending it again cannot write an
 * event twice: a Cluster redirect (MOVED, ASK) or a slot in motion (TRYAGAIN), a cluster or master
 * that is down (CLUSTERDOWN, MASTERDOWN), a server still loading its data (LOADING) or running a
 * script (BUSY), a replica (READONLY), too few replicas for `min-replicas-to-write` (NOREPLICAS),
 * and ioredis giving up after following redirects only.
 */
const NOT_RUN = /^(?:MOVED|ASK|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|LOADING|BUSY|READONLY|NOREPLICAS)\b|^Too many Cluster redirections/

export interface PublisherOptions {
  key: string
  maxLen: number
  maxAgeMs: number | undefined
  commandTimeout: number
  maxPending: number
  waitReplicas: number
}

/** One publish() waiting for Redis. */
class Pending {
  readonly topic: string
  readonly event: string
  readonly data: string
  readonly deadline: number
  readonly resolve: (id: string) => void
  readonly reject: (err: Error) => void
  settled = false

  constructor (topic: string, event: string, data: string, deadline: number, resolve: (id: string) => void, reject: (err: Error) => void) {
    this.topic = topic
    this.event = event
    this.data = data
    this.deadline = deadline
    this.resolve = resolve
    this.reject = reject
  }

  get bytes (): number {
    return Buffer.byteLength(this.topic) + Buffer.byteLength(this.event) + Buffer.byteLength(this.data)
  }
}

type Replies = Array<[error: Error | null, result: unknown]>

/**
 * The refusal of a publish past maxPending, made without a stack trace: an overload produces them
 * by the thousand, and the stack would only ever point here.
 */
function overloaded (maxPending: number): Error {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return new FRT_ERR_BROKER_UNAVAILABLE(`${maxPending} publishes are already waiting for Redis (maxPending)`)
  } finally {
    Error.stackTraceLimit = limit
  }
}

export class Publisher {
  private readonly connection: Redis
  private readonly options: PublisherOptions
  // The publishes not sent yet, oldest first: queue[head..] (the prefix is cleared as it is sent).
  private queue: Array<Pending | undefined> = []
  private head = 0
  private inFlight: Pending[] | undefined
  /** Publishes not resolved or rejected yet, queued or in flight: at most maxPending. */
  private unsettled = 0
  private flushQueued = false
  private waitingForReady = false
  private deadlineTimer: NodeJS.Timeout | undefined
  private retryTimer: NodeJS.Timeout | undefined
  private lastTrim = 0
  private closed = false

  constructor (connection: Redis, options: PublisherOptions) {
    this.connection = connection
    this.options = options
  }

  publish (topic: string, event: string, data: string): Promise<string> {
    if (this.closed) return Promise.reject(new FRT_ERR_BROKER_UNAVAILABLE('the Redis broker is closed'))
    if (this.unsettled >= this.options.maxPending) return Promise.reject(overloaded(this.options.maxPending))
    return new Promise((resolve, reject) => {
      this.queue.push(new Pending(topic, event, data, performance.now() + this.options.commandTimeout, resolve, reject))
      this.unsettled++
      if (this.deadlineTimer === undefined) this.armDeadline()
      if (this.inFlight === undefined && this.retryTimer === undefined) this.queueFlush()
    })
  }

  /** Rejects every publish not settled yet; nothing is sent any more. */
  close (): void {
    this.closed = true
    clearTimeout(this.deadlineTimer)
    clearTimeout(this.retryTimer)
    this.connection.off('ready', this.opened)
    this.connection.off('close', this.opened)
    for (const entry of this.inFlight ?? []) this.fail(entry, 'the Redis broker is closed')
    for (let i = this.head; i < this.queue.length; i++) this.fail(this.queue[i] as Pending, 'the Redis broker is closed')
    this.queue = []
    this.head = 0
  }

  private queueFlush (): void {
    if (this.flushQueued) return
    this.flushQueued = true
    queueMicrotask(this.flush)
  }

  private readonly flush = (): void => {
    this.flushQueued = false
    if (this.closed || this.inFlight !== undefined) return
    while (this.head < this.queue.length && (this.queue[this.head] as Pending).settled) this.queue[this.head++] = undefined
    if (this.head === this.queue.length) return
    const status = this.connection.status
    if (status === 'ready') {
      this.send()
    } else if (status === 'connecting' || status === 'connect') {
      // Still opening: the publishes wait for it (each until its deadline), or fail once it fails.
      if (!this.waitingForReady) {
        this.waitingForReady = true
        this.connection.once('ready', this.opened)
        this.connection.once('close', this.opened)
      }
    } else {
      // Lost (Redis away, reconnecting): nothing is queued for later, nothing delivered locally only.
      for (let i = this.head; i < this.queue.length; i++) this.fail(this.queue[i] as Pending, `the Redis connection is ${status}`)
    }
  }

  /** The connection is ready, or failed to open: send, or reject what waits. */
  private readonly opened = (): void => {
    this.waitingForReady = false
    this.connection.off('ready', this.opened)
    this.connection.off('close', this.opened)
    this.flush()
  }

  /** Sends the oldest queued publishes as one pipeline (a lone one as a plain command). */
  private send (): void {
    const { key, maxLen, maxAgeMs, waitReplicas } = this.options
    const batch: Pending[] = []
    let bytes = 0
    // What waits is unsettled: publishes are rejected past their deadline oldest first, and flush()
    // dropped those before it.
    while (this.head < this.queue.length && batch.length < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES) {
      const entry = this.queue[this.head] as Pending
      this.queue[this.head++] = undefined
      batch.push(entry)
      bytes += entry.bytes
    }
    // Compact once the sent prefix outweighs what waits, so the queue stays amortized O(1).
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    this.inFlight = batch
    const now = Date.now()
    const trim = maxAgeMs !== undefined && now - this.lastTrim >= TRIM_EVERY_MS
    if (batch.length === 1 && !trim && waitReplicas === 0) {
      // Nothing to batch: a plain XADD costs less than a pipeline of one, so a lone publish is as fast as Redis.
      const entry = batch[0] as Pending
      this.connection.xadd(key, 'MAXLEN', '~', maxLen, '*', TOPIC_FIELD, entry.topic, EVENT_FIELD, entry.event, DATA_FIELD, entry.data).then(
        (id) => this.settle(batch, [[null, id]], undefined),
        (err: Error) => this.settle(batch, [[err, null]], undefined)
      )
      return
    }
    const pipeline = this.connection.pipeline()
    for (const entry of batch) {
      pipeline.xadd(key, 'MAXLEN', '~', maxLen, '*', TOPIC_FIELD, entry.topic, EVENT_FIELD, entry.event, DATA_FIELD, entry.data)
    }
    if (trim) {
      this.lastTrim = now
      pipeline.xtrim(key, 'MINID', '~', `${now - (maxAgeMs as number)}-0`)
    }
    pipeline.exec().then(
      (replies) => this.written(batch, replies as Replies),
      (err: Error) => this.settle(batch, batch.map(() => [err, null]), undefined)
    )
  }

  /**
   * With `waitReplicas`, the batch resolves once WAIT says that many replicas hold what it wrote.
   * WAIT goes in a pipeline of its own, after the XADDs' replies, with a read of the log's key: on
   * a Cluster that routes it to the node (and connection) the XADDs were written on, and a pipeline
   * of XADDs alone is one ioredis redirects as a whole when a failover moved its slot (one with a
   * WAIT that answered would be given back, MOVED errors and all, and sent to the old node again).
   */
  private written (batch: Pending[], replies: Replies): void {
    const { key, waitReplicas } = this.options
    if (waitReplicas === 0 || this.closed || !batch.some((_, i) => (replies[i] as Replies[number])[0] === null)) {
      this.settle(batch, replies, undefined)
      return
    }
    // WAIT answers once `waitReplicas` replicas acknowledged every write before it on this
    // connection, or with how many did when the oldest publish of the batch is due (0 would block).
    const timeout = Math.max(1, Math.floor((batch[0] as Pending).deadline - performance.now()))
    this.connection.pipeline().exists(key).wait(waitReplicas, timeout).exec().then(
      (waited) => this.settle(batch, replies, this.unreplicated((waited as Replies)[1] as Replies[number])),
      (err: Error) => this.settle(batch, replies, this.unreplicated([err, null]))
    )
  }

  /**
   * Resolves each publish of the batch to its id, or rejects it (all written ones, with `unreplicated`
   * when WAIT did not confirm them); what Redis did not run is sent again first.
   */
  private settle (batch: Pending[], replies: Replies, unreplicated: string | undefined): void {
    this.inFlight = undefined
    if (this.closed) return
    let again: Pending[] | undefined
    for (const [i, entry] of batch.entries()) {
      const [err, id] = replies[i] as Replies[number]
      if (err === null) {
        if (unreplicated === undefined) this.succeed(entry, id as string)
        else this.fail(entry, unreplicated)
      } else if (NOT_RUN.test(err.message)) {
        // Redis did not run it: send it again, ahead of what was published since (order holds), unless it is overdue.
        if (!entry.settled) (again ??= []).push(entry)
      } else {
        this.fail(entry, err.name === 'ReplyError'
          ? `Redis refused the event (${err.message})`
          : `the connection to Redis failed before it answered (${err.message}); the event may still be in the log`)
      }
    }
    if (again !== undefined) {
      this.queue = [...again, ...this.queue.slice(this.head)]
      this.head = 0
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined
        this.flush()
      }, RETRY_MS)
      this.retryTimer.unref()
    } else if (this.head < this.queue.length) {
      this.queueFlush()
    }
  }

  /** Why the batch's writes cannot be called replicated, from WAIT's reply, or undefined when they can. */
  private unreplicated ([err, acknowledged]: Replies[number]): string | undefined {
    const { waitReplicas } = this.options
    if (err !== null) return `WAIT failed (${err.message}); the event may still be in the log`
    if ((acknowledged as number) < waitReplicas) {
      return `${acknowledged as number} of ${waitReplicas} replicas acknowledged the event before it was due (waitReplicas): it is in the master's log, and a failover may lose it`
    }
    return undefined
  }

  private succeed (entry: Pending, id: string): void {
    if (entry.settled) return
    entry.settled = true
    this.unsettled--
    entry.resolve(id)
  }

  private fail (entry: Pending, reason: string): void {
    if (entry.settled) return
    entry.settled = true
    this.unsettled--
    entry.reject(new FRT_ERR_BROKER_UNAVAILABLE(reason))
  }

  /** Arms the one timer that rejects publishes past their deadline: the oldest waiting one's. */
  private armDeadline (): void {
    const oldest = this.oldestUnsettled()
    if (oldest === undefined) return
    this.deadlineTimer = setTimeout(this.expire, Math.max(0, oldest.deadline - performance.now()))
    this.deadlineTimer.unref()
  }

  private readonly expire = (): void => {
    this.deadlineTimer = undefined
    const now = performance.now()
    const reason = `Redis did not answer within ${this.options.commandTimeout} ms`
    // A batch in flight stays in flight (its replies may still come, and are then ignored); what
    // waits behind it is never sent once rejected.
    for (const entry of this.inFlight ?? []) if (entry.deadline <= now) this.fail(entry, reason)
    for (let i = this.head; i < this.queue.length && (this.queue[i] as Pending).deadline <= now; i++) this.fail(this.queue[i] as Pending, reason)
    this.armDeadline()
  }

  private oldestUnsettled (): Pending | undefined {
    for (const entry of this.inFlight ?? []) if (!entry.settled) return entry
    for (let i = this.head; i < this.queue.length; i++) if (!(this.queue[i] as Pending).settled) return this.queue[i]
    return undefined
  }
}
