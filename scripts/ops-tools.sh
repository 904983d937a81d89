#!/usr/bin/env bash
# Makes sure the operators' tools the tests run are on this machine:
# Prometheus and promtool (a real Prometheus scrapes a server in
# tests/tcp/metrics.rs; promtool checks the metrics and deploy/'s files) and
# systemd-analyze (verifies deploy/seckill.service in tests/deploy.rs).
# Installs Debian's `prometheus` and `systemd` packages with apt-get where a
# tool is missing. The tests run their own Prometheus on a loopback port and
# stop it; the package's own service is not used. Says nothing when all are
# there.
set -euo pipefail

packages=()
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    packages+=(prometheus)
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
    packages+=(systemd)
fi
[[ ${#packages[@]} -eq 0 ]] && exit 0

echo "ops-tools: installing ${packages[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "ops-tools: error: need root (or sudo) to install" >&2; exit 1; }
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
