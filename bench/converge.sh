#!/usr/bin/env bash
# `make bench-converge`: how long Ansible takes on one server reached the way
# users reach theirs, over SSH as a sudo user (sshd and the account made as in
# molecule/production/prepare.yml), with the project's ansible.cfg: a cold
# site.yml, no-op re-runs, and app-only deploys of the unchanged release. Each
# run's slowest tasks are printed and every figure is kept in
# bench/results/converge-ssh.json.
#
#   BENCH_CONVERGE_RUNS=3     no-op runs and unchanged deploys measured
#   BENCH_CONVERGE_DEBIAN=12  the server's Debian
#   BENCH_MITOGEN=1           also measure with Mitogen's strategy (pip
#                             installs the mitogen docs/operations.md names
#                             into the project's venv)
#   BENCH_KEEP=1              leave the container running afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

name=${BENCH_CONVERGE_CONTAINER:-channels-stack-converge}
debian=${BENCH_CONVERGE_DEBIAN:-12}
runs=${BENCH_CONVERGE_RUNS:-3}
out=bench/results/converge-ssh.json
# The version docs/operations.md tells users to install.
MITOGEN_VERSION=0.3.54
work=$(mktemp -d)
trap 'rm -rf "$work"; [ "${BENCH_KEEP:-0}" = 1 ] || docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
mkdir -p bench/results
rm -f "$out"

scripts/ensure-docker.sh
scripts/build-image.sh "$debian" "channels-stack/debian-systemd:$debian"
docker rm -f "$name" >/dev/null 2>&1 || true
scripts/systemd-container.sh "$name" "$debian" "127.0.0.1::80"

echo "==> sshd, sudo and the deploy account on $name"
ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i "$name," \
  -c community.docker.docker -e "molecule_ephemeral_directory=$work" \
  molecule/production/prepare.yml >"$work/prepare.log" 2>&1 || {
  tail -n 30 "$work/prepare.log" >&2
  exit 1
}

cat >"$work/hosts.yml" <<EOF
all:
  hosts:
    server:
      ansible_host: $(cat "$work/address")
      ansible_user: deploy
      ansible_become: true
      ansible_ssh_private_key_file: $work/id_ed25519
      ansible_ssh_common_args: -o UserKnownHostsFile=$work/known_hosts
  vars:
    python_pip_ca_bundle: ${CHANNELS_STACK_PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  children:
    redis_servers: {hosts: {server: {}}}
    app_servers: {hosts: {server: {}}}
    loadbalancers: {hosts: {server: {}}}
EOF

timed() { # timed LABEL PLAYBOOK [ansible-playbook options]
  local label=$1 playbook=$2 log=$work/run.log start end
  shift 2
  start=$(date +%s.%N)
  ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ansible-playbook -i "$work/hosts.yml" \
    "$@" "$playbook" >"$log" 2>&1 || {
    tail -n 40 "$log" >&2
    exit 1
  }
  end=$(date +%s.%N)
  python bench/converge_timing.py "$label" "$playbook" "$start" "$end" "$log" "$out"
  # profile_tasks' summary: the five slowest tasks of the run.
  grep -E -- '-{3,} [0-9.]+s$' "$log" | head -n 5 | sed 's/^/      /'
}

series() { # series PREFIX [ansible-playbook options]
  local prefix=$1
  shift
  for n in $(seq 1 "$runs"); do timed "${prefix}noop-$n" playbooks/site.yml "$@"; done
  for n in $(seq 1 "$runs"); do timed "${prefix}deploy-unchanged-$n" playbooks/deploy.yml "$@"; done
}

echo "==> over SSH as deploy with sudo ($runs runs each)"
timed cold playbooks/site.yml
series ""

if [ "${BENCH_MITOGEN:-0}" = 1 ]; then
  pip install --quiet "mitogen==$MITOGEN_VERSION"
  strategies=$(python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy
  echo "==> the same with Mitogen ($strategies)"
  ANSIBLE_STRATEGY_PLUGINS=$strategies ANSIBLE_STRATEGY=mitogen_linear series "mitogen-"
fi
python -m bench.converge_report "$out"
