// Upgrade requests answered before any WebSocket work: late ones while the server closes, and ones
// over their address's budget (upgradeRateLimit).
import type { Socket } from 'node:net'
import type { UpgradeRateLimitOptions } from '../options.js'

/** How long a closing socket may take to answer before it is destroyed. @internal */
export const CLOSE_TIMEOUT = 1000

/** Answers an upgrade request with a bare HTTP status and ends its socket; a peer's socket errors are ignored. */
function answerUpgrade (socket: Socket, status: string, headers = ''): void {
  socket.on('error', () => {})
  socket.end(`HTTP/1.1 ${status}\r\n${headers}Connection: close\r\nContent-Length: 0\r\n\r\n`)
}

export function refuseLateUpgrade (_request: unknown, socket: Socket): void {
  answerUpgrade(socket, '503 Service Unavailable')
}

/**
 * Counts upgrade requests per remote address in fixed windows; returns 0 for an allowed request, else
 * the seconds until the window ends. Only the current window's addresses are kept.
 */
export function upgradeBudget (limit: UpgradeRateLimitOptions): (address: string) => number {
  let windowStart = 0
  let counts = new Map<string, number>()
  return function spend (address: string): number {
    const now = Date.now()
    if (now - windowStart >= limit.intervalMs) {
      windowStart = now
      counts = new Map()
    }
    const count = (counts.get(address) ?? 0) + 1
    counts.set(address, count)
    return count <= limit.upgrades ? 0 : Math.max(1, Math.ceil((windowStart + limit.intervalMs - now) / 1000))
  }
}

/** HTTP 429 to an upgrade over its address's budget: no routing, no hooks, no handshake. */
export function refuseTooMany (socket: Socket, retryAfter: number): void {
  // A peer that never closes its side is not waited for.
  socket.setTimeout(CLOSE_TIMEOUT, () => socket.destroy())
  answerUpgrade(socket, '429 Too Many Requests', `Retry-After: ${retryAfter}\r\n`)
}
