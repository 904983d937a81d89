#!/usr/bin/env bash
# A/B of two builds of the server in durable mode (Redis + MySQL), interleaved
# A B A B ..., all driven by one seckill-bench binary: per run, a fresh server
# on a fresh database and Redis prefix, the headline flash crowd (--compare),
# then a sustained sale. Also records the server's CPU time (utime + stime
# from /proc/PID/stat) over each bench invocation.
#
#   benches/ab.sh A_TREE B_TREE OUT_DIR [ROUNDS]   # FIRST=4: rounds numbered from 4
#
# A_TREE and B_TREE are checkouts with target/release/seckill-server built;
# the bench is B_TREE's. Reports: OUT_DIR/{fc,sus}-{A,B}{round}.json and
# OUT_DIR/cpu.tsv (run, scenario, server CPU seconds). Drops every database
# seckill_ab_* and Redis key seckill-ab* at the end.
set -euo pipefail

A_TREE=$1 B_TREE=$2 OUT=$3 ROUNDS=${4:-2}
BENCH=$B_TREE/target/release/seckill-bench
REDIS=redis://127.0.0.1:6379
MYSQL=mysql://root@127.0.0.1:3306
TOKEN=ab-token
PORT=${PORT:-7731}
SUSTAIN=${SUSTAIN:-20s}
TICKS=$(getconf CLK_TCK)
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
    mariadb -h 127.0.0.1 -u root -N -e "SHOW DATABASES LIKE 'seckill_ab_%'" |
        while read -r db; do mariadb -h 127.0.0.1 -u root -e "DROP DATABASE \`$db\`"; done
    redis-cli --scan --pattern 'seckill-ab*' | xargs -r redis-cli del >/dev/null
}
trap cleanup EXIT

cpu_seconds() { # utime + stime of a process, in seconds
    awk -v t="$TICKS" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"
}

start_server() { # TREE NAME
    local tree=$1 name=$2
    stop_server
    "$tree/target/release/seckill-server" --listen "127.0.0.1:$PORT" --admin-token "$TOKEN" \
        --max-connections-per-ip 20000 --redis "$REDIS" --redis-prefix "seckill-ab-$name:" \
        --mysql "$MYSQL/seckill_ab_$name" --ack durable >"$OUT/server-$name.out" 2>"$OUT/server-$name.log" &
    server_pid=$!
    for _ in $(seq 200); do
        grep -q listening "$OUT/server-$name.out" 2>/dev/null && return
        sleep 0.1
    done
    echo "server $name did not start" >&2
    cat "$OUT/server-$name.log" >&2
    exit 1
}

run() { # SCENARIO NAME ARGS...: one bench invocation, server CPU around it
    local scenario=$1 name=$2
    shift 2
    local before after
    before=$(cpu_seconds "$server_pid")
    "$BENCH" "$@" --addr "127.0.0.1:$PORT" --token "$TOKEN" --json >"$OUT/$scenario-$name.json"
    after=$(cpu_seconds "$server_pid")
    printf '%s\t%s\t%s\n' "$name" "$scenario" "$(echo "$after - $before" | bc)" >>"$OUT/cpu.tsv"
}

FIRST=${FIRST:-1}
for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
    for side in A B; do
        name=$side$r
        tree=$A_TREE
        [[ $side == B ]] && tree=$B_TREE
        echo "== $name ($tree)" >&2
        start_server "$tree" "$name"
        # The headline flash crowd of BENCHMARKS.md.
        run fc "$name" flash-crowd -c 1000 --users 100000 --attempts 1000000 --stock 10000 \
            --first-user 9000000000 --compare --redis "$REDIS" --redis-prefix "seckill-ab-direct-$name:" \
            --mysql "$MYSQL/seckill_ab_$name"
        # Sustained selling, as in benches/run.sh.
        run sus "$name" sustained -c 1000 --duration "$SUSTAIN"
        stop_server
    done
done
echo "results in $OUT" >&2
