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
# Every member, not only the root package (the default without --workspace).
cargo clippy --workspace --all-targets -- -D warnings
# The docs of every crate, broken links included.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# The two library crates stay publishable. Together: the client depends on a
# seckill-proto that crates.io does not have yet.
cargo package -p seckill-proto -p seckill-client --allow-dirty --quiet
cargo test --workspace
