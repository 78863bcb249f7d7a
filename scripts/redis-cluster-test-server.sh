#!/usr/bin/env bash
# A throwaway Redis Cluster for the Cluster tests: 3 masters and 3 replicas (Debian's redis-server,
# `redis-cli --cluster create ... --cluster-replicas 1`), each node on a free loopback port with its
# cluster bus on another, no persistence, all in one temp dir; never the machine's Redis.
#
#   scripts/redis-cluster-test-server.sh        start it, print the `REDIS_CLUSTER_NODES=... npm test` line, stop it on Ctrl-C
#   source scripts/redis-cluster-test-server.sh start it in the background (what .ci/run does): exports
#                                               REDIS_CLUSTER_NODES (host:port,host:port,...),
#                                               REDIS_CLUSTER_PIDS and REDIS_CLUSTER_DIR; stops every node on exit
#
# Sourcing it sets an EXIT trap, replacing the caller's: a caller that sources several such scripts
# (.ci/run) sets one trap afterwards that calls every stop function.

redis_cluster_test_server_stop () {
  local pid
  for pid in ${REDIS_CLUSTER_PIDS:-}; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -CONT "$pid" 2>/dev/null || true # a node left paused by a test ignores TERM until continued
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in ${REDIS_CLUSTER_PIDS:-}; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  REDIS_CLUSTER_PIDS=""
  if [ -n "${REDIS_CLUSTER_DIR:-}" ]; then rm -rf "$REDIS_CLUSTER_DIR"; fi
}

# Prints `count` distinct loopback ports that are free right now.
redis_cluster_free_ports () {
  node -e "
    const net = require('node:net')
    const servers = Array.from({ length: Number(process.argv[1]) }, () => net.createServer())
    Promise.all(servers.map((server) => new Promise((resolve) => server.listen(0, '127.0.0.1', resolve)))).then(() => {
      console.log(servers.map((server) => server.address().port).join(' '))
      for (const server of servers) server.close()
    })
  " "$1"
}

# True when the node on `port` is a master with one replica online, or a replica whose link is up.
redis_cluster_node_synced () {
  local info
  info="$(redis-cli -p "$1" info replication 2>/dev/null | tr -d '\r')"
  case "$info" in
    *role:master*) echo "$info" | grep -q '^slave0:.*state=online' ;;
    *) echo "$info" | grep -q '^master_link_status:up$' ;;
  esac
}

redis_cluster_test_server_try () {
  local ports bus port i nodes=() pid state
  # Each node needs a client port and a cluster bus port (by default port + 10000, which may be
  # taken or out of range): both are picked here. Another process could take one before Redis
  # binds it, hence the retries of the caller.
  read -r -a ports <<< "$(redis_cluster_free_ports 12)"
  REDIS_CLUSTER_PIDS=""
  for i in 0 1 2 3 4 5; do
    port="${ports[$i]}"
    bus="${ports[$((i + 6))]}"
    mkdir -p "$REDIS_CLUSTER_DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-port "$bus" \
      --cluster-config-file "$REDIS_CLUSTER_DIR/$port/nodes.conf" --cluster-node-timeout 5000 \
      --save '' --appendonly no --daemonize no --dir "$REDIS_CLUSTER_DIR/$port" \
      --logfile "$REDIS_CLUSTER_DIR/$port/redis.log" &
    REDIS_CLUSTER_PIDS="$REDIS_CLUSTER_PIDS $!"
    nodes+=("127.0.0.1:$port")
  done
  for i in 0 1 2 3 4 5; do
    port="${ports[$i]}"
    for _ in $(seq 1 50); do
      [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] || { echo "redis-server on port $port did not answer PING" >&2; return 1; }
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$REDIS_CLUSTER_DIR/create.log" 2>&1 ||
    { cat "$REDIS_CLUSTER_DIR/create.log" >&2; return 1; }
  # Every node must agree that every slot is served, and every replica must be in sync, before a
  # test can rely on a failover.
  for i in 0 1 2 3 4 5; do
    port="${ports[$i]}"
    for _ in $(seq 1 200); do
      state="$(redis-cli -p "$port" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:')"
      [ "$state" = cluster_state:ok ] && break
      sleep 0.1
    done
    [ "$state" = cluster_state:ok ] || { echo "node $port never reported cluster_state:ok" >&2; return 1; }
  done
  for i in 0 1 2 3 4 5; do
    port="${ports[$i]}"
    for _ in $(seq 1 200); do
      redis_cluster_node_synced "$port" && continue 2
      sleep 0.1
    done
    echo "node $port: replication never came up" >&2
    return 1
  done
  REDIS_CLUSTER_NODES="$(IFS=,; echo "${nodes[*]}")"
  export REDIS_CLUSTER_NODES REDIS_CLUSTER_PIDS REDIS_CLUSTER_DIR
}

redis_cluster_test_server_start () {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "redis-server or redis-cli not found: install them (Debian/Ubuntu: apt-get install redis-server)" >&2
    return 1
  fi
  local attempt
  for attempt in 1 2 3; do
    REDIS_CLUSTER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/fastify-realtime-cluster.XXXXXX")"
    if redis_cluster_test_server_try; then return 0; fi
    echo "the Redis Cluster did not come up (attempt $attempt); node logs:" >&2
    tail -n 5 "$REDIS_CLUSTER_DIR"/*/redis.log >&2 || true
    redis_cluster_test_server_stop
  done
  return 1
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: leave the cluster running for the caller's commands; stop it when the caller's shell exits.
  redis_cluster_test_server_start || exit 1
  trap redis_cluster_test_server_stop EXIT
  echo "Redis Cluster (pids$REDIS_CLUSTER_PIDS) on $REDIS_CLUSTER_NODES"
else
  set -euo pipefail
  redis_cluster_test_server_start
  trap redis_cluster_test_server_stop EXIT
  trap 'exit 130' INT TERM
  echo "Redis Cluster of 3 masters and 3 replicas on $REDIS_CLUSTER_NODES (no persistence). Run the tests with:"
  echo
  echo "  REDIS_CLUSTER_NODES=$REDIS_CLUSTER_NODES npm test"
  echo
  echo "Ctrl-C stops every node."
  # shellcheck disable=SC2086
  while true; do
    for pid in $REDIS_CLUSTER_PIDS; do kill -0 "$pid" 2>/dev/null || { echo "node $pid exited" >&2; exit 1; }; done
    sleep 1
  done
fi
