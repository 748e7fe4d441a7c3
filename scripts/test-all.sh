#!/usr/bin/env bash
# `make test`: lint, the sample apps' tests, `make demo`, then every molecule scenario.
# Every stage runs even when an earlier one fails; the run fails if any did.
# Ends with one line counting the tests that passed and failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# The scenarios and their order: molecule/scenarios.txt.
scenarios=${SCENARIOS:-$(grep -v '^#' molecule/scenarios.txt | awk 'NF {print $1}' | tr '\n' ' ')}
logdir=${TEST_LOG_DIR:-.cache/test-logs}
# Molecule wraps output to the terminal width; wide lines keep a test's name
# and its result on one line, so the summary below can find them.
export COLUMNS=${COLUMNS:-250}
mkdir -p "$logdir"
passed=0 failed=0 stages_failed=()

count() {  # add the pytest summary of a log to the totals
  local line p f e
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' | tail -n 1)
  p=$(grep -Eo '[0-9]+ passed' <<<"$line" | cut -d' ' -f1)
  f=$(grep -Eo '[0-9]+ failed' <<<"$line" | cut -d' ' -f1)
  e=$(grep -Eo '[0-9]+ errors?' <<<"$line" | cut -d' ' -f1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0}))
}

stage() {  # stage NAME COMMAND...
  local name=$1 log="$logdir/$1.log" start rc
  shift
  echo "==> $name"
  start=$(date +%s)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  count "$log"
  if [ "$rc" -ne 0 ]; then
    stages_failed+=("$name")
    echo "==> $name FAILED after $(( $(date +%s) - start )) s (log: $log)"
  else
    echo "==> $name passed in $(( $(date +%s) - start )) s"
  fi
}

total_start=$(date +%s)
stage lint make --no-print-directory lint
stage unit-tests bash -c 'cd tests/unit && python -m pytest -q -p no:cacheprovider'
stage app-tests bash -c 'cd apps/chatdemo && python -m pytest -q -p no:cacheprovider'
stage app-tests-wsgisample bash -c 'cd apps/wsgisample && python -m pytest -q -p no:cacheprovider'
# The README's first command as a user runs it, in a container of its own:
# the stack converged and the smoke check's websockets through nginx, then,
# as the README says, a second run that changes nothing; then removed.
readme_demo() {
  local out rc=0
  export DEMO_CONTAINER=channels-stack-test-demo DEMO_PORT=${TEST_DEMO_PORT:-18081}
  make --no-print-directory demo || rc=1
  if [ "$rc" = 0 ]; then
    out=$(make --no-print-directory demo 2>&1) || rc=1
    echo "$out"
    grep -q 'changed=0 (no changes)' <<<"$out" || { echo "the second make demo changed something" >&2; rc=1; }
  fi
  make --no-print-directory demo-destroy >/dev/null
  return "$rc"
}
stage readme-demo readme_demo
for s in $scenarios; do
  stage "molecule-$s" molecule test -s "$s"
done

echo
echo "make test took $(( $(date +%s) - total_start )) s"
if [ ${#stages_failed[@]} -gt 0 ]; then
  echo "failed stages: ${stages_failed[*]}"
  for name in "${stages_failed[@]}"; do  # what failed, without scrolling back
    echo "--- $name: failed tests and tasks"
    sed 's/\x1b\[[0-9;]*m//g' "$logdir/$name.log" |
      grep -E '(FAILED|ERROR).*\.py::|\.py::.*(FAILED|ERROR)|^E  |fatal: \[|CRITICAL' | head -n 40
  done
  # A stage that failed before its tests ran still counts as a failure.
  [ "$failed" -gt 0 ] || failed=${#stages_failed[@]}
fi
echo "tests: $passed passed, $failed failed"
[ ${#stages_failed[@]} -eq 0 ]
