#!/usr/bin/env bash
# The local scale-out topology the cluster tests use, on loopback ports:
#
#   Redis Cluster   3 primaries + 3 replicas, 127.0.0.1:30001-30006
#                   (scripts/cluster/redis.sh)
#   MariaDB Galera  3 nodes (scripts/cluster/galera.sh)
#
#   scripts/cluster.sh up|down|status|reserve [redis|galera]
#
# `reserve` keeps the kernel from giving the topology's ports to outgoing
# connections (test.sh does it before the tests, whose connections would
# otherwise take them before a node starts).
# Without a part, both. Idempotent: `up` on a healthy topology changes
# nothing; `down` stops only what these scripts started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

command=${1:-}
case $command in
up | down | status | reserve) ;;
*)
    echo "usage: $0 up|down|status|reserve [redis|galera]" >&2
    exit 2
    ;;
esac
parts=("${@:2}")
if [[ ${#parts[@]} -eq 0 ]]; then
    for part in redis galera; do
        [[ -x $here/cluster/$part.sh ]] && parts+=("$part")
    done
fi

status=0
for part in "${parts[@]}"; do
    script=$here/cluster/$part.sh
    [[ -x $script ]] || {
        echo "cluster: no part $part" >&2
        exit 2
    }
    "$script" "$command" || status=$?
done
exit $status
