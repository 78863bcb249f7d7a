// Checks of numeric options, shared by the plugins and the brokers; each fails with FRT_ERR_INVALID_OPTION.
import { FRT_ERR_INVALID_OPTION } from './errors.js'

/** A positive integer option, or `fallback` when it is absent. @internal */
export function positiveInteger (name: string, value: unknown, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new FRT_ERR_INVALID_OPTION(name, `expected a positive integer, got ${String(value)}`)
  }
  return value
}

/** An integer option of at least `min`, or undefined when it is absent. @internal */
export function optionalInteger (name: string, value: unknown, min: number): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new FRT_ERR_INVALID_OPTION(name, `expected an integer >= ${min}, got ${String(value)}`)
  }
  return value
}
