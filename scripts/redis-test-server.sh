#!/usr/bin/env bash
# A throwaway redis-server for the Redis tests: a free loopback port, no persistence, its own temp
# dir, never the machine's Redis on 6379.
#
#   scripts/redis-test-server.sh        start it, print the `REDIS_URL=... npm test` line, stop it on Ctrl-C
#   source scripts/redis-test-server.sh start it in the background (what .ci/run does): exports REDIS_URL,
#                                       REDIS_PORT, REDIS_SERVER_PID and REDIS_DIR, stops it on exit
#
# REDIS_SERVER_PID and REDIS_PORT are for fault tests: `kill -STOP`/`-CONT` the server, or stop it and
# start another on the same port (`redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no`).

redis_test_server_stop () {
  local pid="${REDIS_SERVER_PID:-}"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true # a server left paused by a fault test ignores TERM until continued
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [ -n "${REDIS_DIR:-}" ]; then rm -rf "$REDIS_DIR"; fi
}

redis_test_server_start () {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server)" >&2
    return 1
  fi
  REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fastify-realtime-redis.XXXXXX")"
  local attempt
  for attempt in 1 2 3; do
    # Port 0 asks the OS for a free port; another process could take it before Redis binds, hence the retries.
    REDIS_PORT="$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close() })")"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" &
    REDIS_SERVER_PID=$!
    for _ in $(seq 1 50); do
      kill -0 "$REDIS_SERVER_PID" 2>/dev/null || break
      if [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
        export REDIS_URL="redis://127.0.0.1:$REDIS_PORT" REDIS_PORT REDIS_SERVER_PID REDIS_DIR
        return 0
      fi
      sleep 0.1
    done
    echo "redis-server did not answer PING on port $REDIS_PORT (attempt $attempt):" >&2
    cat "$REDIS_DIR/redis.log" >&2 || true
    redis_test_server_stop
    REDIS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fastify-realtime-redis.XXXXXX")"
  done
  rm -rf "$REDIS_DIR"
  return 1
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: leave the server running for the caller's commands; stop it when the caller's shell exits.
  redis_test_server_start || exit 1
  trap redis_test_server_stop EXIT
  echo "redis-server $REDIS_SERVER_PID on $REDIS_URL"
else
  set -euo pipefail
  redis_test_server_start
  trap redis_test_server_stop EXIT
  trap 'exit 130' INT TERM
  echo "redis-server $REDIS_SERVER_PID listening on 127.0.0.1:$REDIS_PORT (no persistence). Run the tests with:"
  echo
  echo "  REDIS_URL=$REDIS_URL npm test"
  echo
  echo "Ctrl-C stops the server."
  wait "$REDIS_SERVER_PID"
fi
