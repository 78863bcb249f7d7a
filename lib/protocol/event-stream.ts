// A streaming parser for the WHATWG event-stream format (HTML section 9.2.6), used by injectSSE.
// It follows the spec's algorithm step by step, so tests read the stream as a browser would.

/** One dispatched event. `id` is the id field of this event, if it had one. */
export interface ParsedEvent {
  event: string
  data: string
  id: string | undefined
}

/** @internal */
export class EventStreamParser {
  /** The last event ID buffer: what a browser would send as `Last-Event-ID` on reconnect. */
  lastEventId = ''
  /** The reconnection time set by the last valid `retry:` field, if any. */
  retry: number | undefined
  // The spec strips one leading BOM; the decoder must not strip another.
  private readonly decoder = new TextDecoder('utf-8', { ignoreBOM: true })
  private readonly onEvent: (event: ParsedEvent) => void
  private buffer = ''
  private started = false
  private pendingCR = false
  private data = ''
  private eventType = ''
  private eventId: string | undefined

  constructor (onEvent: (event: ParsedEvent) => void) {
    this.onEvent = onEvent
  }

  /** Feeds bytes (or text) as they arrive. */
  push (chunk: Uint8Array | string): void {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true })
    if (!this.started && text.length > 0) {
      this.started = true
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
    }
    if (text.length === 0) return
    if (this.pendingCR && text.charCodeAt(0) === 0x0a) text = text.slice(1) // the LF of a CRLF split across chunks
    this.pendingCR = false
    this.buffer += text
    let start = 0
    for (let i = 0; i < this.buffer.length; i++) {
      const code = this.buffer.charCodeAt(i)
      if (code !== 0x0a && code !== 0x0d) continue
      this.line(this.buffer.slice(start, i))
      if (code === 0x0d) {
        if (i + 1 === this.buffer.length) this.pendingCR = true
        else if (this.buffer.charCodeAt(i + 1) === 0x0a) i++
      }
      start = i + 1
    }
    this.buffer = this.buffer.slice(start)
  }

  /** The end of the stream: an event without its closing blank line is discarded, as the spec says. */
  end (): void {
    this.buffer = ''
    this.data = ''
    this.eventType = ''
    this.eventId = undefined
  }

  private line (line: string): void {
    if (line === '') return this.dispatch()
    if (line.charCodeAt(0) === 0x3a) return // a comment
    const colon = line.indexOf(':')
    let field = line
    let value = ''
    if (colon !== -1) {
      field = line.slice(0, colon)
      value = line.slice(colon + 1)
      if (value.charCodeAt(0) === 0x20) value = value.slice(1)
    }
    switch (field) {
      case 'event':
        this.eventType = value
        break
      case 'data':
        this.data += `${value}\n`
        break
      case 'id':
        if (!value.includes('\0')) {
          this.lastEventId = value
          this.eventId = value
        }
        break
      case 'retry':
        if (/^\d+$/.test(value)) this.retry = Number(value)
        break
    }
  }

  private dispatch (): void {
    const id = this.eventId
    this.eventId = undefined
    if (this.data === '') {
      this.eventType = ''
      return
    }
    const data = this.data.slice(0, -1)
    const event = this.eventType === '' ? 'message' : this.eventType
    this.data = ''
    this.eventType = ''
    this.onEvent({ event, data, id })
  }
}
