// @ts-check
// The fastify-realtime the servers load: this tree's build, or another checkout's when the driver
// sets BENCH_REALTIME (`npm run bench -- --baseline=<dir>`), so two versions run in the same session.

/** @type {typeof import('fastify-realtime')} */
const library = await import(process.env.BENCH_REALTIME ?? 'fastify-realtime')

export const { defineContract, fastifySse, fastifyWs } = library
