// The broker contract (test/broker-contract.ts) against memoryBroker: one process, exact trimming.
import t from 'tap'
import { memoryBroker } from '../../lib/brokers/memory.js'
import { brokerContract } from '../helpers/broker-contract.js'

brokerContract(t, 'memoryBroker', (options) => memoryBroker(options))
