#!/usr/bin/env bash
# A 3-node MariaDB Galera cluster on loopback, for the tests and benchmarks
# of the Galera order store (`--mysql URL,URL,URL`):
#
#   node  client port  group port (IST +1)  SST port
#   1     33061        45670                44440
#   2     33062        45680                44441
#   3     33063        45690                44442
#
#   galera.sh up      start what is not running; a no-op when all 3 are Synced
#   galera.sh down    stop the nodes this script started, remove their data
#   galera.sh status  each node's cluster size and state; non-zero unless
#                     all 3 are Synced in one cluster of 3
#
# Data, sockets, logs and pidfiles live under $SECKILL_CLUSTER_DIR/galera
# (default /tmp/seckill-cluster/galera), never in the repository. Root logs
# in over TCP without a password: a test setup, not a production one.
#
# `up` with no node running wipes that directory and forms a new cluster
# (node 1 bootstraps, nodes 2 and 3 join by rsync SST): the data is
# throwaway, and a stale cluster's state is what makes a bootstrap fail. A
# node that is down while others run (killed by a test) rejoins: its last
# position is recovered first (`--wsrep-recover`, as Debian's
# galera_recovery does), so that it catches up by IST from the gcache, and
# falls back to a full SST from an empty datadir if that fails.
#
# Its ports are inside Linux's default ephemeral range (32768-60999): while a
# node is down, an outgoing connection of anything else on the machine (a
# test suite opens thousands) may be given one of them, and the node cannot
# start again.
# `up` therefore adds them to net.ipv4.ip_local_reserved_ports (as root, till
# the next boot; a warning where /proc/sys is read-only).
#
# Safe to run from several processes at once (the tests of each test binary
# call `up`): the commands take turns on a lock file.
#
# Pitfalls measured on this machine (docs: /work/shared/notes/scale-out.md):
# as root, the nodes must run as `mysql` with their datadirs chowned to it
# (with user=root the joiner's rsync daemon drops to `nobody` and SST fails
# with "Permission denied", rsync code 23); Galera needs
# innodb_autoinc_lock_mode=2 and row-based binlog events.
set -euo pipefail

readonly NODES=(1 2 3)
readonly ROOT=${SECKILL_CLUSTER_DIR:-/tmp/seckill-cluster}
readonly DIR=$ROOT/galera
readonly PROVIDER=/usr/lib/galera/libgalera_smm.so
readonly START_WAIT=120 # seconds for one node to be Synced (an SST included)
readonly STOP_WAIT=30

# shellcheck source=scripts/cluster/ports.sh
source "$(dirname "$0")/ports.sh"

say() { echo "galera: $*" >&2; }
die() {
    echo "galera: error: $*" >&2
    exit 1
}

# Every port a node listens on: client, group (gcomm), IST, SST.
readonly RESERVED_PORTS=33061-33063,45670-45671,45680-45681,45690-45691,44440-44442

port() { echo "3306$1"; }
base_port() { echo $((45670 + ($1 - 1) * 10)); }
sst_port() { echo "4444$(($1 - 1))"; }
node_dir() { echo "$DIR/node$1"; }

# Root, or sudo, for apt-get and for running the nodes as `mysql`.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

# shellcheck source=scripts/find_bin.sh
source "$(dirname "$0")/../find_bin.sh"

# The packages: galera-4 comes with mariadb-server on Debian; rsync does
# the SST.
install() {
    if [[ -e $PROVIDER ]] && find_bin mariadbd >/dev/null && command -v rsync >/dev/null &&
        find_bin mariadb >/dev/null; then
        return 0
    fi
    say "installing galera-4, mariadb-server and rsync"
    as_root apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q galera-4 mariadb-server \
        mariadb-client rsync >&2
}

# The pid of node $1 if it is running and is ours: the process this script
# started (its pidfile, written at launch: mariadbd writes its own only once
# an SST is over), running mariadbd with this node's option file (a pid
# reused by another process is not ours).
pid_of() {
    local pidfile pid cmdline
    pidfile=$(node_dir "$1")/started.pid
    [[ -r $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    # No pipe into `grep -q`: with pipefail, the writer's SIGPIPE when grep
    # exits early would make a running node look stopped.
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmdline == *"--defaults-file=$(node_dir "$1")/my.cnf"* ]] || return 1
    echo "$pid"
}

# Fails if a port of the cluster is taken by a process this script did not
# start (another cluster, a leftover): its data must not be wiped from under
# it, nor its ports mistaken for ours.
ports_free() {
    local n p
    for n in "${NODES[@]}"; do
        for p in "$(port "$n")" "$(base_port "$n")" "$(sst_port "$n")"; do
            if ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
                die "port $p is in use by a process this script did not start (see: ss -ltnp 'sport = :$p')"
            fi
        done
    done
}

