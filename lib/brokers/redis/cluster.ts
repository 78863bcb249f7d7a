// Redis Cluster: one namespace's log is one key, `frt:{<namespace>}:log`, whose hash tag puts it in
// one slot, on one master (and its replicas). The writer and the reader are each an ioredis Cluster
// of their own (the reader's blocking XREAD would stall the writer's node connection), so each
// follows MOVED and ASK and finds the new master after a failover by itself; what they must not do
// by themselves is set here.
import { Cluster, type ClusterOptions } from 'ioredis'
import type { Redis } from 'ioredis'
import { DISCONNECT_TIMEOUT, destroy, type Connections, type ConnectionSource } from './connections.js'

/**
 * The writer: never resends a command whose node connection closed before it answered (ioredis
 * would, after `retryDelayOnFailover`): an XADD may have been written before the node went away,
 * and must not be twice; its publish rejects instead. CLUSTERDOWN surfaces too: Redis did not run
 * the command, and the publisher sends it again itself, within the publish's deadline. MOVED, ASK
 * and TRYAGAIN (not run either) are followed by ioredis, for a pipeline whose commands all got the
 * same one; a pipeline cut in two by a failover is finished by the publisher.
 */
const WRITER: ClusterOptions = {
  scaleReads: 'master',
  enableAutoPipelining: false,
  lazyConnect: false,
  retryDelayOnFailover: 0,
  retryDelayOnClusterDown: 0,
  redisOptions: { autoResendUnfulfilledCommands: false, enableAutoPipelining: false, disconnectTimeout: DISCONNECT_TIMEOUT }
}

/** The reader reads the master, where every acknowledged event is; reads are idempotent, so ioredis may resend them. */
const READER: ClusterOptions = {
  scaleReads: 'master',
  enableAutoPipelining: false,
  lazyConnect: false,
  redisOptions: { enableAutoPipelining: false, disconnectTimeout: DISCONNECT_TIMEOUT }
}

/**
 * The writer and the reader on a Redis Cluster: made from the startup nodes of `cluster`, or
 * duplicated from a `client` that is an ioredis Cluster. Undefined when the source is a single Redis.
 */
export function clusterConnections ({ client, cluster }: ConnectionSource): Connections | undefined {
  let writer: Cluster
  let reader: Cluster
  if (cluster !== undefined) {
    writer = new Cluster([...cluster], WRITER)
    reader = new Cluster([...cluster], READER)
  } else if ((client as { isCluster?: unknown } | undefined)?.isCluster === true) {
    writer = (client as Cluster).duplicate([], WRITER)
    reader = (client as Cluster).duplicate([], READER)
  } else {
    return undefined
  }
  return {
    // A Cluster takes the commands and pipelines the broker sends, routed by the key's slot.
    writer: writer as unknown as Redis,
    reader: reader as unknown as Redis,
    close () {
      // Its node connections, taken before disconnect() empties the pool.
      const nodes = [...writer.nodes('all'), ...reader.nodes('all')]
      writer.disconnect()
      reader.disconnect()
      destroy(nodes)
    }
  }
}
