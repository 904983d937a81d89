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
#   cluster-queued    --redis-cluster ... --ack queued (one goods: one shard)
#   cluster-wait1     the same with --redis-wait 1 (WAIT for the replica)
#   cluster-3goods    the same as cluster-queued, three benches at once on
#                     three goods of their own (three shards when their slots
#                     fall on three primaries; the goods' primaries are shown)
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
"$here/scripts/cluster/redis.sh" up

server=
cleanup() {
    [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS seckill_bench_cluster"
}
trap cleanup EXIT

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

run() { # NAME ROUND SERVER_FLAGS...
    local name=$1 round=$2
    shift 2
    local tag=$name-$round
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS seckill_bench_cluster"
    "$BIN/seckill-server" --listen "127.0.0.1:$PORT" --admin-token "$TOKEN" \
        --redis-prefix "seckill-bench-cluster-$tag:" --mysql "$DB" --ack queued "$@" \
        >"$OUT/$tag.server.out" 2>"$OUT/$tag.server.log" &
    server=$!
    until "$BIN/seckill-bench" --addr "127.0.0.1:$PORT" browse --duration 100ms >/dev/null 2>&1; do
        sleep 0.2
    done
    local benches=1
    [[ $name == cluster-3goods ]] && benches=3
    local redis
    redis=$(redis_pids "$name" | tr '\n' ' ')
    local s0 r0 b
    s0=$(cpu "$server")
    # shellcheck disable=SC2086
    r0=$(cpu $redis)
    for ((b = 0; b < benches; b++)); do
        "$BIN/seckill-bench" --addr "127.0.0.1:$PORT" --token "$TOKEN" sustained \
            -c 16 -d 64 --duration "$DURATION" --json >"$OUT/$tag.bench$b.json" 2>"$OUT/$tag.bench$b.log" &
    done
    wait $(jobs -p | grep -v "^$server$") 2>/dev/null || true
    local s1 r1
    s1=$(cpu "$server")
    # shellcheck disable=SC2086
    r1=$(cpu $redis)
    kill "$server" && wait "$server" 2>/dev/null || true
    server=
    python3 - "$OUT" "$tag" "$benches" "$s0" "$s1" "$r0" "$r1" <<'PY'
import json, sys
out, tag, benches, s0, s1, r0, r1 = sys.argv[1:]
orders = 0
rate = 0.0
for b in range(int(benches)):
    report = json.load(open(f"{out}/{tag}.bench{b}.json"))
    orders += report["outcomes"]["ok"]
    rate += report["ok_per_s"]
server_us = (float(s1) - float(s0)) * 1e6 / max(orders, 1)
redis_us = (float(r1) - float(r0)) * 1e6 / max(orders, 1)
line = f"{tag:18} orders/s {rate:10.0f}  orders {orders:8}  server CPU µs/order {server_us:5.2f}  redis CPU µs/order {redis_us:5.2f}"
print(line)
open(f"{out}/summary.txt", "a").write(line + "\n")
PY
}

for ((round = 1; round <= ROUNDS; round++)); do
    run one-queued "$round" --redis redis://127.0.0.1:6379
    run cluster-queued "$round" --redis-cluster "$SEEDS"
    run cluster-wait1 "$round" --redis-cluster "$SEEDS" --redis-wait 1
    run cluster-3goods "$round" --redis-cluster "$SEEDS"
done
