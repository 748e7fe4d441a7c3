#!/usr/bin/env bash
# `make bench`: converge a demo stack in its own systemd container (timing a
# cold converge, an idempotent re-run and an app-only deploy), then run the
# websocket benchmarks against it from inside its network namespace and write
# bench/results/latest.json and docs/benchmarks.md with its charts.
#
#   BENCH_CONTAINER  container name (default channels-stack-bench)
#   BENCH_REUSE=1    keep a running container, converge it again and keep the
#                    cold, idempotent and deploy timings of the previous run
#   BENCH_ARGS       more arguments for bench/run.py (e.g. --quick)
set -euo pipefail
cd "$(dirname "$0")/.."

name=${BENCH_CONTAINER:-channels-stack-bench}
image=${CHANNELS_STACK_IMAGE_12:-channels-stack/debian-systemd:12}
port=${BENCH_PORT:-8090}
out=bench/results
mkdir -p "$out"

if [ "$(id -u)" != 0 ]; then
  echo "make bench runs the client in the container's network namespace (nsenter): run it as root" >&2
  exit 1
fi

converge() { # converge LABEL PLAYBOOK [ansible-playbook options]: time it, count its tasks
  local label=$1 playbook=$2 log start end
  shift 2
  log=$(mktemp)
  echo "==> $label: $playbook $*"
  start=$(date +%s.%N)
  ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i inventories/demo/hosts.yml \
    -e "ansible_host=$name" -e @bench/vars.yml "$@" "$playbook" >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  python bench/converge_timing.py "$label" "$playbook" "$start" "$end" "$log" "$out/converge.json"
  rm -f "$log"
}

scripts/ensure-docker.sh
scripts/build-image.sh 12 "$image"
if [ "${BENCH_REUSE:-0}" = 1 ] && [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null || true)" = true ]; then
  echo "==> reusing $name"
  converge reconverge playbooks/site.yml
else
  docker rm -f "$name" >/dev/null 2>&1 || true
  scripts/systemd-container.sh "$name" 12 "127.0.0.1:$port:80"
  rm -f "$out/converge.json" "$out/latest.json"
  converge cold playbooks/site.yml
  converge idempotent playbooks/site.yml
  # A new release of the same code: a real deploy (release, switch, restart).
  converge deploy playbooks/deploy.yml -e "django_app_version=bench$(date +%s)"
  converge reconverge playbooks/site.yml
fi

pid=$(docker inspect -f '{{.State.Pid}}' "$name")
python="$(command -v python)"
bench() { # bench [bench.run options]: the client, in the container's network namespace
  nsenter -t "$pid" -n "$python" -m bench.run --container "$name" --pid "$pid" \
    --converge "$out/converge.json" --out "$out/latest.json" ${BENCH_ARGS:-} "$@"
}

echo "==> benchmarks with the role defaults (pid $pid)"
bench --phases scale,echo,fanout,burst --layer core
converge deflate playbooks/site.yml --tags gunicorn -e gunicorn_ws_per_message_deflate=true
bench --phases deflate,fanout --layer core-deflate --compression
converge pubsub playbooks/site.yml \
  -e django_app_channel_layer_backend=channels_redis.pubsub.RedisPubSubChannelLayer
bench --phases fanout,burst --layer pubsub
converge defaults playbooks/site.yml
python -m bench.report "$out/latest.json" docs/benchmarks.md docs/img
