#!/usr/bin/env bash
# bench/run.sh -- every benchmark, at the sizes docs/benchmarks.md reports.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== CSV import (bench/import.sh)"
bench/import.sh "${BENCH_EVENTS:-20000000}" "${BENCH_CONTACTS:-1000000}"
