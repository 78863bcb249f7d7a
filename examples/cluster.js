// @ts-check
// The chat of examples/chat.js on several instances that share one Redis, as behind a load
// balancer. Both plugins get one `redisBroker`, so every instance reads one Redis Stream: a message
// said on any instance reaches the sockets and the read-only SSE views on all of them, with the same
// id, and an SSE view resumes on any instance from the last id it saw.
//
// The chat also remembers who is signed in and who is in which room. One process keeps that in
// memory; here it goes to the same Redis (keys `chat:{<namespace>}:…`), the simplest design that
// stays true on every instance:
// - Sessions: the login token is random and stored with `SET … EX` (12 h); every instance checks it
//   with `GET`. Chosen over a signed token (an HMAC with a shared secret) because the Redis is
//   shared already: no second secret to hand out, and a token can be revoked (`DEL`). The price:
//   while Redis is away nobody can sign in or connect (503), but then nothing can be published either.
// - Presence: one hash per room, instance + connection -> name. Each instance keeps a key alive
//   (15 s, renewed every 5 s) while it runs; the entries of an instance whose key expired (it
//   crashed) are dropped when a list is read, so no ghost stays listed. Two instances changing one
//   room at the same instant may publish their lists out of order; the next join or leave fixes it.
//
// Run (after `npm run build`; `scripts/redis-test-server.sh` starts a throwaway Redis and prints its URL):
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3000 node examples/cluster.js &
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3001 node examples/cluster.js &
//   then open http://127.0.0.1:3000/chat and http://127.0.0.1:3001/chat, enter lobby on both, talk.
//   `kill %1 %2` stops them: each closes its sockets, and its members leave the rooms.
// Poke: a message said on :3000 arrives on :3001:
//       curl -N http://127.0.0.1:3001/chat/rooms/lobby/events
//       TOKEN=$(curl -s -H 'content-type: application/json' -d '{"name":"ann"}' http://127.0.0.1:3000/chat/login \
//         | node -p 'JSON.parse(require("fs").readFileSync(0)).token')
//       PORT=3000 node --input-type=module -e "
//         import WebSocket from 'ws'
//         import { createWsClient } from 'fastify-realtime/client'
//         const rt = createWsClient('ws://127.0.0.1:' + process.env.PORT + '/chat/ws', { WebSocket, token: () => '$TOKEN' })
//         rt.subscribe('room:lobby').on('message', (data, { id }) => console.log(id, data))
//         await rt.request('join', { room: 'lobby' })
//         console.log(await rt.request('say', { room: 'lobby', text: 'hi from :' + process.env.PORT }))"
//       (the curl on :3001 prints ann's presence and message, with the ids :3000 replied with;
//        run the node line again with PORT=3001: the token signed in on :3000 works there too)
//       An SSE view resumes on the other instance: stop the curl, then
//       curl -N -H 'Last-Event-ID: <the first id it printed>' http://127.0.0.1:3000/chat/rooms/lobby/events
//       (replays what came after that id, said on either instance, then goes live)

import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { fastifySse, fastifyWs } from 'fastify-realtime'
import { redisBroker } from 'fastify-realtime/redis'
import browserClient from './browser-client.js'
import chat from './chat.js'

/** @typedef {import('./chat.js').ChatSessions} ChatSessions */
/** @typedef {import('./chat.js').ChatPresence} ChatPresence */

const SESSION_SECONDS = 12 * 60 * 60
const TOKEN = /^[0-9a-f]{32}$/

/**
 * Redis is away: the login or the upgrade gets a 503 whose message the client may see.
 * @param {unknown} cause
 */
function unavailable (cause) {
  return Object.assign(new Error('The chat cannot reach its session store: try again shortly.', { cause }), { statusCode: 503 })
}

/**
 * Sessions every instance can check: a random token per sign-in, kept in Redis for 12 hours.
 * @param {Redis} redis
 * @param {string} prefix
 * @returns {ChatSessions}
 */
export function redisSessions (redis, prefix) {
  return {
    async create (name) {
      const token = randomBytes(16).toString('hex')
      await redis.set(`${prefix}:session:${token}`, name, 'EX', SESSION_SECONDS).catch((err) => { throw unavailable(err) })
      return token
    },
    async verify (token) {
      // Only a well-formed token becomes part of a key.
      if (!TOKEN.test(token)) return null
      const name = await redis.get(`${prefix}:session:${token}`).catch((err) => { throw unavailable(err) })
      return name === null ? null : { name }
    }
  }
}

/**
 * Presence across instances: a hash per room of `<instance>:<connection id>` -> name, and one key
 * per running instance that expires `aliveMs` after its last renewal (renewed every third of it).
 * `start()` before serving, `close()` when done.
 * @param {Redis} redis
 * @param {string} prefix
 * @param {number} aliveMs
 * @returns {ChatPresence & { start (): Promise<void>, close (): Promise<void> }}
 */
export function redisPresence (redis, prefix, aliveMs) {
  const instance = randomBytes(8).toString('hex')
  /** @param {string} id */
  const aliveKey = (id) => `${prefix}:instance:${id}`
  /** @param {string} room */
  const roomKey = (room) => `${prefix}:presence:${room}`
  /** @param {string} field */
  const instanceOf = (field) => field.slice(0, field.indexOf(':'))
  /** @type {Map<string, Map<string, string>>} this instance's own entries: room key -> field -> name */
  const own = new Map()
  /** @type {NodeJS.Timeout | undefined} */
  let timer

  async function renew () {
    // GET answers the key's previous value: null when it had expired (Redis was away for longer
    // than aliveMs), and other instances may have dropped this one's entries meanwhile.
    const previous = await redis.set(aliveKey(instance), '1', 'PX', aliveMs, 'GET')
    if (previous !== null) return
    for (const [key, fields] of own) await redis.hset(key, Object.fromEntries(fields))
  }

  /** @param {string} room */
  async function members (room) {
    const key = roomKey(room)
    const entries = await redis.hgetall(key)
    const instances = [...new Set(Object.keys(entries).map(instanceOf))]
    const alive = instances.length === 0 ? [] : await redis.mget(instances.map(aliveKey))
    const names = new Set()
    const gone = []
    for (const [field, name] of Object.entries(entries)) {
      if (alive[instances.indexOf(instanceOf(field))] === null) gone.push(field)
      else names.add(name)
    }
    // Entries of an instance that stopped without saying goodbye: nobody else would remove them.
    if (gone.length > 0) await redis.hdel(key, ...gone)
    return [...names].sort()
  }

  return {
    async start () {
      await renew()
      timer = setInterval(() => { renew().catch(() => {}) }, Math.ceil(aliveMs / 3))
      timer.unref()
    },
    async add (room, connectionId, name) {
      const key = roomKey(room)
      const field = `${instance}:${connectionId}`
      own.set(key, (own.get(key) ?? new Map()).set(field, name))
      await redis.hset(key, field, name)
      return members(room)
    },
    async remove (room, connectionId) {
      const key = roomKey(room)
      const field = `${instance}:${connectionId}`
      const fields = own.get(key)
      if (fields?.delete(field) === true && fields.size === 0) own.delete(key)
      await redis.hdel(key, field)
      return members(room)
    },
    members,
    async close () {
      clearInterval(timer)
      // Whatever this instance still has listed drops out at the next read, not in aliveMs.
      await redis.del(aliveKey(instance))
    }
  }
}

/**
 * One instance of the clustered chat.
 * @param {object} [options]
 * @param {string} [options.redisUrl] default: the REDIS_URL environment variable
 * @param {string} [options.namespace] the broker's namespace, also in the chat's keys (default 'realtime')
 * @param {number} [options.aliveMs] how long a stopped instance's members stay listed (default 15000)
 * @param {import('fastify').FastifyServerOptions['logger']} [options.logger]
 */
export async function build ({ redisUrl = process.env.REDIS_URL, namespace = 'realtime', aliveMs = 15000, logger = false } = {}) {
  if (redisUrl === undefined || redisUrl === '') {
    throw new Error('examples/cluster.js needs REDIS_URL, e.g. redis://127.0.0.1:6379 (scripts/redis-test-server.sh starts a throwaway Redis)')
  }
  const broker = redisBroker({ url: redisUrl, namespace })
  // The sessions' and presence's connection. No offline queue: while Redis is away a login fails
  // at once (503) instead of waiting in a queue.
  const redis = new Redis(redisUrl, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  redis.on('error', () => {}) // reconnects by itself; failures surface as 503s and handler errors
  const prefix = `chat:{${namespace}}`
  const presence = redisPresence(redis, prefix, aliveMs)
  const app = Fastify({ logger })
  // A broker passed in is the app's to close (app.close() leaves it open, so it could serve several
  // apps). Added before the chat: onClose hooks run in reverse, so the chat's last departures are
  // published before the broker and the store close.
  app.addHook('onClose', async () => {
    await presence.close().catch(() => {})
    await broker.close()
    redis.disconnect()
  })
  try {
    await redis.connect()
    await presence.start()
    await app.register(fastifySse, { broker })
    await app.register(fastifyWs, { broker })
    await app.register(browserClient)
    await app.register(chat, { sessions: redisSessions(redis, prefix), presence })
    await app.ready()
  } catch (err) {
    await app.close().catch(() => {})
    throw err
  }
  return app
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const host = process.env.HOST ?? '127.0.0.1'
  const port = Number(process.env.PORT ?? 3000)
  const app = await build({ logger: true })
  // app.close() ends this instance's streams and sockets (1001): clients reconnect to another one.
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      app.log.info(`${signal}: closing`)
      app.close().catch((err) => {
        app.log.error({ err }, 'cannot close cleanly')
        process.exitCode = 1
      })
    })
  }
  await app.listen({ host, port })
  app.log.info(`the chat at http://${host}:${port}/chat, sharing its rooms through Redis with every instance on the same REDIS_URL`)
}
