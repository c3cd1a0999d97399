#!/usr/bin/env bash
# What tests/test_web.py and tests/test_workers.py need from the system, for .ci/run:
# Debian's headless Chromium and its WebDriver (the browser test), and Debian's
# docker-compose to validate docker-compose.yml where the Compose v2 plugin is missing.
# Idempotent: installs only what is not there yet.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  need+=(docker-compose)
fi
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
