// The routes the AsyncAPI document describes, recorded by the transports as Fastify registers them
// (from their `onRoute` hooks, which see the URL with its prefix, as @fastify/swagger does).
import type { AnyContract } from '../contract.js'

/** An `app.ws()` route. @internal */
export interface WsRouteEntry {
  readonly transport: 'ws'
  /** The URL pattern with its prefix; set when Fastify registers the route. */
  url: string
  readonly contract: AnyContract | undefined
  /** False for `authenticate: false`. */
  readonly authenticated: boolean
  /** The route's `topics` option, as given: `{ [nameOrPrefix]: true | { contract?, authorize? } }`. */
  readonly topics: Readonly<Record<string, unknown>> | undefined
  readonly maxPayload: number
  /** The route's `schema.querystring` and `schema.headers`, if any. */
  readonly querystring: unknown
  readonly headers: unknown
}

/** A route declared with the route option `sse`. @internal */
export interface SseRouteEntry {
  readonly transport: 'sse'
  readonly url: string
  readonly method: string
  readonly contract: AnyContract | undefined
  readonly querystring: unknown
}

/** A route of the document. @internal */
export type RouteEntry = WsRouteEntry | SseRouteEntry

/** The routes of one Fastify instance, in registration order. @internal */
export class RouteRegistry {
  readonly routes: RouteEntry[] = []

  add (route: RouteEntry): void {
    this.routes.push(route)
  }
}
