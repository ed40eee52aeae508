#!/usr/bin/env bash
# scripts/lint.sh -- the house style checks that a machine can make (docs/testing.md).
#
# Each step prints one line, "PASS lint/NAME" or "FAIL lint/NAME", followed on failure by
# what to fix (file:line); tests/run.sh counts each step as one check. Exit status: the
# number of failed steps (0: all pass). `scripts/lint.sh format` runs one step.
#
#   format        every tracked .c/.h under src/ and tests/ is as clang-format makes it
#                 (the repository's .clang-format; `make format` fixes it)
#   banned        no call of a function listed in src/core/banned.h in src/, tests/,
#                 bench/ or tools/ (the header stops it at compile time in what meson
#                 builds; this names the line, in every file, before a build)
#   time-literals no literal 86400000 or 3600000 (a day, an hour in ms) outside
#                 src/core/core.h: use DAY_MS, HOUR_MS, MIN_MS, SEC_MS
set -uo pipefail
cd "$(dirname "$0")/.."

CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
BANNED='strcpy|strcat|strncpy|sprintf|vsprintf|gets|strtok|atoi|atol|atoll|gmtime|localtime|ctime|asctime'
failed=0

report()
{ # report NAME FINDINGS: PASS when FINDINGS is empty, else FAIL and the findings
    if [ -z "$2" ]; then
        echo "PASS lint/$1"
    else
        echo "FAIL lint/$1"
        sed 's/^/    /' <<<"$2" | head -n 40
        [ "$(wc -l <<<"$2")" -le 40 ] || echo "    ... ($(wc -l <<<"$2") lines)"
        failed=$((failed + 1))
    fi
}

# C source lines without their comments: "file:line:text", for the grep-based steps.
# Good enough for this tree: block comments are stripped line by line, string literals
# are kept (a banned name inside a string is not a call).
code_lines()
{
    git ls-files -z "$@" | xargs -0 -r awk '
        FNR == 1 { inc = 0 }
        {
            s = $0; out = ""
            while (s != "") {
                if (inc) {
                    i = index(s, "*/"); if (!i) { s = ""; break }
                    s = substr(s, i + 2); inc = 0
                } else {
                    i = index(s, "/*"); j = index(s, "//")
                    if (j && (!i || j < i)) { out = out substr(s, 1, j - 1); s = ""; break }
                    if (!i) { out = out s; s = ""; break }
                    out = out substr(s, 1, i - 1); s = substr(s, i + 2); inc = 1
                }
            }
            print FILENAME ":" FNR ":" out
        }'
}

step_format()
{
    local files out
    if ! command -v "$CLANG_FORMAT" >/dev/null; then
        report format "$CLANG_FORMAT not found (scripts/install-deps.sh --test installs it)"
        return
    fi
    mapfile -t files < <(git ls-files --cached --others --exclude-standard 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h')
    out=$("$CLANG_FORMAT" --dry-run --Werror "${files[@]}" 2>&1 |
        sed -n 's/^\([^ :]*\):\([0-9]*\):[0-9]*: error: code should be clang-formatted.*/\1:\2/p' |
        awk -F: '!seen[$1]++ { n++; first[n] = $0 } { c[$1]++ }
                 END { for (i = 1; i <= n; i++) { split(first[i], f, ":");
                       printf "%s: %d place(s) differ from clang-format, first at line %s\n",
                              f[1], c[f[1]], f[2] } }')
    [ -z "$out" ] || out="$out
(make format rewrites them; or clang-format -i FILE)"
    report format "$out"
}

step_banned()
{
    local out
    out=$(code_lines 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' 'tools/*.c' |
        grep -v '^src/core/banned\.h:' |
        grep -E "(^|[^A-Za-z0-9_.>])($BANNED)[[:space:]]*\(" |
        sed -E 's/^([^:]*:[0-9]*):[[:space:]]*/\1: /')
    [ -z "$out" ] || out="$out
(banned by src/core/banned.h: use snprintf/buf_printf, memcpy with a length, strtok_r,
 parse_i64 or strtol with checks, gmtime_r/localtime_r)"
    report banned "$out"
}

step_time_literals()
{
    local out
    out=$(code_lines 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c' |
        grep -v '^src/core/core\.h:' |
        grep -E '(^|[^0-9A-Za-z_])(86400000|3600000)([^0-9]|$)' |
        sed -E 's/^([^:]*:[0-9]*):[[:space:]]*/\1: /')
    [ -z "$out" ] || out="$out
(a day or an hour in ms: DAY_MS, HOUR_MS from src/core/core.h)"
    report time-literals "$out"
}

steps=${*:-format banned time-literals}
for s in $steps; do
    case $s in
    format) step_format ;;
    banned) step_banned ;;
    time-literals) step_time_literals ;;
    *)
        echo "lint.sh: unknown step '$s' (format, banned, time-literals)" >&2
        exit 64
        ;;
    esac
done
exit "$failed"
