import type { Socket } from 'node:net'

/**
 * Write batching for fan-out, in two parts.
 *
 * Runs: the shared frames of topic events (one buffer per event and transport, the same for every
 * socket) that a socket gets in one tick are joined into one buffer, written once at the end of the
 * tick. Sockets that got the same frames share that buffer: it is joined once. A socket's run ends
 * early, written at once, before any other write to the socket, when a frame breaks it (a frame the
 * run does not continue), and before its bytes would reach the socket's limit (its high-water mark
 * or its slow-consumer bound), so every check on unsent bytes sees what it saw without runs.
 *
 * Corks: any other write (a reply, a `send`, a heartbeat, a run written early) corks its socket
 * once, uncorked with every other one in a single `process.nextTick`, so the writes of one tick leave
 * in one `writev` per socket instead of one system call per write. A socket holding more than
 * CORK_LIMIT bytes is uncorked at once, so a burst reaches the kernel as it is written and never
 * waits in user space.
 * @internal
 */
export interface Corkable {
  /** True while this module holds the socket corked. */
  corked: boolean
  /** The tick's run: frames [runStart, runEnd) of its lane; runEnd 0 when there is none. */
  runStart: number
  runEnd: number
  /** Writes the run, taken with {@link takeRun}, the way the owner writes anything. */
  flushRun (): void
}

/** Unsent bytes past which a socket is uncorked at once. @internal */
export const CORK_LIMIT = 64 * 1024

/**
 * The shared frames of one transport written in this tick, each once, in the order of first
 * write; a run is a slice of them. @internal
 */
export class Lane {
  frames: Buffer[] = []
  // offsets[i]: the bytes of frames[0..i).
  offsets: number[] = [0]
  // The last run joined: runs of many sockets are the same slice.
  private joinedStart = 0
  private joinedEnd = 0
  private joined: Buffer | undefined

  /** The bytes of frames [start, end), joined once for every run of that slice. */
  join (start: number, end: number): Buffer {
    if (end - start === 1) return this.frames[start] as Buffer
    if (this.joined === undefined || start !== this.joinedStart || end !== this.joinedEnd) {
      this.joined = Buffer.concat(this.frames.slice(start, end), (this.offsets[end] as number) - (this.offsets[start] as number))
      this.joinedStart = start
      this.joinedEnd = end
    }
    return this.joined
  }

  append (frame: Buffer): number {
    const index = this.frames.length
    if (index === 0) lanes.push(this)
    this.frames.push(frame)
    this.offsets.push((this.offsets[index] as number) + frame.length)
    return index
  }

  clear (): void {
    this.frames = []
    this.offsets = [0]
    this.joined = undefined
  }
}

let owners: Array<Corkable | Socket> = []
let lanes: Lane[] = []
let scheduled = false
// Set while the tick's runs are written: each goes to its socket at once, in one write, uncorked.
let ending = false

function endTick (): void {
  ending = true
  // Until every run is written: one joined by code that these writes lead to is written here too,
  // before the lanes its run is a slice of are cleared.
  while (owners.length > 0) {
    const list = owners
    owners = []
    for (let i = 0; i < list.length; i += 2) {
      const owner = list[i] as Corkable
      if (owner.runEnd !== 0) owner.flushRun()
      if (!owner.corked) continue
      owner.corked = false
      ;(list[i + 1] as Socket).uncork()
    }
  }
  ending = false
  scheduled = false
  for (const lane of lanes) lane.clear()
  lanes = []
}

function enlist (owner: Corkable, socket: Socket): void {
  owners.push(owner, socket)
  if (!scheduled) {
    scheduled = true
    process.nextTick(endTick)
  }
}

/**
 * Adds a shared frame of `lane` to the owner's run while the run and the socket's unsent bytes stay
 * under its high-water mark and `maxBufferedBytes`. Returns false when the frame must be written
 * now, as any other write: past that limit (the run before it is written first). @internal
 */
export function joinRun (owner: Corkable, socket: Socket, lane: Lane, frame: Buffer, maxBufferedBytes: number): boolean {
  const frames = lane.frames
  let end = owner.runEnd
  // A frame that does not continue the run ends it.
  if (end !== 0 && frames[end] !== frame && end !== frames.length) {
    owner.flushRun()
    end = 0
  }
  let start: number
  if (end === 0) {
    const last = frames.length - 1
    start = last >= 0 && frames[last] === frame ? last : lane.append(frame)
    // An owner with a run or a cork is in this tick's list already.
    if (!owner.corked) enlist(owner, socket)
  } else {
    start = owner.runStart
    if (end === frames.length) lane.append(frame)
  }
  end = (end === 0 ? start : end) + 1
  owner.runStart = start
  const limit = Math.min(socket.writableHighWaterMark, maxBufferedBytes)
  if (socket.writableLength + (lane.offsets[end] as number) - (lane.offsets[start] as number) < limit) {
    owner.runEnd = end
    return true
  }
  owner.runEnd = end - 1 === start ? 0 : end - 1
  if (owner.runEnd !== 0) owner.flushRun()
  return false
}

/** The owner's run as one buffer (shared with sockets that got the same frames); the run is over. @internal */
export function takeRun (owner: Corkable, lane: Lane): Buffer {
  const buffer = lane.join(owner.runStart, owner.runEnd)
  owner.runEnd = 0
  return buffer
}

/** Corks `socket` for the rest of this tick, once. Call before writing to it. @internal */
export function corkForTick (owner: Corkable, socket: Socket): void {
  if (owner.corked || ending) return
  owner.corked = true
  socket.cork()
  if (owner.runEnd === 0) enlist(owner, socket)
}

/** Uncorks `socket` now when it holds more than CORK_LIMIT bytes. Call after writing to it. @internal */
export function flushLargeCork (owner: Corkable, socket: Socket): void {
  if (owner.corked && socket.writableLength > CORK_LIMIT) {
    owner.corked = false
    socket.uncork()
  }
}
