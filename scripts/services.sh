#!/usr/bin/env bash
# Makes sure the services the store tests and a production-like server need
# are up on this machine:
#
#   Redis    127.0.0.1:6379
#   MariaDB  127.0.0.1:3306, user root with an empty password over TCP
#
# For each one that does not answer: installs it with apt-get if its binary
# is missing, starts it (systemd, else the init script, else the daemon
# directly: containers often have neither), waits until it answers, and for
# MariaDB lets root log in over TCP with an empty password. Says nothing and
# changes nothing when both already answer; prints what it does otherwise;
# exits non-zero with the reason when it cannot.
#
# Meant for development machines and CI containers: an empty root password
# is not a production setup.
set -euo pipefail

readonly HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly MYSQL_PORT=3306
readonly REDIS_WAIT=15 # seconds
readonly MYSQL_WAIT=60

say() { echo "services: $*" >&2; }
die() {
    echo "services: error: $*" >&2
    exit 1
}

# Root for installing and starting daemons: ourselves, or sudo.
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        SUDO=(__not_root__)
    fi
fi
as_root() {
    if [[ ${SUDO[0]:-} == __not_root__ ]]; then
        die "need root (or sudo) to run: $*"
    fi
    "${SUDO[@]}" "$@"
}

# shellcheck source=scripts/find_bin.sh
source "$(dirname "$0")/find_bin.sh"

# Whether something accepts TCP connections on the port.
port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Waits up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

APT_UPDATED=
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "$1 is not installed and there is no apt-get to install it"
    if [[ -z $APT_UPDATED ]]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null ||
            die "apt-get update failed"
        APT_UPDATED=1
    fi
    say "installing $1"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null ||
        die "apt-get install $1 failed"
}

