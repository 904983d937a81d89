#!/usr/bin/env bash
# A local Redis Cluster for the tests and for trying seckill on a cluster:
# 3 primaries and 3 replicas on 127.0.0.1:30001-30006 (cluster bus on
# 40001-40006), nothing kept on disk, node-timeout 2 s (a failover takes
# about 4 s; a replica may take over however long it was cut off from its
# primary: on a loaded 2-core machine the default validity check left a
# shard without a primary).
#
#   scripts/cluster/redis.sh up       start and form it (a no-op when it is up)
#   scripts/cluster/redis.sh down     stop the nodes it started, wipe their state
#   scripts/cluster/redis.sh status   every node's role and cluster_state
#   scripts/cluster/redis.sh start N  start node N (30001-30006) again after a
#                                     kill: it rejoins as a replica
#
# State lives under $SECKILL_CLUSTER_DIR/redis (default /tmp/seckill-cluster),
# one directory a node with its nodes.conf, log and pidfile. Only processes
# whose pidfiles are there are ever stopped. Safe to call concurrently (the
# test binaries do): one caller at a time, under a lock.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PORTS=(30001 30002 30003 30004 30005 30006)
readonly DIR=${SECKILL_CLUSTER_DIR:-/tmp/seckill-cluster}/redis
readonly READY_WAIT=30 # seconds
# The cluster bus ports (each node's port + 10000): in the kernel's range of
# local ports for outgoing connections, so reserved (cluster/ports.sh).
readonly BUS_PORTS=40001-40006

say() { echo "cluster/redis: $*" >&2; }
die() {
    echo "cluster/redis: error: $*" >&2
    exit 1
}

# shellcheck source=scripts/find_bin.sh
source "$(dirname "$0")/../find_bin.sh"
# shellcheck source=scripts/cluster/ports.sh
source "$(dirname "$0")/ports.sh"

REDIS_SERVER=$(find_bin redis-server) || die "redis-server not found (scripts/services.sh installs it)"
REDIS_CLI=$(find_bin redis-cli) || die "redis-cli not found (scripts/services.sh installs it)"

cli() { "$REDIS_CLI" -h "$HOST" -p "$1" "${@:2}"; }

# Whether the node on port $1 is one of ours and alive.
running() {
    local pidfile=$DIR/$1/redis.pid
    [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

cluster_ok() { [[ $(cli "$1" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:') == cluster_state:ok ]]; }

# Every primary's replica attached and synced. Not part of `healthy`: a
# replica resyncing (after a failover test restarted a node, or a link that
# dropped under load) is no reason for `up` to form the cluster again.
replicas_online() {
    local port info
    for port in "${PORTS[@]}"; do
        info=$(cli "$port" info replication 2>/dev/null | tr -d '\r')
        if grep -qx 'role:master' <<<"$info" && ! grep -q '^slave0:.*state=online' <<<"$info"; then
            return 1
        fi
    done
}

# Up when every node is ours, alive, and says cluster_state:ok, and the
# cluster knows six nodes, three of them primaries serving slots.
healthy() {
    local port
    for port in "${PORTS[@]}"; do
        running "$port" && cluster_ok "$port" || return 1
    done
    local info
    info=$(cli "${PORTS[0]}" cluster info 2>/dev/null | tr -d '\r')
    grep -qx 'cluster_size:3' <<<"$info" && grep -qx 'cluster_known_nodes:6' <<<"$info"
}

start_node() {
    local port=$1
    mkdir -p "$DIR/$port"
    "$REDIS_SERVER" --port "$port" --bind "$HOST" \
        --cluster-enabled yes --cluster-config-file "$DIR/$port/nodes.conf" \
        --cluster-node-timeout 2000 --cluster-replica-validity-factor 0 --save '' --appendonly no \
        --dir "$DIR/$port" --pidfile "$DIR/$port/redis.pid" \
        --logfile "$DIR/$port/redis.log" --daemonize yes 9>&-
    # (9>&-: the daemon must not inherit the lock, or hold it for ever.)
}

wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

stop_all() {
    local port pid
    for port in "${PORTS[@]}"; do
        if running "$port"; then
            pid=$(cat "$DIR/$port/redis.pid")
            kill -9 "$pid" 2>/dev/null || true
        fi
    done
    # A stale nodes.conf makes `--cluster create` refuse the node.
    rm -rf "$DIR"
}

up() {
    if healthy; then
        # Tests that WAIT for a replica need it synced; waited for, bounded,
        # never a reason to form the cluster again.
        wait_for "$READY_WAIT" replicas_online || true
        return 0
    fi
    reserve_ports "$BUS_PORTS"
    say "forming 3 primaries + 3 replicas on $HOST:${PORTS[0]}-${PORTS[5]}"
    stop_all
    local port
    for port in "${PORTS[@]}"; do
        start_node "$port"
    done
    for port in "${PORTS[@]}"; do
        wait_for 10 cli "$port" ping >/dev/null 2>&1 || die "node $port did not start (see $DIR/$port/redis.log)"
    done
    local nodes=()
    for port in "${PORTS[@]}"; do nodes+=("$HOST:$port"); done
    "$REDIS_CLI" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
        die "cluster create failed (see $DIR/create.log)"
    wait_for "$READY_WAIT" healthy || die "cluster not ok on every node after ${READY_WAIT}s"
    # A test that WAITs for a replica failed when it ran first on a freshly
    # formed cluster: the replicas were still syncing.
    wait_for "$READY_WAIT" replicas_online || die "replicas not online after ${READY_WAIT}s"
    say "up"
}

status() {
    local port
    for port in "${PORTS[@]}"; do
        if running "$port"; then
            local role state
            role=$(cli "$port" role 2>/dev/null | head -1)
            state=$(cli "$port" cluster info 2>/dev/null | tr -d '\r' | grep '^cluster_state:' || true)
            echo "$HOST:$port ${role:-?} ${state:-no answer}"
        else
            echo "$HOST:$port down"
        fi
    done
    healthy
}

# The lock is held for the whole command: two test binaries calling `up` at
# once would otherwise both form a cluster on the same ports.
mkdir -p "$(dirname "$DIR")"
exec 9>"$(dirname "$DIR")/redis.lock"
flock 9

case ${1:-} in
up) up ;;
reserve) reserve_ports "$BUS_PORTS" ;;
down) stop_all ;;
status) status ;;
start)
    [[ " ${PORTS[*]} " == *" ${2:-} "* ]] || die "start needs a port of ${PORTS[*]}"
    running "$2" || start_node "$2"
    ;;
*) die "usage: $0 up|down|status|reserve|start PORT" ;;
esac
