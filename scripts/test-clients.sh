#!/usr/bin/env bash
# The clients the `faults` scenario drives on this machine: Debian's headless
# Chromium and its chromedriver (no browser download), and wscat from npm in
# .cache/node. Installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

WSCAT_VERSION=6.1.0

need=()
for cmd in chromium:chromium chromedriver:chromium-driver node:nodejs npm:npm script:bsdutils; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root" >&2
    exit 1
  fi
  echo "==> installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

wscat=.cache/node/node_modules/wscat/package.json
if ! grep -q "\"version\": \"$WSCAT_VERSION\"" "$wscat" 2>/dev/null; then
  echo "==> installing wscat $WSCAT_VERSION into .cache/node"
  mkdir -p .cache/node
  npm install --prefix .cache/node --no-audit --no-fund --silent "wscat@$WSCAT_VERSION"
fi
