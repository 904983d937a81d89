#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, exactly as they were made: each server
# configuration at 100 and 1000 connections, the redis-direct baseline in the
# same invocation (--compare), a sustained sale, and the headline run with its
# plot. JSON reports go to benches/results/.
#
#   benches/run.sh            # everything (about 16 minutes on 2 cores)
#   ATTEMPTS=100000 benches/run.sh   # a quicker pass
#
# Needs Redis at 127.0.0.1:6379 and MariaDB at 127.0.0.1:3306 (root, no
# password): scripts/services.sh sees to both. Uses its own database names
# and key prefixes and removes them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ATTEMPTS=${ATTEMPTS:-1000000}
USERS=${USERS:-100000}
STOCK=${STOCK:-10000}
SUSTAIN=${SUSTAIN:-20s}
OUT=benches/results
REDIS=redis://127.0.0.1:6379
MYSQL=mysql://root@127.0.0.1:3306
TOKEN=bench-token
PORT=7720
WORK=$(mktemp -d)

scripts/services.sh
cargo build --release -q -p seckill -p seckill-bench
mkdir -p "$OUT"

server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    for db in seckill_bench_durable seckill_bench_queued; do
        mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db" || true
    done
    redis-cli --scan --pattern 'seckill-bench*' | xargs -r redis-cli del >/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# start_server NAME FLAGS...: a fresh server for one configuration.
start_server() {
    local name=$1
    shift
    stop_server
    target/release/seckill-server --listen "127.0.0.1:$PORT" --admin-token "$TOKEN" \
        --max-connections-per-ip 20000 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    server_pid=$!
    for _ in $(seq 100); do
        grep -q listening "$WORK/$name.out" 2>/dev/null && return
        sleep 0.1
    done
    echo "server $name did not start:" >&2
    cat "$WORK/$name.log" >&2
    exit 1
}

bench() {
    target/release/seckill-bench "$@" --addr "127.0.0.1:$PORT" --token "$TOKEN" --json
}

declare -A CONFIGS=(
    [embedded]="--data $WORK/embedded.db"
    [durable]="--redis $REDIS --redis-prefix seckill-bench-durable: --mysql $MYSQL/seckill_bench_durable --ack durable"
    [queued]="--redis $REDIS --redis-prefix seckill-bench-queued: --mysql $MYSQL/seckill_bench_queued --ack queued"
)

for name in embedded durable queued; do
    # shellcheck disable=SC2086 # the flags are meant to split
    start_server "$name" ${CONFIGS[$name]}
    verify=()
    [[ $name != embedded ]] && verify=(--mysql "$MYSQL/seckill_bench_$name")
    for c in 100 1000; do
        echo "== flash-crowd $name, $c connections" >&2
        bench flash-crowd -c "$c" --users "$USERS" --attempts "$ATTEMPTS" --stock "$STOCK" \
            --first-user $((c * 1000000)) --compare --redis "$REDIS" "${verify[@]}" \
            >"$OUT/flash-crowd-$name-c$c.json"
    done
    # 1000 connections: enough orders in flight for group commit to fill
    # its batches.
    echo "== sustained $name" >&2
    bench sustained -c 1000 --duration "$SUSTAIN" >"$OUT/sustained-$name.json"
    # After "ok": a fifth of the orders cancelled, a fifth never paid, the
    # rest paid (a tenth of them at the end of the window, racing the
    # expiry sweep); verified, then the returned units sold again.
    echo "== lifecycle $name" >&2
    bench lifecycle -c 100 --users 20000 --stock 5000 --pay-window 5s \
        --first-user 7000000000 "${verify[@]}" >"$OUT/lifecycle-$name.json"
done

# A normal client's latency through each hostile-client attack, and the
# server's memory (10,000 idle connections among them), on the embedded store.
start_server attack --data "$WORK/attack.db"
echo "== attack" >&2
bench attack --server-pid "$server_pid" --phase 5s >"$OUT/attack.json"

# The headline: durable mode, 1000 connections, with the plot.
# shellcheck disable=SC2086
start_server headline ${CONFIGS[durable]}
echo "== headline" >&2
bench flash-crowd -c 1000 --users "$USERS" --attempts "$ATTEMPTS" --stock "$STOCK" \
    --first-user 9000000000 --compare --redis "$REDIS" --mysql "$MYSQL/seckill_bench_durable" \
    --plot "$OUT/headline.svg" >"$OUT/headline.json"
stop_server
echo "results in $OUT" >&2
