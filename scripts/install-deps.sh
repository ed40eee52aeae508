#!/usr/bin/env bash
# scripts/install-deps.sh -- install the Debian and npm packages EqueEngage needs.
#
# Idempotent: checks what is present first and only calls apt-get / npm for
# what is missing, so `make demo` and `make test` on a prepared machine cost a
# fraction of a second here. Needs root (or sudo) only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and runtime libraries (the -dev packages pull in the shared libraries), and the
# sqlite3 shell that `make demo` fills its demo CRM with.
BUILD_PKGS="pkg-config meson ninja-build gcc libmicrohttpd-dev libjansson-dev libsqlite3-dev
 libcsv-dev libinih-dev libsodium-dev zlib1g-dev unicode-data
 libroaring-dev libpq-dev libpcre2-dev sqlite3"
# The send half: GMime builds the messages, libcurl speaks SMTP to the providers.
BUILD_PKGS="$BUILD_PKGS libgmime-3.0-dev libcurl4-openssl-dev"
# Delivery webhooks: OpenSSL's libcrypto checks SendGrid's ECDSA and SNS's RSA signatures
# (libsodium has neither); ICU knows the time zones of reports.
BUILD_PKGS="$BUILD_PKGS libssl-dev libicu-dev"
# Test-only packages (PostgreSQL's server: the CRM sync tests start throwaway clusters;
# clang-format, Debian's clang-format-14, for scripts/lint.sh).
TEST_PKGS="libcriterion-dev sqlite3 postgresql-15 clang-format"
# Postfix only for its /usr/sbin/smtp-sink and smtp-source (the SMTP provider's tests and
# the benchmark): preseeded "No configuration", it writes no main.cf and starts nothing.
TEST_PKGS="$TEST_PKGS postfix"
# curl, the command line: the client that proves the SMTP harness (tests/e2e/smtp_harness.test.mjs).
TEST_PKGS="$TEST_PKGS curl"
# openssl, the command line: the SNS certificate of tests/e2e/webhooks.test.mjs.
TEST_PKGS="$TEST_PKGS openssl"
LINT_PKGS="clang-format"

want="$BUILD_PKGS"
case "${1:-}" in
--test) want="$want $TEST_PKGS" ;;
--lint) want="$LINT_PKGS" ;;
esac

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "install-deps: installing Debian packages:$missing" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    export DEBIAN_FRONTEND=noninteractive
    case " $missing " in
    *" postfix "*)
        echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections ;;
    esac
    # An old package list finds nothing: refresh it once, then install.
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# A node_modules that is a symbolic link (a git worktree sharing another's) is left alone:
# npm ci would empty the folder it points to.
if [ "${1:-}" = "--test" ] && [ -f tests/e2e/package-lock.json ] && [ ! -L tests/e2e/node_modules ]; then
    if [ ! -d tests/e2e/node_modules ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
        echo "install-deps: installing npm packages for tests/e2e" >&2
        (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
    fi
fi
