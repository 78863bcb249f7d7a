import type { Socket } from 'node:net'

/**
 * Write batching for fan-out. A socket written to during a tick is corked once and uncorked with
 * every other one in a single `process.nextTick`, so the frames of one tick leave in one `writev`
 * per socket instead of one system call per frame. A socket holding more than CORK_LIMIT bytes is
 * uncorked at once, so a burst reaches the kernel as it is written and never waits in user space.
 * @internal
 */
export interface Corkable {
  /** True while this module holds the socket corked. */
  corked: boolean
}

/** Unsent bytes past which a socket is uncorked at once. @internal */
export const CORK_LIMIT = 64 * 1024

let corked: Array<Corkable | Socket> = []
let scheduled = false

function uncorkAll (): void {
  const list = corked
  corked = []
  scheduled = false
  for (let i = 0; i < list.length; i += 2) {
    const owner = list[i] as Corkable
    if (!owner.corked) continue
    owner.corked = false
    ;(list[i + 1] as Socket).uncork()
  }
}

/** Corks `socket` for the rest of this tick, once. Call before writing to it. @internal */
export function corkForTick (owner: Corkable, socket: Socket): void {
  if (owner.corked) return
  owner.corked = true
  socket.cork()
  corked.push(owner, socket)
  if (!scheduled) {
    scheduled = true
    process.nextTick(uncorkAll)
  }
}

/** Uncorks `socket` now when it holds more than CORK_LIMIT bytes. Call after writing to it. @internal */
export function flushLargeCork (owner: Corkable, socket: Socket): void {
  if (owner.corked && socket.writableLength > CORK_LIMIT) {
    owner.corked = false
    socket.uncork()
  }
}
