#!/usr/bin/env bash
# The whole test suite: what the README's quick start runs and .ci/run calls.
#
# Needs a C toolchain (Rust links with `cc`, and the bundled SQLite is C):
# installed with apt-get (build-essential) where missing. The store tests
# talk to a real Redis (127.0.0.1:6379) and MariaDB (127.0.0.1:3306, root,
# empty password); scripts/services.sh installs and starts them where they
# do not answer, so a fresh machine passes too.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v cc >/dev/null 2>&1; then
    echo "test.sh: no C compiler (cc); installing build-essential" >&2
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q build-essential
fi
scripts/services.sh
# Every shell script of the repository, linted.
if ! command -v shellcheck >/dev/null 2>&1; then
    echo "test.sh: no shellcheck; installing it" >&2
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q shellcheck ||
        { "${sudo[@]}" apt-get update -q && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q shellcheck; }
fi
# (The repository's own: a checkout's files, else what is outside target/.)
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck
else
    find . -path ./target -prune -o \( -name '*.sh' -o -path ./.ci/run \) -type f -print0 | xargs -0 shellcheck
fi
# Headless Chromium and chromedriver for seckill-web's browser tests.
scripts/browser.sh
# Prometheus, promtool and systemd-analyze, for the metrics and deploy tests.
scripts/ops-tools.sh
# The cluster tests form a local Redis Cluster and Galera (scripts/cluster.sh)
# when they first need them; stopped at the end unless they were up before.
if ! scripts/cluster.sh status >/dev/null 2>&1; then
    trap 'scripts/cluster.sh down' EXIT
fi
# Their ports kept from the tests' own outgoing connections, which could
# otherwise hold one when a node starts (or restarts) halfway through.
scripts/cluster.sh reserve
cargo fmt --all -- --check
# Every member, not only the root package (the default without --workspace).
cargo clippy --workspace --all-targets -- -D warnings
# The docs of every crate, broken links included.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# The two library crates stay publishable. Together: the client depends on a
# seckill-proto that crates.io does not have yet. In a target directory of its
# own each time: cargo unpacks the packaged seckill-proto into a cache keyed
# by that directory's path and reuses it while the version stays 0.1.0, so a
# fixed directory would verify the client against an older seckill-proto.
package_dir=$(mktemp -d)
cargo package -p seckill-proto -p seckill-client --allow-dirty --quiet --target-dir "$package_dir"
rm -rf "$package_dir"

# With the soft open-files limit a shell usually hands down: the server, the
# bench and the tests raise their own limit (some tests hold 10,000
# connections), and this proves that they do.
hard=$(ulimit -Hn)
if [[ $hard == unlimited || $hard -ge 1024 ]]; then
    ulimit -Sn 1024
fi
cargo test --workspace
