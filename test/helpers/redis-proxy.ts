// A TCP proxy in front of a redis-server, standing in for a flaky link where a fault must hit one
// connection only (a reply lost on the wire, one instance's reader lagging behind, a link cut
// with replies in flight), and counting how the writes of the connections that XADD reach Redis.
import net from 'node:net'
import type { Test } from 'tap'

export interface Proxy {
  url: string
  /** The next XADD reaches Redis, but its reply is lost: the connection drops instead. */
  loseNextXaddReply (): void
  /** Holds back what Redis sends, to every connection or to reading (XREAD) ones only, as a slow link would. */
  hold (which: 'all' | 'readers'): void
  /** Delivers what was held, in order, and stops holding. */
  release (): void
  /** Drops every connection and refuses new ones: Redis is unreachable through this link. */
  cut (): void
  /** Accepts connections again. */
  restore (): void
  /** The chunks that reached the proxy carrying at least one XADD (several XADDs in one chunk are one write). */
  readonly xaddWrites: number
  /** The XADD commands that went through. */
  readonly xadds: number
}

const XADD = /\r\nxadd\r\n/gi

export async function startProxy (t: Test, target: number): Promise<Proxy> {
  let loseXadd = false
  let holding: 'all' | 'readers' | undefined
  let refusing = false
  let xaddWrites = 0
  let xadds = 0
  const links = new Set<{ client: net.Socket, upstream: net.Socket, held: Buffer[] }>()
  const server = net.createServer((client) => {
    client.on('error', () => {})
    if (refusing) {
      client.destroy()
      return
    }
    const upstream = net.connect(target, '127.0.0.1')
    const link = { client, upstream, held: [] as Buffer[] }
    let reader = false
    let dropReply = false
    // The end of the previous chunk, so an XADD split across two chunks is still counted once.
    let carry = ''
    links.add(link)
    const end = (): void => {
      client.destroy()
      upstream.destroy()
      links.delete(link)
    }
    client.on('data', (chunk: Buffer) => {
      const text = carry + chunk.toString('latin1')
      carry = text.slice(-7)
      if (/xread/i.test(text)) reader = true
      const count = text.match(XADD)?.length ?? 0
      if (count > 0) {
        xaddWrites++
        xadds += count
      }
      if (loseXadd && count > 0) {
        loseXadd = false
        dropReply = true
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (dropReply) return end() // Redis has executed it; the client never hears
      if (holding === 'all' || (holding === 'readers' && reader)) {
        link.held.push(chunk)
        return
      }
      client.write(chunk)
    })
    for (const socket of [client, upstream]) {
      socket.on('error', end)
      socket.on('close', end)
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const link of links) link.client.destroy()
    server.close(() => resolve())
  }))
  return {
    url: `redis://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    loseNextXaddReply () { loseXadd = true },
    hold (which) { holding = which },
    release () {
      holding = undefined
      for (const link of links) {
        for (const chunk of link.held.splice(0)) link.client.write(chunk)
      }
    },
    cut () {
      refusing = true
      for (const link of links) {
        link.client.destroy()
        link.upstream.destroy()
      }
    },
    restore () { refusing = false },
    get xaddWrites () { return xaddWrites },
    get xadds () { return xadds }
  }
}
