#!/usr/bin/env bash
# `make demo`: the whole stack in a local systemd container, then a smoke check.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${DEMO_CONTAINER:-channels-stack-demo}
port=${DEMO_PORT:-8080}
image=${CHANNELS_STACK_IMAGE_12:-channels-stack/debian-systemd:12}
scheme=http inner=80 extra=()
# DEMO_TLS=1 (make demo-tls): its own container, https on its own port with a
# self-signed certificate made on the container. No HSTS: a browser would
# then force https on every localhost port, the plain demo's too.
if [ "${DEMO_TLS:-0}" = 1 ]; then
  name=${DEMO_TLS_CONTAINER:-channels-stack-demo-tls}
  port=${DEMO_TLS_PORT:-8443}
  scheme=https inner=443
  extra=(-e "{\"nginx_tls_mode\": \"selfsigned\", \"nginx_hsts_max_age\": 0,
    \"django_app_secure_proxy\": true, \"django_app_hsts_seconds\": 0,
    \"django_app_csrf_trusted_origins\": [\"https://localhost:$port\", \"https://127.0.0.1:$port\"],
    \"django_app_websocket_origins\": [\"https://localhost:$port\", \"https://127.0.0.1:$port\"]}")
fi

scripts/ensure-docker.sh
scripts/build-image.sh 12 "$image"
scripts/systemd-container.sh "$name" 12 "127.0.0.1:$port:$inner"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> converging $name with playbooks/site.yml"
start=$(date +%s)
ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i inventories/demo/hosts.yml \
  -e "ansible_host=$name" "${extra[@]}" playbooks/site.yml | tee "$log"
changed=$(grep -Eo 'changed=[0-9]+' "$log" | tail -n 1 | cut -d= -f2)
echo "==> converge took $(( $(date +%s) - start )) s, changed=$changed$([ "$changed" = 0 ] && echo ' (no changes)')"

if [ "$scheme" = https ]; then
  # The smoke check trusts exactly the certificate the container made.
  docker exec "$name" cat /etc/nginx/tls/channels-app.crt >"$log.crt"
  SSL_CERT_FILE="$log.crt" python scripts/smoke.py "https://localhost:$port"
  rm -f "$log.crt"
  echo
  echo "The demo chat runs at https://localhost:$port/ (self-signed certificate; remove it with: make demo-destroy)"
else
  python scripts/smoke.py "http://localhost:$port"
  echo
  echo "The demo chat runs at http://localhost:$port/  (remove it with: make demo-destroy)"
fi
