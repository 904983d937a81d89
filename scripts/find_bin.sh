# shellcheck shell=bash
# Sourced by the scripts that start services (services.sh, cluster/*.sh).
#
# find_bin NAME...: the path of the first of these programs found, also in
# the sbin directories that a non-root PATH lacks; fails if none is.
find_bin() {
    local name dir
    for name in "$@"; do
        if command -v "$name" 2>/dev/null; then
            return 0
        fi
        for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin /usr/local/bin; do
            if [[ -x $dir/$name ]]; then
                echo "$dir/$name"
                return 0
            fi
        done
    done
    return 1
}
