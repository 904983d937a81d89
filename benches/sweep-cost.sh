#!/usr/bin/env bash
# What the expiry sweep costs MariaDB on an idle server: N goods, each with
# one unpaid order due in 15 minutes (so that every goods is one the sweep
# reads, each second by default), and MariaDB's CPU over 30 s of sweeps,
# from /proc. The figure includes what an idle server costs MariaDB anyway
# (the catalog's refresh of every goods twice a second): compare two server
# builds side by side (BENCHMARKS.md, "one index of a goods' orders, with
# the goods to sweep").
#
#   benches/sweep-cost.sh SERVER_BINARY N [MARIADB_PID]
#
# Makes and drops the database seckill_sweep_cost on 127.0.0.1:3306 (root).
set -euo pipefail

SERVER=$1 N=$2
MARIADB_PID=${3:-$(pgrep -xo mariadbd)}
DB=seckill_sweep_cost
URL=mysql://root@127.0.0.1:3306/$DB
PORT=${PORT:-7795}
LOG=$(mktemp)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; then
        wait "$server_pid" 2>/dev/null || true
    fi
    mariadb -uroot -e "DROP DATABASE IF EXISTS $DB"
    rm -f "$LOG"
}
trap cleanup EXIT
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Waits for the server's log to say it serves (start-up reconciles every goods).
serving() {
    for _ in $(seq 600); do
        grep -q "serving with" "$LOG" && return 0
        sleep 0.5
    done
    echo "the server did not start: $(tail -3 "$LOG")" >&2
    return 1
}

mariadb -uroot -e "DROP DATABASE IF EXISTS $DB"
# The server makes the tables of its own schema.
"$SERVER" --listen "127.0.0.1:$PORT" --admin-token t --mysql "$URL" >"$LOG" 2>&1 &
server_pid=$!
serving
kill "$server_pid"; wait "$server_pid" || true; server_pid=
: >"$LOG"

now=$(date +%s%3N)
pay_by=$((now + 900000))
has_mark=$(mariadb -uroot -N -e "SELECT COUNT(*) FROM information_schema.COLUMNS
    WHERE TABLE_SCHEMA = '$DB' AND TABLE_NAME = 'goods' AND COLUMN_NAME = 'unpaid_until_ms'")
{
    echo "BEGIN;"
    for g in $(seq "$N"); do
        if [ "$has_mark" = 1 ]; then
            echo "INSERT INTO goods (id, name, price_cents, total, start_ms, end_ms, live_orders, unpaid_until_ms)
                  VALUES ($g, 'g$g', 1, 10, 0, $((now + 3600000)), 1, $pay_by);"
        else
            echo "INSERT INTO goods (id, name, price_cents, total, start_ms, end_ms, live_orders)
                  VALUES ($g, 'g$g', 1, 10, 0, $((now + 3600000)), 1);"
        fi
        echo "INSERT INTO orders (order_no, user_id, goods_id, created_ms, pay_by_ms)
              VALUES ($g, $g, $g, $now, $pay_by);"
    done
    echo "COMMIT;"
} | mariadb -uroot "$DB"

"$SERVER" --listen "127.0.0.1:$PORT" --admin-token t --mysql "$URL" >"$LOG" 2>&1 &
server_pid=$!
serving
sleep 3
m0=$(cpu "$MARIADB_PID") s0=$(cpu "$server_pid")
sleep 30
m1=$(cpu "$MARIADB_PID") s1=$(cpu "$server_pid")
echo "$N goods: MariaDB $(((m1 - m0) * 10)) ms of CPU in 30 s ($(((m1 - m0) * 10 / 30)) ms a second)," \
    "server $(((s1 - s0) * 10)) ms"
