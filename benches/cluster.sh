#!/usr/bin/env bash
# Stock on one Redis against stock on the local Redis Cluster
# (scripts/cluster/redis.sh), side by side in one run: for each configuration
# a fresh server and `seckill-bench sustained` (16 connections x 64
# pipelined, an app-server fleet) for DURATION, recording the orders/s the
# bench reports and the CPU time (utime + stime from /proc) of the server and
# of the Redis process(es) holding the stock over the bench.
#
#   benches/cluster.sh OUT_DIR [DURATION] [ROUNDS]
#
# Configurations, interleaved round by round:
#   one-queued        --redis 127.0.0.1:6379 --ack queued
#   cluster-k1        --redis-cluster ... --ack queued (one goods: one shard)
#   cluster-k2        the same, the goods split over 2 buckets
#   cluster-k4        the same, the goods split over 4 buckets
#   cluster-wait1     cluster-k1 with --redis-wait 1 (WAIT for the replica)
#   cluster-3goods    cluster-k1, three benches at once on three goods of
#                     their own (three shards when their slots fall on three
#                     primaries)
# Each line of summary.txt also has the CPU of each Redis node over the run
# (the cluster's six, primaries and replicas), to show where the work went.
set -euo pipefail

OUT=$1 DURATION=${2:-10s} ROUNDS=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=$here/target/release
DB=mysql://root@127.0.0.1:3306/seckill_bench_cluster
TOKEN=cluster-token
PORT=7751
TICKS=$(getconf CLK_TCK)
SEEDS=127.0.0.1:30001,127.0.0.1:30002,127.0.0.1:30003
mkdir -p "$OUT"
die() {
    echo "benches/cluster.sh: $*" >&2
    exit 1
}
"$here/scripts/cluster/redis.sh" up

server=
cleanup() {
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS seckill_bench_cluster"
}
trap cleanup EXIT

# Deletes a run's keys (the queued orders' streams hold every order of the
# run) from the single Redis and from every primary of the cluster, one key
# a DEL (a cluster node refuses keys of several slots in one).
forget_keys() { # PREFIX
    local port role
    for port in 6379 30001 30002 30003 30004 30005 30006; do
        role=$(redis-cli -p "$port" role 2>/dev/null | head -1) || continue
        [[ $role == master ]] || continue
        redis-cli -p "$port" --scan --pattern "$1*" | xargs -r -n 1 redis-cli -p "$port" del >/dev/null
    done
}

# utime + stime in seconds of the processes whose pids follow.
cpu() {
    for pid in "$@"; do cat "/proc/$pid/stat"; done |
        awk -v t="$TICKS" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.3f\n", s / t }'
}
redis_pids() { # every redis-server of the stock: the one, or all six nodes
    if [[ $1 == one-* ]]; then
        pgrep -f 'redis-server .*:6379' | head -1
    else
        cat "${SECKILL_CLUSTER_DIR:-/tmp/seckill-cluster}"/redis/*/redis.pid
    fi
}
each_cpu() { # the CPU seconds of each pid, space-separated
    for pid in "$@"; do cpu "$pid"; done | tr '\n' ' '
}

run() { # NAME ROUND BUCKETS SERVER_FLAGS...
    local name=$1 round=$2 buckets=$3
    shift 3
    local tag=$name-$round
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS seckill_bench_cluster"
    "$BIN/seckill-server" --listen "127.0.0.1:$PORT" --admin-token "$TOKEN" \
        --redis-prefix "seckill-bench-cluster-$tag:" --mysql "$DB" --ack queued "$@" \
        >"$OUT/$tag.server.out" 2>"$OUT/$tag.server.log" &
    server=$!
    # Listening once its stores are up. (A `browse` probe, as first
    # written, never succeeds on a server with no goods and no token.)
    until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
        kill -0 "$server" 2>/dev/null || die "the server exited; see $OUT/$tag.server.log"
        sleep 0.2
    done
    local benches=1
    [[ $name == cluster-3goods ]] && benches=3
    local redis
    redis=$(redis_pids "$name" | tr '\n' ' ')
    local s0 r0 b n0
    s0=$(cpu "$server")
    # shellcheck disable=SC2086
    r0=$(cpu $redis)
    # shellcheck disable=SC2086
    n0=$(each_cpu $redis)
    local pids=()
    for ((b = 0; b < benches; b++)); do
        "$BIN/seckill-bench" --addr "127.0.0.1:$PORT" --token "$TOKEN" --buckets "$buckets" \
            sustained -c 16 -d 64 --duration "$DURATION" --json >"$OUT/$tag.bench$b.json" 2>"$OUT/$tag.bench$b.log" &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    local s1 r1 n1
    s1=$(cpu "$server")
    # shellcheck disable=SC2086
    r1=$(cpu $redis)
    # shellcheck disable=SC2086
    n1=$(each_cpu $redis)
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
    forget_keys "seckill-bench-cluster-$tag:"
    python3 - "$OUT" "$tag" "$benches" "$s0" "$s1" "$r0" "$r1" "$n0" "$n1" <<'PY'
import json, sys
out, tag, benches, s0, s1, r0, r1, n0, n1 = sys.argv[1:]
orders = 0
rate = 0.0
for b in range(int(benches)):
    report = json.load(open(f"{out}/{tag}.bench{b}.json"))
    orders += report["outcomes"]["ok"]
    rate += report["ok_per_s"]
server_us = (float(s1) - float(s0)) * 1e6 / max(orders, 1)
redis_us = (float(r1) - float(r0)) * 1e6 / max(orders, 1)
nodes = [b - a for a, b in zip(map(float, n0.split()), map(float, n1.split()))]
per_node = " ".join(f"{n * 1e6 / max(orders, 1):5.2f}" for n in nodes)
line = f"{tag:18} orders/s {rate:10.0f}  orders {orders:8}  server CPU µs/order {server_us:5.2f}  redis CPU µs/order {redis_us:5.2f}  per node: {per_node}"
print(line)
open(f"{out}/summary.txt", "a").write(line + "\n")
PY
}

for ((round = 1; round <= ROUNDS; round++)); do
    run one-queued "$round" 1 --redis redis://127.0.0.1:6379
    run cluster-k1 "$round" 1 --redis-cluster "$SEEDS"
    run cluster-k2 "$round" 2 --redis-cluster "$SEEDS"
    run cluster-k4 "$round" 4 --redis-cluster "$SEEDS"
    run cluster-wait1 "$round" 1 --redis-cluster "$SEEDS" --redis-wait 1
    run cluster-3goods "$round" 1 --redis-cluster "$SEEDS"
done
