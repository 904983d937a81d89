#!/usr/bin/env bash
# Durable orders/s through the 3-node Galera cluster of scripts/cluster/galera.sh
# against the single MariaDB on 127.0.0.1:3306, interleaved, one server
# build and one seckill-bench binary for all. Per run, a fresh server on a
# fresh database and Redis prefix, then a sustained sale (a goods that never
# sells out) and a verified flash crowd. Configurations:
#
#   single   --mysql mysql://root@127.0.0.1:3306/DB
#   galera   --mysql the 3 nodes as a list (writes through node 1, sessions with wsrep_sync_wait=1)
#   node1    --mysql node 1 alone (Galera replication, no list: no probe, no sync wait)
#
#   benches/galera.sh TREE OUT_DIR [ROUNDS]
#
# TREE has target/release/{seckill-server,seckill-bench} built. Reports:
# OUT_DIR/{sus,fc}-{config}{round}.json. Drops every database
# seckill_gal_* (on both servers) and Redis key seckill-gal* at the end.
set -euo pipefail

TREE=$1 OUT=$2 ROUNDS=${3:-3}
BENCH=$TREE/target/release/seckill-bench
REDIS=redis://127.0.0.1:6379
SINGLE=mysql://root@127.0.0.1:3306
NODES=(mysql://root@127.0.0.1:33061 mysql://root@127.0.0.1:33062 mysql://root@127.0.0.1:33063)
TOKEN=gal-token
PORT=${PORT:-7751}
SUSTAIN=${SUSTAIN:-20s}
mkdir -p "$OUT"

server_pid=
stop_server() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
drop_dbs() { # PORT
    mariadb -h 127.0.0.1 -P "$1" -u root -N -e "SHOW DATABASES LIKE 'seckill_gal_%'" |
        while read -r db; do mariadb -h 127.0.0.1 -P "$1" -u root -e "DROP DATABASE \`$db\`"; done
}
cleanup() {
    stop_server
    drop_dbs 3306
    drop_dbs 33062
    redis-cli --scan --pattern 'seckill-gal*' | xargs -r redis-cli del >/dev/null
}
trap cleanup EXIT

mysql_of() { # CONFIG DB -> the --mysql value, and the URL the bench verifies through
    case $1 in
        single) echo "$SINGLE/$2 $SINGLE/$2" ;;
        galera) echo "${NODES[0]}/$2,${NODES[1]}/$2,${NODES[2]}/$2 ${NODES[1]}/$2" ;;
        node1) echo "${NODES[0]}/$2 ${NODES[1]}/$2" ;;
    esac
}

start_server() { # NAME MYSQL
    local name=$1 mysql=$2
    stop_server
    "$TREE/target/release/seckill-server" --listen "127.0.0.1:$PORT" --admin-token "$TOKEN" \
        --max-connections-per-ip 20000 --redis "$REDIS" --redis-prefix "seckill-gal-$name:" \
        --mysql "$mysql" --ack durable --data "$OUT/unused-$name.db" \
        >"$OUT/server-$name.out" 2>"$OUT/server-$name.log" &
    server_pid=$!
    for _ in $(seq 300); do
        grep -q listening "$OUT/server-$name.out" 2>/dev/null && return
        sleep 0.1
    done
    echo "server $name did not start" >&2
    cat "$OUT/server-$name.log" >&2
    exit 1
}

scripts=$(dirname "$0")/../scripts/cluster
"$scripts/galera.sh" up
for round in $(seq "${FIRST:-1}" $((${FIRST:-1} + ROUNDS - 1))); do
    for config in single galera node1; do
        name=$config$round
        read -r mysql verify < <(mysql_of "$config" "seckill_gal_$name")
        start_server "$name" "$mysql"
        echo "== $name sustained" >&2
        "$BENCH" sustained --addr "127.0.0.1:$PORT" --token "$TOKEN" -c 1000 --duration "$SUSTAIN" \
            --json >"$OUT/sus-$name.json"
        echo "== $name flash crowd" >&2
        "$BENCH" flash-crowd --addr "127.0.0.1:$PORT" --token "$TOKEN" -c 1000 --users 100000 \
            --attempts 300000 --stock 10000 --first-user 9000000000 --mysql "$verify" \
            --json >"$OUT/fc-$name.json"
        stop_server
    done
done
"$scripts/galera.sh" status
