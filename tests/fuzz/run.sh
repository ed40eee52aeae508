#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] -- builds the libFuzzer targets with clang (ASan+UBSan) and
# runs each for SECONDS (default 60), corpus in tests/fuzz/corpus/NAME (seeded from
# contracts/ and a few timestamps). A crash leaves its input in build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-60}
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz --buildtype=debugoptimized -Dtests=disabled -Dfuzz=true \
        -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C build-fuzz --quiet fuzz-contract fuzz-text
for t in contract text; do
    mkdir -p "tests/fuzz/corpus/$t"
    case $t in
        contract) cp -n contracts/*.json "tests/fuzz/corpus/$t/" ;;
        text) printf '2024-02-29T12:00:00+05:30' > tests/fuzz/corpus/$t/ts1
              printf 'Z\xc3\xb6e \xe2\x9c\x93 "q"\n' > tests/fuzz/corpus/$t/utf8 ;;
    esac
    (cd build-fuzz && ./fuzz-$t -max_total_time="$SECS" -max_len=4096 "../tests/fuzz/corpus/$t" 2>&1 | tail -n 3)
done
