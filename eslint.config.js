import neostandard from 'neostandard'

// Folder boundaries (STYLE.md, "The house"): the wire code is pure and isomorphic, the hub knows no
// transport, brokers know neither.
const runtimes = ['node:*', 'fastify', 'fastify/*', 'fastify-plugin', 'ws', '@fastify/*', 'secure-json-parse', '@sinclair/*', 'ioredis']

function restrict (files, patterns, message) {
  return {
    files,
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: patterns, message }] }]
    }
  }
}

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'screenshots/**', 'bench/results/**'] }),
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off'
    }
  },
  restrict(['lib/protocol/**'], [...runtimes, '../*'],
    'lib/protocol/ is the isomorphic wire, shared with the client: it imports nothing from Node, Fastify, ws or the rest of the library.'),
  {
    files: ['lib/protocol/**'],
    rules: {
      'no-restricted-globals': ['error',
        { name: 'Buffer', message: 'lib/protocol/ runs in browsers: use Uint8Array and TextEncoder.' },
        { name: 'process', message: 'lib/protocol/ runs in browsers.' }]
    }
  },
  restrict(['lib/hub/**'], ['../sse/*', '../ws/*', '../transport/*', 'ws', '@fastify/websocket', 'node:net', 'node:http', 'node:http2'],
    'The hub knows no transport: transports depend on the hub, never the other way.'),
  restrict(['lib/brokers/**'], ['**/hub/*', '**/sse/*', '**/ws/*', '**/transport/*', 'fastify', 'ws'],
    'Brokers know neither the hub nor the transports.'),
  {
    files: ['lib/client/**'],
    rules: {
      // The client ships alone to browsers: the wire facts of ../protocol/ at run time, TypeBox for types only.
      '@typescript-eslint/no-restricted-imports': ['error', {
        patterns: [
          {
            regex: '^(?!\\./[^/]+$|\\.\\./protocol/[^/]+$|@sinclair/typebox$)',
            message: 'lib/client/ imports nothing but ../protocol/: it runs in browsers, with no dependency.'
          },
          { regex: '^@sinclair/typebox$', allowTypeImports: true, message: 'lib/client/ takes TypeBox types only: import type.' }
        ]
      }],
      'no-restricted-globals': ['error',
        { name: 'Buffer', message: 'lib/client/ runs in browsers: use Uint8Array and TextEncoder.' },
        { name: 'process', message: 'lib/client/ runs in browsers.' }]
    }
  },
  restrict(['lib/transport/**'], ['../hub/*', '../sse/*', '../ws/*', '../brokers/*'],
    'lib/transport/ is what both transports do to sockets; it depends on neither.')
]
