#!/usr/bin/env bash
# The whole test suite: what the README's quick start runs and .ci/run calls.
#
# The store tests talk to a real Redis (127.0.0.1:6379) and MariaDB
# (127.0.0.1:3306, root, empty password); scripts/services.sh installs and
# starts them where they do not answer, so a fresh machine passes too.
set -euo pipefail
cd "$(dirname "$0")"
scripts/services.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace
