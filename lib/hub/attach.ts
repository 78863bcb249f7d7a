import type { FastifyInstance } from 'fastify'
import { FRT_ERR_BROKER_CONFLICT, FRT_ERR_INVALID_OPTION } from '../errors.js'
import { isBroker } from '../brokers/broker.js'
import { Hub } from './hub.js'
import { memoryBroker } from '../brokers/memory.js'

/**
 * Returns the instance's hub, creating and decorating `fastify.realtime` on first use.
 * Whichever plugin is registered first creates it; a second, different broker is a registration error.
 * @internal
 */
export function attachHub (fastify: FastifyInstance, broker: unknown): Hub {
  if (broker !== undefined && !isBroker(broker)) {
    throw new FRT_ERR_INVALID_OPTION('broker', 'expected a broker such as memoryBroker() or redisBroker()')
  }
  if (fastify.hasDecorator('realtime')) {
    const hub = (fastify as unknown as { realtime: unknown }).realtime
    if (!(hub instanceof Hub) || (broker !== undefined && broker !== hub.broker)) throw new FRT_ERR_BROKER_CONFLICT()
    return hub
  }
  const hub = new Hub(broker ?? memoryBroker(), broker === undefined, fastify.log)
  fastify.decorate('realtime', hub)
  fastify.addHook('onReady', async () => { hub.ready = true })
  fastify.addHook('onClose', () => hub.close())
  return hub
}
