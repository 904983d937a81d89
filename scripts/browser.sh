#!/usr/bin/env bash
# Makes sure headless Chromium and its WebDriver (chromedriver) are on this
# machine, for the browser tests of seckill-web (web/tests/browser.rs):
# installs Debian's `chromium` and `chromium-driver` with apt-get where
# either is missing. Says nothing when both are there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
echo "browser: installing chromium and chromium-driver" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "browser: error: need root (or sudo) to install" >&2; exit 1; }
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q chromium chromium-driver
