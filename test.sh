#!/usr/bin/env bash
# The whole test suite. Stores (Redis, MariaDB) are not used yet: the
# embedded store needs none.
set -euo pipefail
cd "$(dirname "$0")"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace
