#!/usr/bin/env bash
# Start a systemd container the way the molecule scenarios do, for `make demo`.
#
#   scripts/systemd-container.sh NAME IMAGE PUBLISH
#
# PUBLISH is a docker -p value such as 127.0.0.1:8080:80. Nothing happens when
# NAME already runs. CHANNELS_STACK_PRIVILEGED=true runs it privileged where
# the host allows that; otherwise it gets CAP_SYS_ADMIN and the host cgroups.
set -euo pipefail
name=${1:?name} image=${2:?image} publish=${3:?publish}
cache=${CHANNELS_STACK_CACHE:-/var/cache/channels-stack}
version=$(docker image inspect -f '{{.Id}}' "$image" >/dev/null && echo "${image##*:}")

if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" = true ]; then
  exit 0
fi
docker rm -f "$name" >/dev/null 2>&1 || true

priv=(--cap-add SYS_ADMIN)
if [ "${CHANNELS_STACK_PRIVILEGED:-false}" = true ]; then priv=(--privileged); fi
mkdir -p "$cache/apt-debian$version" "$cache/pip"
docker run -d --name "$name" --hostname "$name" "${priv[@]}" \
  --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
  --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
  -v "$cache/apt-debian$version:/var/cache/apt/archives:rw" \
  -v "$cache/pip:/var/cache/pip:rw" \
  -p "$publish" "$image" /lib/systemd/systemd >/dev/null

for _ in $(seq 1 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) exit 0 ;; esac
  sleep 1
done
echo "systemd in $name did not finish booting (state: ${state:-unknown})" >&2
exit 1
