// What waits for a connection, bounded in messages and bytes.

/** A message waiting to be sent; `id` when it is a request. */
export interface Queued {
  text: string
  bytes: number
  id: number | undefined
}

const encoder = new TextEncoder()

/** The UTF-8 length of a message: what `maxPayload` and the queue's byte bound count. */
export function utf8Bytes (text: string): number {
  return encoder.encode(text).length
}

export class Queue {
  items: Queued[] = []
  bytes = 0
  private readonly maxMessages: number
  private readonly maxBytes: number

  constructor ({ messages = 100, bytes = 262144 }: { messages?: number, bytes?: number }) {
    this.maxMessages = messages
    this.maxBytes = bytes
  }

  /** Adds a message; false when it does not fit. */
  push (item: Queued): boolean {
    if (this.items.length >= this.maxMessages || this.bytes + item.bytes > this.maxBytes) return false
    this.items.push(item)
    this.bytes += item.bytes
    return true
  }

  /** Removes the request of this id, if it still waits. */
  remove (id: number): void {
    const index = this.items.findIndex((item) => item.id === id)
    if (index === -1) return
    this.bytes -= this.items[index].bytes
    this.items.splice(index, 1)
  }

  /** Empties the queue, returning what waited, oldest first. */
  take (): Queued[] {
    const items = this.items
    this.items = []
    this.bytes = 0
    return items
  }
}
