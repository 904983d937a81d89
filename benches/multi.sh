#!/usr/bin/env bash
# Three servers of one sale on one Redis + MySQL pair (durable ack mode, node
# ids leased by the servers themselves), and the headline flash crowd through
# all three, then through the first alone, interleaved: for each round a
# goods added through server 1 with seckill-cli, then
# `seckill-bench flash-crowd --addr ... --goods ID --mysql ...` (verified over
# every server and MySQL). Records the CPU time of all three servers
# (utime + stime) over each bench invocation.
#
#   benches/multi.sh TREE OUT_DIR [ROUNDS]   # FIRST=3: rounds numbered from 3
set -euo pipefail

TREE=$1 OUT=$2 ROUNDS=${3:-2}
BIN=$TREE/target/release
REDIS=redis://127.0.0.1:6379
DB=mysql://root@127.0.0.1:3306/seckill_ab_multi
TOKEN=multi-token
PORTS=(7741 7742 7743)
TICKS=$(getconf CLK_TCK)
mkdir -p "$OUT"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS seckill_ab_multi"
    redis-cli --scan --pattern 'seckill-ab-multi*' | xargs -r redis-cli del >/dev/null
}
trap cleanup EXIT

cpu_seconds() { # utime + stime of the servers, in seconds
    for pid in "${pids[@]}"; do cat "/proc/$pid/stat"; done |
        awk -v t="$TICKS" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.2f\n", s / t }'
}

for i in 0 1 2; do
    "$BIN/seckill-server" --listen "127.0.0.1:${PORTS[$i]}" --admin-token "$TOKEN" \
        --max-connections-per-ip 20000 --redis "$REDIS" --redis-prefix seckill-ab-multi: \
        --mysql "$DB" --ack durable >"$OUT/server-$i.out" 2>"$OUT/server-$i.log" &
    pids+=($!)
    for _ in $(seq 200); do
        grep -q listening "$OUT/server-$i.out" 2>/dev/null && break
        sleep 0.1
    done
done
grep -h 'node' "$OUT"/server-*.log | head -n 6 >&2 || true

ALL=127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]},127.0.0.1:${PORTS[2]}
ONE=127.0.0.1:${PORTS[0]}
FIRST=${FIRST:-1}
n=$(((FIRST - 1) * 2))
for r in $(seq "$FIRST" $((FIRST + ROUNDS - 1))); do
    for mode in three one; do
        n=$((n + 1))
        addr=$ALL
        [[ $mode == one ]] && addr=$ONE
        goods=$("$BIN/seckill-cli" --addr "$ONE" --token "$TOKEN" --json goods add \
            --name "multi $mode $r" --price 1 --stock 10000 --end 1h | jq -r '.id')
        echo "== $mode$r: goods $goods through $addr" >&2
        before=$(cpu_seconds)
        "$BIN/seckill-bench" flash-crowd --addr "$addr" --goods "$goods" -c 1000 --users 100000 \
            --attempts 1000000 --first-user $((n * 1000000000)) --mysql "$DB" --json \
            >"$OUT/multi-$mode$r.json"
        after=$(cpu_seconds)
        printf '%s\t%s\n' "$mode$r" "$(echo "$after - $before" | bc)" >>"$OUT/cpu.tsv"
    done
done
echo "results in $OUT" >&2
