#!/usr/bin/env bash
# Start a systemd container the way the molecule scenarios do, for `make demo`
# and `make bench`: molecule/resources/create.yml says how, in one place.
#
#   scripts/systemd-container.sh NAME DEBIAN PUBLISH
#
# DEBIAN is 12 or 13 (the image is CHANNELS_STACK_IMAGE_<n>); PUBLISH a docker
# -p value such as 127.0.0.1:8080:80. Nothing happens when NAME already runs.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?name} debian=${2:?debian version} publish=${3:?publish}

if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" != true ]; then
  docker rm -f "$name" >/dev/null 2>&1 || true
  platform=$(printf '{"name": "%s", "debian": %s, "published_ports": ["%s"]}' "$name" "$debian" "$publish")
  # localhost runs the docker modules with the controller's own Python (the
  # one with the Docker SDK), not whatever python3 interpreter discovery finds.
  ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i localhost, -c local \
    -e 'ansible_python_interpreter={{ ansible_playbook_python }}' molecule/resources/create.yml \
    -e "{\"molecule_yml\": {\"platforms\": [$platform]}}" >/dev/null
fi

for _ in $(seq 1 60); do
  state=$(docker exec "$name" systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded) exit 0 ;; esac
  sleep 1
done
echo "systemd in $name did not finish booting (state: ${state:-unknown})" >&2
exit 1
