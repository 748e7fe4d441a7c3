#!/usr/bin/env bash
# `make demo`: the whole stack in a local systemd container, then a smoke check.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${DEMO_CONTAINER:-channels-stack-demo}
port=${DEMO_PORT:-8080}
image=${CHANNELS_STACK_IMAGE_12:-channels-stack/debian-systemd:12}

scripts/ensure-docker.sh
scripts/build-image.sh 12 "$image"
scripts/systemd-container.sh "$name" "$image" "127.0.0.1:$port:80"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> converging $name with playbooks/site.yml"
start=$(date +%s)
ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i inventories/demo/hosts.yml \
  -e "ansible_host=$name" playbooks/site.yml | tee "$log"
changed=$(grep -Eo 'changed=[0-9]+' "$log" | tail -n 1 | cut -d= -f2)
echo "==> converge took $(( $(date +%s) - start )) s, changed=$changed$([ "$changed" = 0 ] && echo ' (no changes)')"

python scripts/smoke.py "http://localhost:$port"
echo
echo "The demo chat runs at http://localhost:$port/  (remove it with: make demo-destroy)"
