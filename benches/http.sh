#!/usr/bin/env bash
# What the HTTP gateway costs per BUY: the same server (embedded store),
# first bought from through seckill-web with wrk (HTTP/1.1 keep-alive, one
# JSON POST per BUY), then straight over the binary protocol with
# seckill-bench's sustained scenario, at the same number of connections.
# For each, the CPU time the server and the gateway used (utime + stime
# from /proc/PID/stat) divided by the BUYs answered.
#
#   benches/http.sh [DURATION_S] [CONNECTIONS]     (defaults 20 and 64)
#
# Needs the release builds (cargo build --release -p seckill -p seckill-web
# -p seckill-bench -p seckill-client) and wrk (apt-get install wrk). Every
# process runs on this machine, on loopback, and shares its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-20}
conns=${2:-64}
bin=target/release
token=http-bench-token
tmp=$(mktemp -d)
server_port=17791
web_port=18091
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

for b in seckill-server seckill-web seckill-bench seckill-cli; do
    [[ -x $bin/$b ]] || { echo "http.sh: no $bin/$b: build the release first" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "http.sh: no wrk: apt-get install wrk" >&2; exit 1; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "http.sh: nothing listens on $1" >&2
    exit 1
}

# CPU seconds (utime + stime) a process has used so far.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

"$bin/seckill-server" --listen "127.0.0.1:$server_port" --admin-token "$token" --data "$tmp/bench.db" \
    --max-connections-per-ip 20000 >"$tmp/server.log" 2>&1 &
server=$!
pids+=("$server")
wait_port "$server_port"
"$bin/seckill-web" --listen "127.0.0.1:$web_port" --server "127.0.0.1:$server_port" \
    --user-header X-User-Id --rate-limit 0 >"$tmp/web.log" 2>&1 &
web=$!
pids+=("$web")
wait_port "$web_port"

goods=$("$bin/seckill-cli" --addr "127.0.0.1:$server_port" --token "$token" --json goods add \
    --name http-bench --price 1 --stock 4000000000 --start now --end +1h |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')

echo "== HTTP through seckill-web: wrk -t2 -c$conns -d${duration}s, goods $goods"
s0=$(cpu_s "$server"); w0=$(cpu_s "$web")
wrk -t2 -c"$conns" -d"${duration}s" --latency -s benches/http-buy.lua \
    "http://127.0.0.1:$web_port/api/goods/$goods/buy" | tee "$tmp/wrk.txt"
s1=$(cpu_s "$server"); w1=$(cpu_s "$web")
http_requests=$(awk '/requests in/ { print $1 }' "$tmp/wrk.txt")
http_errors=$(awk '/Non-2xx/ { print $NF }' "$tmp/wrk.txt")
http_errors=${http_errors:-0}

echo "== binary protocol: seckill-bench sustained -c $conns --duration ${duration}s"
s2=$(cpu_s "$server")
"$bin/seckill-bench" sustained --addr "127.0.0.1:$server_port" --token "$token" -c "$conns" \
    --duration "${duration}s" --json >"$tmp/bench.json"
s3=$(cpu_s "$server")

http_seconds=$(awk '/requests in/ { sub(/s,$/, "", $4); print $4 }' "$tmp/wrk.txt")
http_p50=$(awk '$1 == "50%" { print $2 }' "$tmp/wrk.txt")
http_p99=$(awk '$1 == "99%" { print $2 }' "$tmp/wrk.txt")

python3 - "$tmp/bench.json" "$http_requests" "$http_errors" "$http_seconds" "$s0" "$s1" "$w0" "$w1" "$s2" "$s3" \
    "$http_p50" "$http_p99" <<'PY'
import json, sys
bench = json.load(open(sys.argv[1]))
http, http_errors, http_s = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s0, s1, w0, w1, s2, s3 = map(float, sys.argv[5:11])
p50, p99 = sys.argv[11], sys.argv[12]
binary, binary_s = bench["answered"], bench["duration_s"]
lat = bench["latency"]
print()
print(f"HTTP   : {http} BUYs ({http_errors} not 2xx) in {http_s:.2f} s = {http / http_s:,.0f}/s, "
      f"p50 {p50}, p99 {p99}; CPU per BUY: server {1e6 * (s1 - s0) / http:.1f} us, "
      f"seckill-web {1e6 * (w1 - w0) / http:.1f} us")
print(f"binary : {binary} BUYs ({bench['outcomes']['ok']} ok) in {binary_s:.2f} s = {binary / binary_s:,.0f}/s, "
      f"latency {json.dumps(lat)}; CPU per BUY: server {1e6 * (s3 - s2) / binary:.1f} us")
PY