# Whether systemd runs this machine (not merely installed, as in containers).
have_systemd() {
    [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1
}

# Starts a service by its manager: systemd, else its init script.
start_service() {
    local name service
    for name in "$@"; do
        if have_systemd && systemctl list-unit-files "$name.service" 2>/dev/null | grep -q "^$name"; then
            as_root systemctl start "$name" >/dev/null 2>&1 && return 0
        fi
        # `service` lives in /usr/sbin, which a non-root PATH lacks.
        if [[ -x /etc/init.d/$name ]] && service=$(find_bin service); then
            as_root "$service" "$name" start >/dev/null 2>&1 && return 0
        fi
    done
    return 1
}

# --- Redis -------------------------------------------------------------

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [[ $(timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        # RESP by hand: an inline PING is answered "+PONG".
        timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$REDIS_PORT && printf 'PING\r\n' >&3 &&
            IFS= read -r reply <&3 && [[ \$reply == +PONG* ]]" 2>/dev/null
    fi
}

start_redis_directly() {
    local server conf dir runuser
    server=$(find_bin redis-server) || die "redis-server is not installed"
    local args=(--bind "$HOST" --port "$REDIS_PORT" --daemonize yes)
    conf=/etc/redis/redis.conf
    if [[ -r $conf ]]; then
        args=("$conf" "${args[@]}")
    else
        dir=/var/lib/redis
        [[ -d $dir ]] || dir=${TMPDIR:-/tmp}
        args+=(--dir "$dir")
    fi
    if id redis >/dev/null 2>&1 && runuser=$(find_bin runuser); then
        # As the packaged user, also when we are not root, so that its pid
        # file, log and dump stay the package's and its own init script or
        # unit can still write them later.
        as_root install -d -o redis -g redis /run/redis /var/log/redis
        as_root "$runuser" -u redis -- "$server" "${args[@]}" >/dev/null
    else
        as_root "$server" "${args[@]}" >/dev/null
    fi
}

ensure_redis() {
    redis_answers && return 0
    if port_open "$REDIS_PORT"; then
        die "something listens on $HOST:$REDIS_PORT but does not answer a Redis PING (a password? another program?)"
    fi
    find_bin redis-server >/dev/null || apt_install redis-server
    say "starting redis-server"
    if ! { start_service redis-server redis && wait_for "$REDIS_WAIT" redis_answers; }; then
        start_redis_directly || die "redis-server did not start"
        wait_for "$REDIS_WAIT" redis_answers ||
            die "redis-server started but does not answer on $HOST:$REDIS_PORT"
    fi
    say "redis answers on $HOST:$REDIS_PORT"
}

# --- MariaDB -----------------------------------------------------------

mysql_client() {
    find_bin mariadb mysql
}

# Root over TCP with an empty password, ignoring any option file that
# would supply a password: exactly what the tests do.
mysql_root_over_tcp() {
    local client
    client=$(mysql_client) || return 1
    timeout 10 "$client" --no-defaults --protocol=TCP -h "$HOST" -P "$MYSQL_PORT" -uroot \
        --connect-timeout=3 -e 'SELECT 1' >/dev/null 2>&1
}

mysql_port_open() {
    port_open "$MYSQL_PORT"
}

# The datadir the server is configured with.
mysql_datadir() {
    local printer dir=
    if printer=$(find_bin my_print_defaults mariadb-print-defaults); then
        dir=$("$printer" mysqld mariadb 2>/dev/null | sed -n 's/^--datadir=//p' | tail -n 1)
    fi
    echo "${dir:-/var/lib/mysql}"
}

# Creates the system tables when the datadir has none (a wiped or freshly
# mounted /var/lib/mysql): no way of starting the server works without
# them, and Debian's init script only finds that out after a long wait.
init_mariadb_datadir() {
    local datadir install_db output
    datadir=$(mysql_datadir)
    as_root test -d "$datadir/mysql" && return 0
    id mysql >/dev/null 2>&1 || die "no 'mysql' system user to run MariaDB as"
    install_db=$(find_bin mariadb-install-db mysql_install_db) ||
        die "the datadir $datadir is empty and there is no mariadb-install-db"
    say "initialising $datadir"
    as_root install -d -o mysql -g mysql "$datadir"
    # Its chatter (warnings included) only matters when it fails.
    if ! output=$(as_root "$install_db" --user=mysql --datadir="$datadir" 2>&1); then
        echo "$output" >&2
        die "$install_db --datadir=$datadir failed"
    fi
}

start_mariadb_directly() {
    local datadir safe daemon
    datadir=$(mysql_datadir)
    id mysql >/dev/null 2>&1 || die "no 'mysql' system user to run MariaDB as"
    as_root install -d -o mysql -g mysql /run/mysqld
    # Local only, whatever the configuration says: root has no password.
    local args=(--user=mysql --datadir="$datadir" --bind-address="$HOST" --port="$MYSQL_PORT")
    # Both stay in the foreground (mysqld_safe also restarts the server if
    # it crashes): setsid --fork runs them in a session of their own and
    # returns at once, leaving no shell or sudo of ours waiting on them.
    if safe=$(find_bin mysqld_safe mariadbd-safe); then
        as_root setsid --fork nohup "$safe" "${args[@]}" >/dev/null 2>&1 </dev/null
    elif daemon=$(find_bin mariadbd mysqld); then
        as_root setsid --fork nohup "$daemon" "${args[@]}" >/dev/null 2>&1 </dev/null
    else
        die "no mariadbd, mysqld or mysqld_safe to start"
    fi
}

# Lets root log in over TCP with an empty password, keeping the local
# socket login (unix_socket) that Debian's maintenance scripts use. A TCP
# login from 127.0.0.1 is root@localhost, or root@127.0.0.1 when the
# server skips name resolution: both get the same.
fix_root_login() {
    local client
    client=$(mysql_client) || die "no mariadb or mysql client to set up the root login"
    say "letting root log in over TCP with an empty password"
    local mariadb_sql="
        ALTER USER root@localhost
            IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
        CREATE USER IF NOT EXISTS root@'127.0.0.1'
            IDENTIFIED VIA mysql_native_password USING PASSWORD('');
        ALTER USER root@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
        GRANT ALL PRIVILEGES ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
        FLUSH PRIVILEGES;"
    # MariaDB before 10.4 has no "OR unix_socket"; MySQL has neither syntax.
    local old_mariadb_sql=${mariadb_sql/ OR unix_socket/}
    local mysql_sql="
        ALTER USER 'root'@'localhost' IDENTIFIED WITH mysql_native_password BY '';
        CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED WITH mysql_native_password BY '';
        GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
        FLUSH PRIVILEGES;"
    local sql
    for sql in "$mariadb_sql" "$old_mariadb_sql" "$mysql_sql"; do
        # Over the local socket as the system's root, which a fresh
        # install authenticates by unix_socket.
        if as_root "$client" -uroot -e "$sql" >/dev/null 2>&1; then
            return 0
        fi
    done
    die "could not set up the root login: '$client -uroot' over the local socket was refused" \
        "(root may have a password: set it empty by hand)"
}

ensure_mariadb() {
    mysql_root_over_tcp && return 0
    if ! mysql_port_open; then
        if ! find_bin mariadbd mysqld >/dev/null; then
            apt_install mariadb-server
        fi
        init_mariadb_datadir
        say "starting MariaDB"
        if ! { start_service mariadb mysql && wait_for 15 mysql_port_open; }; then
            start_mariadb_directly
            wait_for "$MYSQL_WAIT" mysql_port_open ||
                die "MariaDB started but does not listen on $HOST:$MYSQL_PORT" \
                    "(skip-networking or another bind-address in its configuration?)"
        fi
    fi
    mysql_client >/dev/null || apt_install mariadb-client
    mysql_root_over_tcp || fix_root_login
    # A change of authentication applies to new connections at once.
    wait_for 10 mysql_root_over_tcp ||
        die "MariaDB answers on $HOST:$MYSQL_PORT but root cannot log in with an empty password"
    say "MariaDB answers on $HOST:$MYSQL_PORT (root, empty password)"
}

ensure_redis
ensure_mariadb
