#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
# Installs docker.io when dockerd is missing and starts dockerd in the
# background when `docker info` fails (machines without a service manager).
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/channels-stack-dockerd.log}

if docker info >/dev/null 2>&1; then
  exit 0
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing docker.io"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io
fi

# A service manager may be able to start it; otherwise run it ourselves.
if ! { command -v systemctl >/dev/null 2>&1 && as_root systemctl start docker >/dev/null 2>&1; }; then
  echo "==> starting dockerd in the background (log: $log)"
  as_root sh -c "nohup dockerd >>'$log' 2>&1 &"
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "==> docker engine is up"
    exit 0
  fi
  sleep 1
done
echo "docker engine did not come up; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
