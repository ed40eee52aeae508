#!/usr/bin/env bash
# tests/run.sh -- runs every suite and ends with one line: "N passed, N failed[, N skipped]".
#
# lint: scripts/lint.sh, each step (format, banned, time-literals) one check.
# unit: Criterion binaries built with ASan+UBSan in build-asan/ (leaks fail a test).
# e2e:  node:test suites driving the ASan-built engage binary over the CLI and HTTP.
# tsan: the unit binaries and the threaded e2e suites again, built with ThreadSanitizer
#       in build-tsan/ (docs/testing.md).
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

# unit_run LABEL ENVSET BINARY [ARGS...]: one Criterion binary, its tests counted; on a
# failure the end of its log (with the seed of a random test) is shown.
unit_run()
{
    local label=$1 envset=$2 t=$3 log rc line tested pass fail
    shift 3
    log="$logdir/${label//[^A-Za-z0-9_.-]/_}.log"
    env $envset "$t" --jobs=2 "$@" >"$log" 2>&1
    rc=$?
    line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
    tested=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$line")
    pass=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
    if [ -z "$tested" ]; then
        echo "  $label: no summary (exit $rc)"; cat "$log"; failed=$((failed + 1)); return
    fi
    fail=$((tested - pass))
    if [ "$rc" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; fi
    passed=$((passed + pass)); failed=$((failed + fail))
    printf '  %-32s %3d passed, %d failed\n' "$label" "$pass" "$fail"
    if [ "$fail" -ne 0 ]; then
        grep -a -v '^\[----\]' "$log" | tail -n 60
        grep -a -m 3 'seed=' "$log" | sed 's/^/  (reproduce with ENGAGE_TEST_SEED) /'
    fi
}

# e2e_run LABEL SUITE...: node:test suites against $ENGAGE_BIN, two at a time.
e2e_run()
{
    local label=$1 tap="$logdir/$1.tap" rc p f s c
    shift
    node --test --test-concurrency=2 --test-reporter=spec --test-reporter-destination=stdout \
         --test-reporter=tap --test-reporter-destination="$tap" "$@"
    rc=$?
    p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$tap" | tail -n 1)
    f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$tap" | tail -n 1)
    s=$(sed -n 's/^# skipped \([0-9]*\)/\1/p' "$tap" | tail -n 1)
    c=$(sed -n 's/^# cancelled \([0-9]*\)/\1/p' "$tap" | tail -n 1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${c:-0})); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && [ "${c:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
}

echo "== unit (Criterion, ASan+UBSan)"
# Each binary once; the segment comparison a second time with merges forced every few
# events (ENGAGE_SEGMENT_MERGE_MIN), so both catch-up paths of the index are compared.
for t in build-asan/t-*; do
    [ -f "$t" ] && [ -x "$t" ] && unit_run "$(basename "$t")" "" "$t"
done
[ -x build-asan/t-segment_random ] &&
    unit_run "t-segment_random (ENGAGE_SEGMENT_MERGE_MIN=8)" "ENGAGE_SEGMENT_MERGE_MIN=8" build-asan/t-segment_random

echo "== e2e (node:test)"
export ENGAGE_BIN="$PWD/build-asan/engage"
export ENGAGE_RELEASE_BIN="$PWD/build/engage" # the memory bounds of tests/e2e/abuse.test.mjs
e2e_run e2e tests/e2e/*.test.mjs

# ThreadSanitizer (build-tsan/): a data race, a lock-order inversion or a misused mutex
# stops the process (halt_on_error) and fails the test. Every unit binary (the segment
# comparison only its case 9, the one that evaluates on 4 threads, with fewer trees:
# the rest runs single-threaded, 10x slower here) and the e2e suites whose servers run
# the most threads at once: tracking (HTTP threads and the ingest writer), segments (the
# scheduler and threaded evaluation), sync (the sync worker beside the API), campaigns and
# smtp_tls (the dispatcher's coordinator and sender threads). Not
# crash.test.mjs: its 200,000-row import alone takes ~100 s under TSan, and the import's
# reader and writer threads are t-csv's. tests/tsan.supp: third-party false positives only.
tsan_start=$(date +%s)
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
echo "== unit (Criterion, ThreadSanitizer)"
for t in build-tsan/t-*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    case $(basename "$t") in
    t-segment_random)
        unit_run "tsan/t-segment_random (case 9)" "SEGMENT_TREES=10" "$t" --filter='segment_random/case9' ;;
    *) unit_run "tsan/$(basename "$t")" "" "$t" ;;
    esac
done
echo "== e2e (node:test, ThreadSanitizer)"
# Reports go to files (a server's stderr is not always shown): each one fails the run.
mkdir -p "$logdir/tsan"
TSAN_OPTIONS="$TSAN_OPTIONS:log_path=$logdir/tsan/report" ENGAGE_BIN="$PWD/build-tsan/engage" \
    e2e_run e2e-tsan tests/e2e/tracking.test.mjs tests/e2e/segments.test.mjs tests/e2e/sync.test.mjs \
    tests/e2e/campaigns.test.mjs tests/e2e/smtp_tls.test.mjs tests/e2e/engagement.test.mjs
for r in "$logdir"/tsan/report.*; do
    [ -f "$r" ] || continue
    echo "  ThreadSanitizer report from engage (pid ${r##*.}):"; cat "$r"; failed=$((failed + 1))
done
echo "== ThreadSanitizer part: $(($(date +%s) - tsan_start)) s"

rm -rf "$logdir"
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