sql() {
    local node=$1
    shift
    "$MARIADB" --no-defaults -h127.0.0.1 -P"$(port "$node")" -uroot --connect-timeout=2 -N -B \
        -e "$*" 2>/dev/null
}

status_var() { sql "$1" "SHOW GLOBAL STATUS LIKE '$2'" | cut -f2; }

synced() {
    [[ $(status_var "$1" wsrep_local_state) == 4 && $(status_var "$1" wsrep_ready) == ON ]]
}

write_cnf() {
    local n=$1 d user=
    d=$(node_dir "$n")
    [[ $(id -u) -eq 0 ]] && user="user=mysql"
    # The other nodes take turns as donors, the first writer (node 1) last:
    # an rsync SST blocks its donor's writes.
    local donors
    case $n in
        1) donors="node3,node2," ;;
        2) donors="node3,node1," ;;
        3) donors="node2,node1," ;;
    esac
    cat >"$d/my.cnf" <<EOF
[mariadbd]
$user
port=$(port "$n")
bind-address=127.0.0.1
datadir=$d/data
socket=$d/sock
pid-file=$d/mariadbd.pid
log-error=$d/error.log
skip-name-resolve
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=seckill
wsrep_cluster_address=gcomm://127.0.0.1:45670,127.0.0.1:45680,127.0.0.1:45690
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(base_port "$n")
wsrep_provider_options="base_port=$(base_port "$n");gcache.size=64M;evs.suspect_timeout=PT3S"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
wsrep_sst_donor=$donors
EOF
}

# Starts node $1 in the background, detached from this script (its own
# session, the lock's descriptor closed), with extra options $2...
launch() {
    local n=$1 d
    shift
    d=$(node_dir "$n")
    # setsid execs mariadbd in place (a background job is no group
    # leader), so $! is the server's pid.
    setsid "$MARIADBD" --defaults-file="$d/my.cnf" "$@" </dev/null >>"$d/console.log" 2>&1 9>&- &
    echo $! >"$d/started.pid"
}

wait_synced() {
    local n=$1 waited=0
    while ! synced "$n"; do
        if ! pid_of "$n" >/dev/null && ((waited > 5)); then
            say "node $n exited; its last errors:"
            grep -F -e '[ERROR]' -e 'WSREP_SST: [ERROR]' "$(node_dir "$n")/error.log" | tail -n 6 >&2 || true
            return 1
        fi
        ((waited++ < START_WAIT * 5)) || {
            say "node $n not Synced within ${START_WAIT}s; the end of its log:"
            tail -n 30 "$(node_dir "$n")/error.log" >&2 || true
            return 1
        }
        sleep 0.2
    done
}

# Makes sure the running nodes form a primary component, for a node to join.
# With one node left of two (a joiner that failed midway, a node killed by a
# test), the survivor has no quorum and stays non-primary: every later join
# times out ("failed to reach primary view"). The survivor is told to form
# a primary component on its own (pc.bootstrap), as the Galera docs advise
# after a loss of quorum.
ensure_primary() {
    local n first=
    for n in "${NODES[@]}"; do
        pid_of "$n" >/dev/null || continue
        [[ $(status_var "$n" wsrep_cluster_status) == Primary ]] && return 0
        first=${first:-$n}
    done
    [[ -n $first ]] || return 1
    say "no running node is in a primary component: node $first forms one"
    sql "$first" "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'" || true
    wait_synced "$first"
}

# A new cluster: every node's data is made afresh.
bootstrap() {
    say "forming a new cluster in $DIR"
    for n in "${NODES[@]}"; do
        stop_node "$n"
    done
    ports_free
    rm -rf "$DIR"
    for n in "${NODES[@]}"; do
        mkdir -p "$(node_dir "$n")/data"
        write_cnf "$n"
    done
    [[ $(id -u) -eq 0 ]] && chown -R mysql: "$DIR"
    local d
    d=$(node_dir 1)
    "$INSTALL_DB" --defaults-file="$d/my.cnf" --auth-root-authentication-method=normal \
        --skip-test-db >"$d/install.log" 2>&1 || {
        cat "$d/install.log" >&2
        die "mariadb-install-db failed for node 1"
    }
    launch 1 --wsrep-new-cluster
    wait_synced 1 || die "node 1 did not bootstrap"
    for n in "${NODES[@]:1}"; do
        join "$n"
    done
}

