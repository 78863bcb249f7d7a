/** What a heartbeat group calls on each tick. @internal */
export interface HeartbeatMember {
  heartbeat (): void
}

/** One heartbeat timer per interval, shared by every stream that uses it. @internal */
export class Heartbeats {
  private readonly groups = new Map<number, { timer: NodeJS.Timeout, streams: Set<HeartbeatMember> }>()

  add (interval: number, stream: HeartbeatMember): void {
    let group = this.groups.get(interval)
    if (group === undefined) {
      const streams = new Set<HeartbeatMember>()
      const timer = setInterval(() => {
        for (const member of streams) member.heartbeat()
      }, interval)
      timer.unref()
      group = { timer, streams }
      this.groups.set(interval, group)
    }
    group.streams.add(stream)
  }

  remove (interval: number, stream: HeartbeatMember): void {
    // Only streams that add() themselves call remove(), so the group exists.
    const group = this.groups.get(interval) as { timer: NodeJS.Timeout, streams: Set<HeartbeatMember> }
    group.streams.delete(stream)
    if (group.streams.size === 0) {
      clearInterval(group.timer)
      this.groups.delete(interval)
    }
  }
}
