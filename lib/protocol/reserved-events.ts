// The data of the SSE events the library sends of its own (their names are ReservedEvent, in ./names.ts).

/** The data of `realtime.reset`: the topics of the `subscribe()` call that could not resume. */
export interface ResetEventData {
  topics: string[]
}

/** The data of a `realtime.reset` event. */
export function resetEventData (topics: readonly string[]): string {
  return JSON.stringify({ topics })
}

/**
 * The data of `realtime.position`, whose point is its `id:` field. A browser takes the id of a block
 * without data too (WHATWG HTML, "dispatch the event", step 1), but the `eventsource` package only
 * takes the ids of events it dispatches, which need data.
 */
export const POSITION_EVENT_DATA = '{}'
