/** Listeners by name. */
export type Listeners<F> = Map<string, Set<F>>

/** Adds a listener; returns the function that removes it. */
export function listen<F> (listeners: Listeners<F>, name: string, listener: F): () => void {
  let set = listeners.get(name)
  if (set === undefined) listeners.set(name, set = new Set())
  set.add(listener)
  return () => { set.delete(listener) }
}

/**
 * Calls each listener. One that throws does not stop the others, nor the client: its error is
 * rethrown on its own, as an `EventTarget` reports a listener's error.
 */
export function emit<A extends unknown[]> (set: Set<(...args: A) => void> | undefined, ...args: A): void {
  if (set === undefined) return
  for (const listener of [...set]) {
    try {
      listener(...args)
    } catch (err) {
      queueMicrotask(() => { throw err })
    }
  }
}
