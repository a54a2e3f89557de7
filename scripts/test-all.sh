#!/usr/bin/env bash
# Runs every test of spate, as CI does (.ci/run calls this script):
#
#   1. installs the Debian packages the interop tests need, if any is missing
#      (python3-libtorrent transmission-cli transmission-daemon aria2 opentracker mktorrent
#      iproute2 python3-venv; chromium chromium-driver python3-selenium for the web UI's
#      browser test, fonts-noto-color-emoji for its screenshots, ffmpeg for streaming), and cargo-fuzz if missing; then the Python venv of the daemon
#      tests (PyPI transmission-rpc, qbittorrent-api, prometheus-client), if missing, at
#      $SPATE_TEST_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/spate-test-venv), whose
#      python the tests get as SPATE_TEST_PYTHON;
#   2. builds every test outside the network namespace (cargo may fetch crates there);
#   3. runs `cargo test --workspace` inside a fresh network namespace that has only `lo` up,
#      with SPATE_REQUIRE_INTEROP=1 so a missing client fails instead of skipping
#      (falls back to running without a namespace, with a loud warning, where `ip netns`
#      is not permitted);
#   4. builds every fuzz target and runs each for FUZZ_SECONDS (default 20) seconds;
#   5. cargo fmt --check and cargo clippy -D warnings.
#
# Every step runs even if an earlier one failed; the script prints a summary and exits
# non-zero if any step failed. Its last line is the test count:
#   tests: N passed, N failed, N skipped
#
# Environment: FUZZ_SECONDS (20), SKIP_FUZZ=1 (skip step 4), CARGO_TARGET_DIR (respected),
# SPATE_TEST_VENV (where the venv lives).
# shellcheck disable=SC2317  # step functions are called indirectly, through run_step
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
# anyhow errors in failing tests without a backtrace dump (panics keep RUST_BACKTRACE).
export RUST_LIB_BACKTRACE=${RUST_LIB_BACKTRACE:-0}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/spate-test-all.XXXXXX")
TEST_LOG=$LOGDIR/cargo-test.log
NS=""
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo -n"
fi

