// The clustered chat (examples/cluster.js): two instances in one process, sharing one Redis, as two
// processes behind a load balancer would. Needs REDIS_URL (scripts/redis-test-server.sh starts a
// throwaway server); without it the file is skipped, saying why, except in CI, where it fails. The
// example imports the built package (dist/), so `npm run build` must run first (npm test does).
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { build } from '../../examples/cluster.js'
import { connectWS, injectSSE, type ConnectedWS } from '../../lib/testing/index.js'
import { nextTopicEvent } from '../helpers/index.js'

type App = Awaited<ReturnType<typeof build>>

const redisUrl = process.env.REDIS_URL

/**
 * Two instances on one Redis namespace of their own; clients dropped, apps closed and keys deleted
 * after the test. `aliveMsOfA`: instance a's presence key lifetime (b keeps the default).
 */
async function cluster (t: Test, { aliveMsOfA }: { aliveMsOfA?: number } = {}) {
  const url = redisUrl as string
  const namespace = `test-cluster-${randomBytes(6).toString('hex')}`
  const redis = new Redis(url)
  const apps = new Set<App>()
  const clients = new Map<ConnectedWS, App>()
  t.teardown(async () => {
    // Over injectWS a graceful close waits out ws's close timeout: end the clients' sockets first.
    for (const client of clients.keys()) client.socket.terminate()
    for (const app of apps) await app.close()
    const keys = await redis.keys(`*{${namespace}}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  const instance = async (aliveMs?: number) => {
    const app = await build({ redisUrl: url, namespace, aliveMs })
    apps.add(app)
    return app
  }
  const a = await instance(aliveMsOfA)
  const b = await instance()

  async function login (app: App, name: string): Promise<string> {
    const response = await app.inject({ method: 'POST', url: '/chat/login', payload: { name } })
    if (response.statusCode !== 200) throw new Error(`login of ${name}: ${response.statusCode} ${response.body}`)
    return response.json().token
  }
  async function join (app: App, token: string): Promise<ConnectedWS> {
    const ws = await connectWS(app, '/chat/ws', { protocols: ['realtime.v1', `bearer.${token}`] })
    clients.set(ws, app)
    return ws
  }
  return {
    a,
    b,
    redis,
    namespace,
    login,
    join,
    /** Signs in on `app` and opens a socket there, in `room`; resolves once its own arrival is seen. */
    async member (app: App, name: string, room = 'lobby') {
      const ws = await join(app, await login(app, name))
      await ws.request('realtime.subscribe', { topic: `room:${room}` })
      await ws.request('join', { room })
      const arrival = await ws.nextEvent('presence')
      return { ws, arrival }
    },
    /** Closes one instance, as a process would on SIGTERM; its clients vanish. */
    async stop (app: App) {
      apps.delete(app)
      for (const [client, on] of clients) if (on === app) client.socket.terminate()
      await app.close()
    }
  }
}

/** The members in the next presence event a client gets. */
async function membersSeenBy (ws: ConnectedWS): Promise<string[]> {
  return ((await ws.nextEvent('presence')).data as { members: string[] }).members
}

/** The promise's rejection reason, or undefined when it resolves. */
function rejection (promise: Promise<unknown>): Promise<any> {
  return promise.then(() => undefined, (err: unknown) => err)
}

function clusterTests () {
  t.test('cluster: a token signed in on one instance opens a socket on the other', async (t) => {
    const { a, b, login, join } = await cluster(t)
    const token = await login(a, 'ann')
    t.match(token, /^[0-9a-f]{32}$/)
    const ws = await join(b, token)
    t.same(await ws.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann'] }, 'ann, signed in on a, talks on b')
    t.match(await rejection(join(b, '0'.repeat(32))), { statusCode: 401 }, 'a token nobody issued')
    t.match(await rejection(join(a, 'not-even-hex')), { statusCode: 401 }, 'a malformed one')
  })

  t.test('cluster: a message said on one instance reaches members on the other, with the same id', async (t) => {
    const { a, b, member } = await cluster(t)
    const ann = await member(a, 'ann')
    const bob = await member(b, 'bob')
    t.same(bob.arrival.data, { room: 'lobby', members: ['ann', 'bob'] }, 'b lists the member on a')
    t.same(await membersSeenBy(ann.ws), ['ann', 'bob'], 'and a sees bob arrive on b')

    const { id } = await ann.ws.request('say', { room: 'lobby', text: 'hi bob' }) as { id: string }
    const expected = { event: 'message', data: { room: 'lobby', user: 'ann', text: 'hi bob' }, topic: 'room:lobby', id }
    t.same(await bob.ws.nextEvent('message'), expected, 'delivered on b')
    t.same(await ann.ws.nextEvent('message'), expected, 'and on a, the same event')

    const reply = await bob.ws.request('say', { room: 'lobby', text: 'hi ann' }) as { id: string }
    t.match(await ann.ws.nextEvent('message'), { data: { user: 'bob', text: 'hi ann' }, id: reply.id }, 'and back')
  })

  t.test('cluster: the SSE view on the other instance sees what is said, and resumes on the first', async (t) => {
    const { a, b, member } = await cluster(t)
    const ann = await member(a, 'ann')
    // From ann's arrival on: whatever follows is replayed or delivered live, never missed.
    const view = await injectSSE(b, { url: '/chat/rooms/lobby/events', lastEventId: ann.arrival.id })
    t.equal(view.statusCode, 200)
    const said = await ann.ws.request('say', { room: 'lobby', text: 'hello, readers' }) as { id: string }
    // The view's realtime.position comes once it is live: before or after the event, as it happens.
    t.same(await nextTopicEvent(view), { event: 'message', data: JSON.stringify({ room: 'lobby', user: 'ann', text: 'hello, readers' }), id: said.id })
    await view.close()

    const missed = await ann.ws.request('say', { room: 'lobby', text: 'while the view was away' }) as { id: string }
    const resumed = await injectSSE(a, { url: '/chat/rooms/lobby/events', lastEventId: view.lastEventId })
    t.match(await nextTopicEvent(resumed), { event: 'message', id: missed.id }, 'resumed on a from the id b sent: no gap, no duplicate')
    const live = await ann.ws.request('say', { room: 'lobby', text: 'live' }) as { id: string }
    t.match(await nextTopicEvent(resumed), { event: 'message', id: live.id }, 'then live')
    await resumed.close()
  })

  t.test('cluster: a room subscribed with `after` on the other instance replays what was said meanwhile', async (t) => {
    const { a, b, member, login, join } = await cluster(t)
    const bob = await member(b, 'bob')
    const token = await login(a, 'ann')
    const ann = await join(a, token)
    await ann.request('realtime.subscribe', { topic: 'room:lobby' })
    await ann.request('join', { room: 'lobby' })
    const lastSeen = await ann.nextEvent('presence')
    ann.socket.terminate()
    t.same(await membersSeenBy(bob.ws), ['ann', 'bob'])
    t.same(await membersSeenBy(bob.ws), ['bob'], 'ann has left a')
    const { id } = await bob.ws.request('say', { room: 'lobby', text: 'you missed this' }) as { id: string }

    const back = await join(b, token)
    t.same(await back.request('realtime.subscribe', { topic: 'room:lobby', after: lastSeen.id }), { topic: 'room:lobby', position: id, resumed: true })
    t.same(await membersSeenBy(back), ['bob'], 'replayed before the reply: ann\'s own departure from a')
    t.match(await back.nextEvent('message'), { data: { text: 'you missed this' }, id }, 'then the message')
  })

  t.test('cluster: a name on both instances is listed once, until it leaves both', async (t) => {
    const { a, b, member, login, join } = await cluster(t)
    const bob = await member(b, 'bob')
    const token = await login(a, 'ann')
    const onA = await join(a, token)
    const onB = await join(b, token)
    await onA.request('join', { room: 'lobby' })
    t.same(await onB.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann', 'bob'] })
    t.same(await membersSeenBy(bob.ws), ['ann', 'bob'])
    t.same(await membersSeenBy(bob.ws), ['ann', 'bob'])
    await onA.request('leave', { room: 'lobby' })
    t.same(await membersSeenBy(bob.ws), ['ann', 'bob'], 'still on b')
    await onB.request('leave', { room: 'lobby' })
    t.same(await membersSeenBy(bob.ws), ['bob'])
  })

  t.test('cluster: an instance that closes takes its members out of the rooms on the others', async (t) => {
    const { a, b, member, stop } = await cluster(t)
    const bob = await member(b, 'bob')
    await member(a, 'ann')
    t.same(await membersSeenBy(bob.ws), ['ann', 'bob'])
    await stop(a)
    t.same(await membersSeenBy(bob.ws), ['bob'], 'a published ann\'s departure before its broker closed')
  })

  t.test('cluster: the members of an instance that stopped renewing its key are dropped', async (t) => {
    // a renews every 20 s: not during this test. Its key deleted is what a crash looks like after aliveMs.
    const { a, b, redis, namespace, member, login, join } = await cluster(t, { aliveMsOfA: 60000 })
    await member(a, 'ann')
    const bob = await member(b, 'bob')
    t.same(bob.arrival.data, { room: 'lobby', members: ['ann', 'bob'] })
    const key = `chat:{${namespace}}:presence:lobby`
    const entries = await redis.hgetall(key)
    const annField = Object.keys(entries).find((field) => entries[field] === 'ann') as string
    t.equal(await redis.del(`chat:{${namespace}}:instance:${annField.split(':')[0]}`), 1, 'a\'s key, gone')

    const carol = await join(b, await login(b, 'carol'))
    t.same(await carol.request('join', { room: 'lobby' }), { room: 'lobby', members: ['bob', 'carol'] }, 'ann is no ghost')
    t.same(await membersSeenBy(bob.ws), ['bob', 'carol'])
    t.notOk(annField in await redis.hgetall(key), 'and her entry was deleted')
  })

  t.test('cluster: an instance whose key expired writes its members back at the next renewal', async (t) => {
    const { a, b, redis, namespace, member, login, join } = await cluster(t, { aliveMsOfA: 300 })
    await member(a, 'ann')
    const key = `chat:{${namespace}}:presence:lobby`
    const entries = await redis.hgetall(key)
    const annField = Object.keys(entries).find((field) => entries[field] === 'ann') as string
    // a's key expired (Redis away from a for longer than aliveMs), and another instance dropped
    // ann meanwhile: in one transaction, so no renewal of a's comes in between.
    await redis.multi().del(`chat:{${namespace}}:instance:${annField.split(':')[0]}`).hdel(key, annField).exec()
    // a renews every 100 ms, finds its key had expired, and writes its entries back.
    let back = false
    for (let attempt = 0; attempt < 100 && !back; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20))
      back = (await redis.hget(key, annField)) === 'ann'
    }
    t.ok(back, 'ann\'s entry is back')
    const bob = await join(b, await login(b, 'bob'))
    t.same(await bob.request('join', { room: 'lobby' }), { room: 'lobby', members: ['ann', 'bob'] })
  })

  t.test('cluster: without REDIS_URL the example says what it needs', async (t) => {
    await t.rejects(build({ redisUrl: '' }), /needs REDIS_URL/)
  })
}

if (redisUrl !== undefined && redisUrl !== '') {
  clusterTests()
} else if (process.env.CI !== undefined && process.env.CI !== '') {
  t.fail('REDIS_URL is not set: in CI the Redis tests must run, never skip (.ci/run starts a redis-server)')
} else {
  t.comment('examples-cluster: REDIS_URL is not set, so these tests are skipped. Start a throwaway Redis with scripts/redis-test-server.sh and run `REDIS_URL=<its url> npm test`.')
  t.plan(0, 'REDIS_URL is not set')
}
