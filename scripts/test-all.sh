#!/usr/bin/env bash
# `make test`: lint, the sample apps' tests, `make demo`, then every molecule scenario.
# The stages run TEST_JOBS at a time (default 2, one per core: a converge
# waits on round trips to its hosts more than it computes, so two overlap
# well); TEST_JOBS=1 runs them one after the other with their output on the
# terminal. Every stage runs even when another fails; the run fails if any did.
# Ends with one line counting the tests that passed and failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# The scenarios and their order, longest first: molecule/scenarios.txt.
scenarios=${SCENARIOS:-$(grep -v '^#' molecule/scenarios.txt | awk 'NF {print $1}' | tr '\n' ' ')}
logdir=${TEST_LOG_DIR:-.cache/test-logs}
jobs=${TEST_JOBS:-2}
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "TEST_JOBS must be a positive number, not '$jobs'" >&2; exit 2; }
# Molecule wraps output to the terminal width; wide lines keep a test's name
# and its result on one line, so the summary below can find them.
export COLUMNS=${COLUMNS:-250}
mkdir -p "$logdir"
rm -f "$logdir"/*.rc "$logdir/.queue"

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

run() {  # run NAME: one stage's command
  case $1 in
    lint) make --no-print-directory lint ;;
    unit-tests) cd tests/unit && python -m pytest -q -p no:cacheprovider ;;
    app-tests) cd apps/chatdemo && python -m pytest -q -p no:cacheprovider ;;
    app-tests-wsgisample) cd apps/wsgisample && python -m pytest -q -p no:cacheprovider ;;
    readme-demo) readme_demo ;;
    molecule-*) molecule test -s "${1#molecule-}" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

stage() {  # stage NAME: run it, keep its log and exit code, say how it went
  local name=$1 log="$logdir/$1.log" start rc
  echo "==> $name started"
  start=$(date +%s)
  if [ "$jobs" = 1 ]; then
    (run "$name") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  else
    (run "$name") >"$log" 2>&1
    rc=$?
  fi
  echo "$rc" >"$logdir/$name.rc"
  if [ "$rc" -ne 0 ]; then
    echo "==> $name FAILED after $(( $(date +%s) - start )) s (log: $log)"
  else
    echo "==> $name passed in $(( $(date +%s) - start )) s"
  fi
}

# The queue: the cheap stages first (a broken lint shows within a minute),
# then the scenarios in their file's order; each worker takes the next stage
# when its last one ends.
stages=(lint unit-tests app-tests app-tests-wsgisample readme-demo)
for s in $scenarios; do stages+=("molecule-$s"); done
printf '%s\n' "${stages[@]}" >"$logdir/.queue"

next_stage() {  # print the next stage and take it off the queue
  (
    flock 9
    local first
    first=$(head -n 1 "$logdir/.queue")
    [ -n "$first" ] || exit 1
    tail -n +2 "$logdir/.queue" >"$logdir/.queue.new" && mv "$logdir/.queue.new" "$logdir/.queue"
    echo "$first"
  ) 9>"$logdir/.queue.lock"
}

worker() {
  local name
  while name=$(next_stage); do stage "$name"; done
}

total_start=$(date +%s)
for ((i = 0; i < jobs; i++)); do worker & done
wait

count() {  # add the pytest summary of a log to the totals
  local line p f e
  line=$(sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' | tail -n 1)
  p=$(grep -Eo '[0-9]+ passed' <<<"$line" | cut -d' ' -f1)
  f=$(grep -Eo '[0-9]+ failed' <<<"$line" | cut -d' ' -f1)
  e=$(grep -Eo '[0-9]+ errors?' <<<"$line" | cut -d' ' -f1)
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0}))
}

passed=0 failed=0 stages_failed=()
for name in "${stages[@]}"; do
  count "$logdir/$name.log"
  rc=$(cat "$logdir/$name.rc" 2>/dev/null || echo "did not run")
  [ "$rc" = 0 ] || stages_failed+=("$name")
done

echo
echo "make test took $(( $(date +%s) - total_start )) s ($jobs at a time)"
if [ ${#stages_failed[@]} -gt 0 ]; then
  echo "failed stages: ${stages_failed[*]}"
  for name in "${stages_failed[@]}"; do  # what failed, without opening the logs
    echo "--- $name: failed tests and tasks ($logdir/$name.log)"
    sed 's/\x1b\[[0-9;]*m//g' "$logdir/$name.log" |
      grep -E '(FAILED|ERROR).*\.py::|\.py::.*(FAILED|ERROR)|^E  |fatal: \[|CRITICAL' | head -n 40
    if [ "$jobs" != 1 ]; then  # the log was not on the terminal: its end, too
      echo "--- $name: the end of its log"
      sed 's/\x1b\[[0-9;]*m//g' "$logdir/$name.log" | tail -n 60
    fi
  done
  # A stage that failed before its tests ran still counts as a failure.
  [ "$failed" -gt 0 ] || failed=${#stages_failed[@]}
fi
echo "tests: $passed passed, $failed failed"
[ ${#stages_failed[@]} -eq 0 ]
