#!/usr/bin/env bash
# `make bench-steps`: what one delivery costs on the default settings, and
# what each change to them buys. One systemd container converged with the
# demo inventory and nothing else (what `make demo` and a first deploy give);
# then each step below is converged on top of the one before it and measured
# in the same run, from inside the container's network namespace:
#
#   cost   server CPU per delivery (app, nginx, Redis) in a fan-out the stack
#          keeps up with: 1,000 clients in one room, one message a second
#   fanout 1,000 clients, one message every 200 ms: p50, p99, missed; then
#          rooms of BENCH_ROOM_SIZES while p99 stays within 100 ms
#   idle   memory per idle chat socket (each in a room) in app and nginx
#
# Results: bench/results/steps.json (one entry per step, in order) and the
# table printed at the end (python -m bench.steps_report).
#
#   BENCH_BEFORE_REV   git revision whose apps/chatdemo is the first step's
#                      app (default: the last one whose consumer encoded each
#                      broadcast once per recipient)
#   BENCH_ENCODE_REV   the second step's (default: the last one whose consumers
#                      kept Channels' per-message database check)
#   BENCH_DISPATCH_REV the third step's (default: the last one whose consumers
#                      kept an outbox queue and a writer task while idle)
#   BENCH_STEPS        the steps to run, comma separated (default: all)
#   BENCH_ROOM_SIZES   default 2000,3000
set -euo pipefail
cd "$(dirname "$0")/.."

name=${BENCH_CONTAINER:-channels-stack-steps}
image=${CHANNELS_STACK_IMAGE_12:-channels-stack/debian-systemd:12}
before_rev=${BENCH_BEFORE_REV:-776e313}
encode_rev=${BENCH_ENCODE_REV:-6198e7b}
dispatch_rev=${BENCH_DISPATCH_REV:-b7ee0f6}
rooms=${BENCH_ROOM_SIZES:-2000,3000}
out=bench/results/steps.json
work=$(mktemp -d)
trap 'rm -rf "$work"; docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

if [ "$(id -u)" != 0 ]; then
  echo "make bench-steps runs the client in the container's network namespace (nsenter): run it as root" >&2
  exit 1
fi

mkdir -p "$work/before" "$work/encode" "$work/dispatch" bench/results
git archive "$before_rev" apps/chatdemo | tar -x -C "$work/before"
git archive "$encode_rev" apps/chatdemo | tar -x -C "$work/encode"
git archive "$dispatch_rev" apps/chatdemo | tar -x -C "$work/dispatch"
# BENCH_PHASES=cost with BENCH_UPDATE=1 measures those phases again and keeps
# the other figures of each step from the last run.
phases=${BENCH_PHASES:-idle,cost,fanout}
[ "${BENCH_UPDATE:-0}" = 1 ] || rm -f "$out"

# step LABEL AGAINST DESCRIPTION EXTRA-VARS-JSON: converge site.yml with the
# extra variables (the bench client's origin always), then measure; the report
# compares the step with the step labelled AGAINST.
step() {
  local label=$1 against=$2 description=$3 vars=$4 log=$work/converge.log
  if [ -n "${BENCH_STEPS:-}" ] && [[ ",$BENCH_STEPS," != *",$label,"* ]]; then
    return 0
  fi
  echo "==> $label: $description"
  printf '%s' "$vars" | python -c '
import json, sys
extra = json.load(sys.stdin)
extra.setdefault("django_app_websocket_origins", ["http://localhost"])
json.dump(extra, open(sys.argv[1], "w"))' "$work/vars.json"
  ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i inventories/demo/hosts.yml \
    -e "ansible_host=$name" -e "@$work/vars.json" playbooks/site.yml >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    exit 1
  }
  nsenter -t "$pid" -n "$(command -v python)" -m bench.run --container "$name" --pid "$pid" \
    --out "$work/run.json" --layer "$label" --phases "$phases" --fanout-messages 100 \
    --room-sizes "$rooms"
  python - "$work/run.json" "$out" "$label" "$against" "$description" "$vars" <<'EOF'
import json, sys
from pathlib import Path
run, out, label, against, description, extra = sys.argv[1:7]
figures = json.loads(Path(run).read_text())
steps = json.loads(Path(out).read_text()) if Path(out).exists() else {"steps": []}
steps["machine"] = figures["machine"]
entry = next((s for s in steps["steps"] if s["label"] == label), None)
if entry is None:
    entry = {"label": label}
    steps["steps"].append(entry)
entry.update(against=against, description=description, vars=json.loads(extra))
phases = [p for p in ("cost", "fanout", "idle") if label in figures.get(p, {})]
entry.update({phase: figures[phase][label] for phase in phases})
entry.setdefault("measured", {}).update({phase: figures["machine"]["date"] for phase in phases})
Path(out).write_text(json.dumps(steps, indent=1) + "\n")
EOF
}

scripts/ensure-docker.sh
scripts/build-image.sh 12 "$image"
docker rm -f "$name" >/dev/null 2>&1 || true
scripts/systemd-container.sh "$name" 12 "127.0.0.1::80"
pid=$(docker inspect -f '{{.State.Pid}}' "$name")

sansio='"gunicorn_ws_protocol": "websockets-sansio"'
pubsub='"django_app_channel_layer_backend": "channels_redis.pubsub.RedisPubSubChannelLayer"'
step before "" "the defaults, the app encoding each broadcast once per recipient" \
  "{\"django_app_local_path\": \"$work/before/apps/chatdemo\", $sansio}"
step encode-once before "the app encodes a broadcast once" \
  "{\"django_app_local_path\": \"$work/encode/apps/chatdemo\", $sansio}"
step direct-dispatch encode-once "the app skips Channels' database check before each message" \
  "{\"django_app_local_path\": \"$work/dispatch/apps/chatdemo\", $sansio}"
step idle-outbox direct-dispatch \
  "the defaults: an idle socket holds no outbox, writer task or history" "{$sansio}"
step nginx-buffer-4k idle-outbox "nginx's buffer per websocket a memory page (4k) instead of 1k" \
  "{$sansio, \"nginx_websocket_buffer_size\": \"4k\"}"
step ws-legacy idle-outbox "uvicorn's older websockets protocol class" \
  '{"gunicorn_ws_protocol": "websockets"}'
step pubsub idle-outbox "RedisPubSubChannelLayer: a group message once per worker" "{$sansio, $pubsub}"
step pubsub-1-worker pubsub "RedisPubSubChannelLayer, one worker" "{$sansio, $pubsub, \"gunicorn_workers\": 1}"
step pubsub-4-workers pubsub "RedisPubSubChannelLayer, four workers" "{$sansio, $pubsub, \"gunicorn_workers\": 4}"
python -m bench.steps_report "$out"
