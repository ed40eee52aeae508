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
ninja -C build-fuzz --quiet fuzz-contract fuzz-text fuzz-csv fuzz-dsl fuzz-props fuzz-jtree fuzz-template fuzz-token
for t in contract text csv dsl props jtree template token; do
    mkdir -p "tests/fuzz/corpus/$t"
    case $t in
        contract) cp -n contracts/*.json "tests/fuzz/corpus/$t/" ;;
        text) printf '2024-02-29T12:00:00+05:30' > tests/fuzz/corpus/$t/ts1
              printf 'Z\xc3\xb6e \xe2\x9c\x93 "q"\n' > tests/fuzz/corpus/$t/utf8 ;;
        csv) printf '\001external_id,event,occurred_at,order_id,amount,currency,created_at\nc1,order_created,,o1,2.5,INR,2026-01-01T00:00:00Z\nc2,visit,2026-01-02,,,,\n' > tests/fuzz/corpus/$t/events
             printf '\000external_id,email,email_consent,city,ltv\nc1,a@b.co,unsubscribed,Pune,3\nc1,,subscribed,"Goa, IN",x\n' > tests/fuzz/corpus/$t/contacts ;;
        jtree) printf '{"batch":[{"type":"track","userId":42,"event":"a\\u00e9\\ud83d\\ude00","properties":{"v":-1.5e-7,"n":null,"l":[true,false,{}]}}],"sentAt":"2026-01-01T00:00:00Z"}' > tests/fuzz/corpus/$t/batch ;;
        props) printf '{"a":"P\\u00e9ne\\n","b":[1,{"c":"]"}],"":-2.5e3,"x\\ny":true}' > tests/fuzz/corpus/$t/obj ;;
        template) printf '<p>Hi {{ first_name | capitalize | default: "there" }},</p>\n<a href="{{ unsubscribe_url }}">bye</a> &amp; {{ evil|upcase }}{{ x | default: \x27it\\\x27s\x27 }}' > tests/fuzz/corpus/$t/basic ;;
        token) printf 'dQAAAAAAAAAqAAAAAAAAIykAAAAA.AAAAAAAAAAAAAAAAAAAAAA' > tests/fuzz/corpus/$t/shape ;;
        dsl) cp -n bench/segments/*.json "tests/fuzz/corpus/$t/"
             printf '{"op":"OR","rules":[{"type":"attribute","field":"nick","op":"contains","value":"σίσ"},{"type":"behavior","event":"app_open","op":"did_event","within_days":7,"where":[{"field":"screen","op":"in","value":["home"]},{"field":"ok","op":"neq","value":true}]}]}' > tests/fuzz/corpus/$t/where ;;
    esac
    (cd build-fuzz && ./fuzz-$t -max_total_time="$SECS" -max_len=4096 "../tests/fuzz/corpus/$t" 2>&1 | tail -n 3)
done
