#!/usr/bin/env bash
# tests/run.sh -- runs every suite and ends with one line: "N passed, N failed[, N skipped]".
#
# lint: scripts/lint.sh, each step (format, banned, time-literals) one check.
# unit: Criterion binaries built with ASan+UBSan in build-asan/ (leaks fail a test).
# e2e:  node:test suites driving the ASan-built engage binary over the CLI and HTTP.
set -uo pipefail
cd "$(dirname "$0")/.."
passed=0 failed=0 skipped=0
logdir=$(mktemp -d /tmp/engage-tests.XXXXXX)

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== lint (scripts/lint.sh)"
scripts/lint.sh >"$logdir/lint.log" 2>&1
sed 's/^/  /' "$logdir/lint.log"
p=$(grep -c '^PASS ' "$logdir/lint.log")
f=$(grep -c '^FAIL ' "$logdir/lint.log")
passed=$((passed + p)); failed=$((failed + f))
if [ $((p + f)) -eq 0 ]; then failed=$((failed + 1)); fi

echo "== unit (Criterion, ASan+UBSan)"
# Each binary once; the segment comparison a second time with merges forced every few
# events (ENGAGE_SEGMENT_MERGE_MIN), so both catch-up paths of the index are compared.
runs=()
for t in build-asan/t-*; do
    [ -f "$t" ] && [ -x "$t" ] && runs+=("$t")
done
[ -x build-asan/t-segment_random ] && runs+=("build-asan/t-segment_random ENGAGE_SEGMENT_MERGE_MIN=8")
for run in "${runs[@]}"; do
    read -r t envset <<<"$run"
    name=$(basename "$t")${envset:+ (${envset})}
    env $envset "$t" --jobs=2 >"$logdir/${name// /_}.log" 2>&1
    rc=$?
    line=$(grep -a 'Synthesis:' "$logdir/${name// /_}.log" | tail -n 1)
    tested=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$line")
    pass=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    if [ -z "$tested" ]; then
        echo "  $name: no summary (exit $rc)"; cat "$logdir/${name// /_}.log"; failed=$((failed + 1)); continue
    fi
    fail=$((tested - pass))
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
    passed=$((passed + pass)); failed=$((failed + fail))
    printf '  %-16s %3d passed, %d failed\n' "$name" "$pass" "$fail"
    if [ "$fail" -ne 0 ]; then grep -a -v '^\[----\]' "$logdir/${name// /_}.log" | tail -n 60; fi
done

echo "== e2e (node:test)"
export ENGAGE_BIN="$PWD/build-asan/engage"
export ENGAGE_RELEASE_BIN="$PWD/build/engage" # the memory bounds of tests/e2e/abuse.test.mjs
node --test --test-concurrency=2 --test-reporter=spec --test-reporter-destination=stdout \
     --test-reporter=tap --test-reporter-destination="$logdir/e2e.tap" tests/e2e/*.test.mjs
rc=$?
p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$logdir/e2e.tap" | tail -n 1)
f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$logdir/e2e.tap" | tail -n 1)
s=$(sed -n 's/^# skipped \([0-9]*\)/\1/p' "$logdir/e2e.tap" | tail -n 1)
c=$(sed -n 's/^# cancelled \([0-9]*\)/\1/p' "$logdir/e2e.tap" | tail -n 1)
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${c:-0})); skipped=$((skipped + ${s:-0}))
if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && [ "${c:-0}" -eq 0 ]; then failed=$((failed + 1)); fi

rm -rf "$logdir"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