cleanup() {
    if [ -n "$NS" ]; then
        $SUDO ip netns del "$NS" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RESULTS=()
FAILED=0
STEP_NOTE=""

# run_step NAME FUNCTION: runs FUNCTION, records ok/FAIL with its duration.
# (Functions run in an `if`, where `set -e` is off: every step checks its own commands.)
run_step() {
    local name=$1 fn=$2 start=$SECONDS rc=0
    STEP_NOTE=""
    echo
    echo "================ $name ================"
    if "$fn"; then rc=0; else rc=$?; fi
    local took=$((SECONDS - start))
    if [ "$rc" = 0 ]; then
        RESULTS+=("ok      $name (${took} s)${STEP_NOTE:+: $STEP_NOTE}")
    else
        RESULTS+=("FAILED  $name (${took} s, exit $rc)${STEP_NOTE:+: $STEP_NOTE}")
        FAILED=1
    fi
}

warn() {
    echo
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! WARNING: $*"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo
}

# --- 1. packages ------------------------------------------------------------------------

PACKAGES=(python3-libtorrent transmission-cli transmission-daemon aria2 opentracker mktorrent nginx-light iproute2
    python3-venv chromium chromium-driver python3-selenium fonts-noto-color-emoji ffmpeg tcpdump
    microsocks dante-server tinyproxy
    # The port mapping test (crates/spate/tests/portmap.rs): a real UPnP/NAT-PMP/PCP gateway.
    miniupnpd miniupnpd-nftables nftables)

missing_packages() {
    local m=()
    /usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || m+=(python3-libtorrent)
    command -v transmission-cli >/dev/null 2>&1 || m+=(transmission-cli)
    command -v transmission-remote >/dev/null 2>&1 || m+=(transmission-cli)
    command -v transmission-daemon >/dev/null 2>&1 || m+=(transmission-daemon)
    command -v aria2c >/dev/null 2>&1 || m+=(aria2)
    command -v opentracker >/dev/null 2>&1 || m+=(opentracker)
    command -v mktorrent >/dev/null 2>&1 || m+=(mktorrent)
    # The web seed tests start nginx themselves (crates/spate/tests/webseed.rs); Debian puts
    # it in /usr/sbin.
    [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || m+=(nginx-light)
    command -v ip >/dev/null 2>&1 || m+=(iproute2)
    # The capture of an encrypted transfer (crates/spate/tests/encryption.rs).
    command -v tcpdump >/dev/null 2>&1 || [ -x /usr/sbin/tcpdump ] || [ -x /usr/bin/tcpdump ] || m+=(tcpdump)
    # The SOCKS5 proxy tests (crates/spate/tests/proxy.rs).
    command -v microsocks >/dev/null 2>&1 || m+=(microsocks)
    # SOCKS5 UDP ASSOCIATE (crates/spate/tests/proxy_udp.rs): dante, in /usr/sbin.
    [ -x /usr/sbin/danted ] || command -v danted >/dev/null 2>&1 || m+=(dante-server)
    # HTTP CONNECT proxies (crates/spate/tests/proxy_http.rs).
    command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || m+=(tinyproxy)
    # The port mapping test: miniupnpd (nftables build) as the gateway, nft to set its tables up.
    command -v miniupnpd >/dev/null 2>&1 || m+=(miniupnpd miniupnpd-nftables)
    command -v nft >/dev/null 2>&1 || m+=(nftables)
    # `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
    /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || m+=(python3-venv)
    # The web UI's test (crates/spate/tests/webui.rs): headless Chromium through selenium.
    command -v chromium >/dev/null 2>&1 || m+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || m+=(chromium-driver)
    /usr/bin/python3 -c 'import selenium' >/dev/null 2>&1 || m+=(python3-selenium)
    [ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || m+=(fonts-noto-color-emoji)
    # Streaming (crates/spate/tests/stream.rs): ffmpeg makes a video, ffprobe reads it.
    command -v ffprobe >/dev/null 2>&1 || m+=(ffmpeg)
    echo "${m[*]:-}"
}

install_packages() {
    local missing
    missing=$(missing_packages)
    if [ -z "$missing" ]; then
        echo "all interop packages present"
    else
        echo "missing: $missing; installing ${PACKAGES[*]}"
        # Keep the packages' services (e.g. transmission-daemon's) from starting on install:
        # they would run with their default settings (DHT on, all interfaces).
        local policy=/usr/sbin/policy-rc.d added_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy" && added_policy=1
        fi
        local rc=0
        $SUDO apt-get update || rc=$?
        if [ "$rc" = 0 ]; then
            $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                "${PACKAGES[@]}" || rc=$?
        fi
        if [ "$added_policy" = 1 ]; then
            $SUDO rm -f "$policy"
        fi
        [ "$rc" = 0 ] || return "$rc"
        missing=$(missing_packages)
        if [ -n "$missing" ]; then
            echo "still missing after apt-get install: $missing"
            return 1
        fi
    fi
    if command -v cargo-fuzz >/dev/null 2>&1; then
        echo "cargo-fuzz present"
    else
        echo "installing cargo-fuzz"
        cargo install cargo-fuzz --locked || return $?
    fi
}

# The daemon tests drive `spate daemon` with the clients *arr apps and scripts use, from
# PyPI: a venv made by Debian's python3 with --system-site-packages (so libtorrent stays
# importable from it). It lives outside the work tree and survives between runs; the tests,
# which run without network, find its python through SPATE_TEST_PYTHON (make_test_cmd).
SPATE_TEST_VENV=${SPATE_TEST_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/spate-test-venv}
# PyPI package and the module it provides.
VENV_PACKAGES=(transmission-rpc:transmission_rpc qbittorrent-api:qbittorrentapi
    prometheus-client:prometheus_client)

missing_venv_packages() {
    local m=() pm
    for pm in "${VENV_PACKAGES[@]}"; do
        "$SPATE_TEST_VENV/bin/python" -c "import ${pm#*:}" >/dev/null 2>&1 || m+=("${pm%%:*}")
    done
    echo "${m[*]:-}"
}

install_venv() {
    local missing
    if ! "$SPATE_TEST_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "making the test venv $SPATE_TEST_VENV"
        rm -rf "$SPATE_TEST_VENV"
        mkdir -p "$(dirname "$SPATE_TEST_VENV")" || return $?
        /usr/bin/python3 -m venv --system-site-packages "$SPATE_TEST_VENV" || return $?
    fi
    missing=$(missing_venv_packages)
    if [ -z "$missing" ]; then
        echo "test venv $SPATE_TEST_VENV has every package"
        return 0
    fi
    echo "installing into $SPATE_TEST_VENV: $missing"
    # shellcheck disable=SC2086  # one word per package
    "$SPATE_TEST_VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
        $missing || return $?
    missing=$(missing_venv_packages)
    if [ -n "$missing" ]; then
        echo "still missing from the venv after pip install: $missing"
        return 1
    fi
}

# --- 2. build ---------------------------------------------------------------------------

build_tests() {
    cargo test --workspace --no-run
}

# --- 3. tests in a network namespace ------------------------------------------------------

# TEST_CMD: the command that runs the tests, as the invoking user, with the env they need.
TEST_CMD=()
make_test_cmd() {
    # SPATE_NO_DHT=1: no spate process joins a DHT unless its test gives it loopback nodes
    # (the DHT tests clear it for the processes they start); never the public routers.
    # SPATE_NO_LSD=1: no spate process multicasts LSD announces except in the LSD test.
    # SPATE_NO_PORTMAP=1: none asks a gateway to forward ports except in the port mapping test.
    local envs=(SPATE_REQUIRE_INTEROP=1 SPATE_NO_DHT=1 SPATE_NO_LSD=1 SPATE_NO_PORTMAP=1 "PATH=$PATH" "HOME=${HOME:-/root}"
        "SPATE_TEST_PYTHON=$SPATE_TEST_VENV/bin/python"
        "RUST_LIB_BACKTRACE=$RUST_LIB_BACKTRACE" "CARGO_TERM_COLOR=$CARGO_TERM_COLOR")
    local v
    for v in CARGO_HOME RUSTUP_HOME CARGO_TARGET_DIR RUST_BACKTRACE SPATE_KEEP_TMP SPATE_LOG TMPDIR; do
        if [ -n "${!v:-}" ]; then envs+=("$v=${!v}"); fi
    done
    TEST_CMD=()
    if [ "$(id -u)" != 0 ]; then
        # `ip netns exec` needs root; the tests themselves run as the user again.
        TEST_CMD=(sudo -n -u "$(id -un)")
    fi
    TEST_CMD+=(env "${envs[@]}" cargo test --workspace --offline --no-fail-fast)
}

run_tests() {
    local ns=spate-test-$$ rc=0
    make_test_cmd
    if $SUDO ip netns add "$ns" 2>"$LOGDIR/netns.err"; then
        NS=$ns
        if $SUDO ip netns exec "$ns" ip link set lo up 2>>"$LOGDIR/netns.err"; then
            echo "running the tests in network namespace $ns (only lo is up)"
            $SUDO ip netns exec "$ns" "${TEST_CMD[@]}" 2>&1 | tee "$TEST_LOG" || rc=$?
            $SUDO ip netns del "$ns" 2>/dev/null || true
            NS=""
            STEP_NOTE="in network namespace $ns"
            return "$rc"
        fi
        $SUDO ip netns del "$ns" 2>/dev/null || true
        NS=""
    fi
    warn "cannot create a network namespace ($(tr '\n' ' ' <"$LOGDIR/netns.err")); running the tests WITHOUT one. Every test still talks only to 127.0.0.1, but Transmission's start-up IPv6 probe may reach the real interface."
    STEP_NOTE="WITHOUT a network namespace (ip netns not permitted)"
    "${TEST_CMD[@]}" 2>&1 | tee "$TEST_LOG" || rc=$?
    return "$rc"
}

# --- 4. fuzzing ---------------------------------------------------------------------------

run_fuzz() {
    if [ "${SKIP_FUZZ:-0}" = 1 ]; then
        STEP_NOTE="skipped (SKIP_FUZZ=1)"
        return 0
    fi
    if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        warn "no nightly toolchain: fuzz targets not built or run (rustup toolchain install nightly)"
        STEP_NOTE="SKIPPED: no nightly toolchain"
        return 0
    fi
    cargo +nightly fuzz build || return $?
    local targets t n=0 bad=()
    targets=$(cargo +nightly fuzz list) || return $?
    for t in $targets; do
        echo "--- fuzz $t (${FUZZ_SECONDS} s)"
        if cargo +nightly fuzz run "$t" -- -max_total_time="$FUZZ_SECONDS" >"$LOGDIR/fuzz-$t.log" 2>&1; then
            grep -E '^Done [0-9]+ runs' "$LOGDIR/fuzz-$t.log" | tail -n 1 || tail -n 2 "$LOGDIR/fuzz-$t.log"
            n=$((n + 1))
        else
            echo "fuzz target $t FAILED; last lines of $LOGDIR/fuzz-$t.log:"
            tail -n 60 "$LOGDIR/fuzz-$t.log"
            bad+=("$t")
        fi
    done
    if [ "${#bad[@]}" != 0 ]; then
        STEP_NOTE="failed: ${bad[*]} (inputs in fuzz/artifacts/)"
        return 1
    fi
    STEP_NOTE="$n targets, ${FUZZ_SECONDS} s each"
}

# --- 5. fmt and clippy ------------------------------------------------------------------

run_fmt() {
    cargo fmt --all -- --check
}

run_clippy() {
    cargo clippy --workspace --all-targets -- -D warnings
}

# --- run --------------------------------------------------------------------------------

TOTAL_START=$SECONDS
run_step "install packages" install_packages
run_step "install test venv" install_venv
run_step "build tests" build_tests
run_step "cargo test (network namespace)" run_tests
run_step "fuzz" run_fuzz
run_step "cargo fmt --check" run_fmt
run_step "cargo clippy -D warnings" run_clippy

# Test counts from cargo's "test result:" lines.
passed=0 failed=0 ignored=0
if [ -f "$TEST_LOG" ]; then
    while read -r p f i; do
        passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
    done < <(sed -n -E 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$TEST_LOG")
fi

echo
echo "================ summary ($((SECONDS - TOTAL_START)) s; logs in $LOGDIR) ================"
for r in "${RESULTS[@]}"; do
    echo "  $r"
done
if [ -f "$TEST_LOG" ]; then
    grep -E '^test .* FAILED$' "$TEST_LOG" | sed 's/^/  failed: /' || true
fi
if [ "$FAILED" != 0 ]; then
    echo "RESULT: FAILED"
else
    echo "RESULT: all steps passed"
fi
echo "tests: $passed passed, $failed failed, $ignored skipped"
exit "$FAILED"
