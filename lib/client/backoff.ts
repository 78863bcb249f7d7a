import type { BackoffOptions } from './types.js'

/** A connection open this long counts as a success: the attempt count starts again. */
export const STABLE_MS = 5000

/** Exponential backoff with full jitter: a random delay between 0 and the attempt's bound. */
export class Backoff {
  attempt = 0
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly factor: number

  constructor ({ initialMs = 500, maxMs = 15000, factor = 2 }: BackoffOptions) {
    this.initialMs = initialMs
    this.maxMs = maxMs
    this.factor = factor
  }

  /** The next delay, in ms. */
  next (): number {
    return Math.random() * Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt++)
  }
}
