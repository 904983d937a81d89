#!/usr/bin/env bash
# Makes sure Prometheus and promtool are on this machine, for the tests that
# scrape a server with a real Prometheus (tests/tcp/metrics.rs): installs
# Debian's `prometheus` package with apt-get where either is missing. The
# tests run their own Prometheus on a loopback port and stop it; the
# package's own service is not used. Says nothing when both are there.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
echo "prometheus: installing Debian's prometheus package" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "prometheus: error: need root (or sudo) to install" >&2; exit 1; }
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends prometheus
