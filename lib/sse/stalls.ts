/** What a stall watch asks of a stream. @internal */
export interface StallMember {
  /** Bytes written to the stream that its socket has not sent yet. */
  readonly unsentBytes: number
  /** Bytes of the socket's write in progress that the kernel has not taken yet (0 when unknown). */
  readonly queuedBytes: number
  /** Bytes written to the stream while congested, a running total. */
  readonly writtenBytes: number
  /** Closes the stream: its client stopped reading. */
  cutStalled (): void
}

/**
 * A watched stream at its last check: its unsent bytes, the part of its write in progress still
 * queued, its written total, checks without progress.
 */
interface Watch {
  unsent: number
  queued: number
  written: number
  idleChecks: number
}

interface Group {
  timer: NodeJS.Timeout
  members: Map<StallMember, Watch>
}

// A group checks its streams this many times per timeout: a stream is cut once its socket has sent
// nothing for a whole timeout, at most a quarter of one later, never sooner.
const CHECKS_PER_TIMEOUT = 8

/**
 * Watches congested streams (a write left more unsent than the socket's high-water mark) until
 * they drain: one timer per timeout value, running only while a stream of that timeout is
 * congested, shared by all of them. At each check a stream whose socket sent nothing since the
 * last one counts one more idle check; any progress resets the count. A stream idle for a whole
 * timeout is cut. The kernel's buffers are full before a stream is congested: a client that reads
 * frees them first, so the socket sends again only once the kernel has room (a third of its send
 * buffer, on Linux), and a reader that never frees that much within a timeout is cut.
 * Idle streams cost nothing here: only congested ones are watched.
 * @internal
 */
export class Stalls {
  private readonly groups = new Map<number, Group>()

  /** Starts watching a stream that just became congested. */
  watch (timeout: number, member: StallMember): void {
    let group = this.groups.get(timeout)
    if (group === undefined) {
      const members = new Map<StallMember, Watch>()
      const timer = setInterval(() => { check(members) }, Math.max(1, Math.floor(timeout / CHECKS_PER_TIMEOUT)))
      timer.unref()
      group = { timer, members }
      this.groups.set(timeout, group)
    }
    group.members.set(member, { unsent: member.unsentBytes, queued: member.queuedBytes, written: member.writtenBytes, idleChecks: 0 })
  }

  /** Stops watching a stream (it drained, or ended); a no-op for one not watched. */
  unwatch (timeout: number, member: StallMember): void {
    const group = this.groups.get(timeout)
    if (group === undefined || !group.members.delete(member) || group.members.size > 0) return
    clearInterval(group.timer)
    this.groups.delete(timeout)
  }
}

function check (members: Map<StallMember, Watch>): void {
  for (const [member, watch] of members) {
    const unsent = member.unsentBytes
    const queued = member.queuedBytes
    const written = member.writtenBytes
    // Progress: a write completed (the unsent bytes fell by more than what was written since), or
    // the kernel took part of the write in progress (one write at a time is in progress, so its
    // queue only grows when a new one starts, which the first test has seen).
    if (unsent < watch.unsent + (written - watch.written) || queued < watch.queued) {
      watch.idleChecks = 0
    } else if (++watch.idleChecks > CHECKS_PER_TIMEOUT) {
      // cutStalled() ends the stream, which unwatches it (and may clear this very timer).
      member.cutStalled()
      continue
    }
    watch.unsent = unsent
    watch.queued = queued
    watch.written = written
  }
}
