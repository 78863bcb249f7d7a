import { PassThrough } from 'node:stream'
import t from 'tap'
import { PendingUpgrades } from '../../lib/ws/pending-upgrades.js'

// The sockets of upgrades still in Fastify's hooks, which app.close() ends: bounded without a
// listener on any socket.

t.test('a socket that became a connection leaves; destroyAll ends the rest', async (t) => {
  const pending = new PendingUpgrades()
  const connected = new PassThrough()
  const waiting = new PassThrough()
  pending.add(connected)
  pending.add(waiting)
  pending.delete(connected)
  t.equal(pending.size, 1)
  pending.destroyAll()
  t.equal(waiting.destroyed, true, 'the waiting socket was destroyed')
  t.equal(connected.destroyed, false, 'the connection\'s socket was left alone')
  t.equal(pending.size, 0)
})

t.test('sockets that ended on their own are dropped once the set doubles: never more than twice those pending', async (t) => {
  const pending = new PendingUpgrades()
  const live: PassThrough[] = []
  let largest = 0
  for (let i = 0; i < 10_000; i++) {
    const socket = new PassThrough()
    pending.add(socket)
    // One in ten stays pending (authenticate has not settled); the rest are refused and end.
    if (i % 10 === 0) live.push(socket)
    else socket.destroy()
    largest = Math.max(largest, pending.size)
  }
  t.ok(largest <= Math.max(64, 2 * live.length), `at most ${largest} held for ${live.length} pending`)
  pending.destroyAll()
  t.ok(live.every((socket) => socket.destroyed), 'every pending socket was ended')
})