# Node $1 joins the running cluster: from its own data where it has some
# (IST), else by a full SST into an empty datadir.
join() {
    local n=$1 d position=()
    d=$(node_dir "$n")
    mkdir -p "$d/data"
    write_cnf "$n"
    [[ $(id -u) -eq 0 ]] && chown -R mysql: "$d"
    if [[ -e $d/data/grastate.dat ]] && grep -q '^seqno: *-1' "$d/data/grastate.dat"; then
        # Killed: its position is in InnoDB, not in grastate.dat.
        "$MARIADBD" --defaults-file="$d/my.cnf" --wsrep-recover --log-error="$d/recover.log" \
            >/dev/null 2>&1 9>&- || true
        local recovered
        recovered=$(grep -o 'Recovered position: [^ ]*' "$d/recover.log" 2>/dev/null | tail -n1 |
            cut -d' ' -f3)
        if [[ $recovered == *:* && $recovered != *:-1 ]]; then
            position=(--wsrep-start-position="$recovered")
        fi
    fi
    # A failed attempt is tried again after a pause. Seen here: the joiner's
    # rsync daemon exiting at once ("terminated unexpectedly") twice in a
    # row, and the same join succeeding half a minute later; the cause was
    # not pinned down (its SST port taken, or still held by a connection
    # just closed, are the likely ones). The last attempt starts from an
    # empty datadir (a full SST), in case the node's own data is what fails.
    local attempt
    for attempt in 1 2 3; do
        if ((attempt == 1)); then
            say "node $n joining"
        else
            say "node $n joining (attempt $attempt)"
        fi
        if ((attempt == 3)); then
            rm -rf "$d/data"
            mkdir -p "$d/data"
            [[ $(id -u) -eq 0 ]] && chown -R mysql: "$d"
            position=()
        fi
        ensure_primary || die "no node to join"
        wait_ports_unheld 70 "$(port "$n")" "$(base_port "$n")" "$(($(base_port "$n") + 1))" "$(sst_port "$n")" ||
            say "node $n: a port is still held; starting anyway"
        launch "$n" "${position[@]}"
        if wait_synced "$n"; then
            return 0
        fi
        stop_node "$n"
        sleep $((attempt * 3))
    done
    die "node $n did not join"
}

stop_node() {
    local n=$1 pid waited=0
    pid=$(pid_of "$n") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited++ > STOP_WAIT * 10)); then
            say "node $n (pid $pid) ignored SIGTERM for ${STOP_WAIT}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
    done
}


up() {
    install
    reserve_ports "$RESERVED_PORTS"
    local running=()
    for n in "${NODES[@]}"; do
        if pid_of "$n" >/dev/null; then
            running+=("$n")
        fi
    done
    if ((${#running[@]} == 0)); then
        bootstrap
    else
        for n in "${NODES[@]}"; do
            if ! pid_of "$n" >/dev/null; then
                join "$n"
            fi
        done
        # A node still catching up (started by a caller that gave up).
        for n in "${NODES[@]}"; do
            wait_synced "$n" || die "node $n is not Synced"
        done
    fi
    status >/dev/null || {
        status
        die "the cluster is not whole"
    }
}

down() {
    for n in "${NODES[@]}"; do
        stop_node "$n"
    done
    rm -rf "$DIR"
}

status() {
    local whole=0 size state ready
    for n in "${NODES[@]}"; do
        if ! pid_of "$n" >/dev/null; then
            echo "node $n (port $(port "$n")): not running"
            whole=1
            continue
        fi
        size=$(status_var "$n" wsrep_cluster_size)
        state=$(status_var "$n" wsrep_local_state_comment)
        ready=$(status_var "$n" wsrep_ready)
        echo "node $n (port $(port "$n")): cluster size ${size:-?}, ${state:-no answer}, ready ${ready:-?}"
        [[ $size == "${#NODES[@]}" && $state == Synced && $ready == ON ]] || whole=1
    done
    return $whole
}

main() {
    local command=${1:-}
    case $command in
        up | down | status) ;;
        reserve)
            reserve_ports "$RESERVED_PORTS"
            return
            ;;
        *) die "usage: $0 up|down|status|reserve" ;;
    esac
    mkdir -p "$ROOT"
    # One command at a time, across processes; the nodes never hold it
    # (launch closes descriptor 9 in them).
    exec 9>"$ROOT/galera.lock"
    flock 9
    if [[ $command != down ]]; then
        MARIADB=$(find_bin mariadb mysql) || die "no mariadb client"
        MARIADBD=$(find_bin mariadbd mysqld) || die "no mariadbd"
        INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db) || die "no mariadb-install-db"
    fi
    "$command"
}

main "$@"
