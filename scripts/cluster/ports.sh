# shellcheck shell=bash
# Sourced by the cluster scripts (cluster/redis.sh, cluster/galera.sh).
#
# reserve_ports RANGES: adds RANGES ("40001-40006,45670-45671") to the
# kernel's ip_local_reserved_ports, so that no outgoing connection is given
# one of those ports as its local port. A node that binds such a port later
# (a node joining after the others, or restarted by a test) would otherwise
# find it taken by some client's connection: "Address already in use" (for a
# Galera node's group port, reported as "Failed to read thread
# schedparams"). Best effort: says why where it cannot.
reserve_ports() {
    local file=/proc/sys/net/ipv4/ip_local_reserved_ports current sudo=()
    current=$(cat "$file" 2>/dev/null) || return 0
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    echo "${current:+$current,}$1" | "${sudo[@]}" tee "$file" >/dev/null 2>&1 ||
        echo "warning: cannot reserve ports $1 ($file): a node started while other programs open many connections may find its port taken" >&2
}

# wait_ports_unheld SECONDS PORT...: waits until no socket other than one in
# TIME-WAIT (which the nodes' SO_REUSEADDR binds past) holds any of these
# local ports: a connection that took one before it was reserved. Fails,
# showing the holders, if one still does after SECONDS.
wait_ports_unheld() {
    local seconds=$1 p held waited=0
    shift
    while :; do
        held=()
        for p in "$@"; do
            if ss -Htan "sport = :$p" 2>/dev/null | grep -qv '^TIME-WAIT'; then
                held+=("$p")
            fi
        done
        ((${#held[@]} == 0)) && return 0
        if ((waited == 0)); then
            echo "ports ${held[*]} are held by a connection; waiting for it to close (up to ${seconds}s)" >&2
        fi
        if ((waited++ >= seconds * 5)); then
            for p in "${held[@]}"; do
                ss -tanp "sport = :$p" >&2 || true
            done
            return 1
        fi
        sleep 0.2
    done
}
