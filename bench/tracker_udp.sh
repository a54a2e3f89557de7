#!/usr/bin/env bash
# UDP tracker benchmark: spate tracker vs aquatic_udp, same load generator, same thread count.
#
#   bench/tracker_udp.sh [SECONDS] [THREADS]      (defaults: 15 s, 1 server thread)
#
# For each server, on 127.0.0.1 only:
#   1. aquatic_udp_load_test (crates.io) for SECONDS: responses/s and announce responses/s
#      (its mix: 50% connect, 50% announce, ~1% scrape; 1M torrents, 2M peers by default);
#   2. examples/udp_load (in this repo) for SECONDS: closed-loop announces with 32 in flight,
#      announces/s and p50/p99 latency measured per request;
#   3. the server's CPU seconds (utime+stime over both runs) and peak RSS (VmHWM).
# Then the ratios spate/aquatic. Needs: cargo install aquatic_udp aquatic_udp_load_test.
# If Debian's opentracker is installed, it runs as a third reference with the closed-loop load
# only (it is built in whitelist mode: the load's 100k info-hashes are whitelisted; the aquatic
# load test's random hashes would all be refused). It is single-threaded here.
# Environment: SPATE_SERVE (server binary; default the `serve` example, the same entry point
# as `spate tracker`), CARGO_TARGET_DIR, LOAD_WORKERS (default 1).
set -euo pipefail

SECS=${1:-15}
THREADS=${2:-1}
LOAD_WORKERS=${LOAD_WORKERS:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/spate-tracker-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

for t in aquatic_udp aquatic_udp_load_test; do
    command -v $t >/dev/null || { echo "missing $t: cargo install aquatic_udp aquatic_udp_load_test" >&2; exit 1; }
done

echo "building (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p tracker --example serve --example udp_load)
SERVE=${SPATE_SERVE:-$TARGET/release/examples/serve}
LOAD=$TARGET/release/examples/udp_load

PORT_SPATE=$((20000 + RANDOM % 10000))
PORT_AQ=$((PORT_SPATE + 1))

cat > "$WORK/spate.toml" <<TOML
http = []
udp = ["127.0.0.1:$PORT_SPATE"]
udp_threads = $THREADS
udp_rate_limit = 0
numwant_max = 30
interval = 900
max_swarms = 2000000
max_peers = 4000000
TOML

aquatic_udp -p > "$WORK/aquatic.toml"
sed -i -e "s/^socket_workers = .*/socket_workers = $THREADS/" \
       -e "s/^address = .*/address = \"127.0.0.1:$PORT_AQ\"/" \
       -e "s/^prometheus_endpoint_address = .*/prometheus_endpoint_address = \"127.0.0.1:0\"/" \
       "$WORK/aquatic.toml"

load_config() { # port
    aquatic_udp_load_test -p > "$WORK/load-$1.toml"
    sed -i -e "s/^server_address = .*/server_address = \"127.0.0.1:$1\"/" \
           -e "s/^workers = .*/workers = $LOAD_WORKERS/" \
           -e "s/^duration = .*/duration = $SECS/" \
           "$WORK/load-$1.toml"
}

cpu_secs() { # pid -> utime+stime in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

run_one() { # name port cmd...
    local name=$1 port=$2; shift 2
    "$@" > "$WORK/$name.server.log" 2>&1 &
    local pid=$!
    sleep 1
    kill -0 $pid || { echo "$name did not start:"; cat "$WORK/$name.server.log"; exit 1; }
    load_config "$port"
    # The load tester panics on exit after printing its report; the report is still valid.
    if [ "$name" != opentracker ]; then
        timeout $((SECS + 30)) aquatic_udp_load_test -c "$WORK/load-$port.toml" > "$WORK/$name.aq.log" 2>&1 || true
    else
        : > "$WORK/$name.aq.log"
    fi
    timeout $((SECS + 30)) "$LOAD" --server "127.0.0.1:$port" --duration "$SECS" --threads "$LOAD_WORKERS" \
        > "$WORK/$name.lat.log" 2>&1 || true
    local cpu rss
    cpu=$(cpu_secs $pid)
    rss=$(awk '/VmHWM/ { print $2 }' /proc/$pid/status)
    kill $pid; wait $pid 2>/dev/null || true
    local total announce
    total=$(grep -m1 "Responses in:" "$WORK/$name.aq.log" | grep -oE '[0-9]+(\.[0-9]+)?' | head -1 || echo 0)
    announce=$(grep -m1 "Announce responses:" "$WORK/$name.aq.log" | grep -oE '[0-9]+(\.[0-9]+)?' | head -1 || echo 0)
    local lat
    lat=$(tail -1 "$WORK/$name.lat.log")
    echo "$name total_responses_per_s=${total:-0} announce_responses_per_s=${announce:-0} $lat cpu_s=$cpu peak_rss_kib=$rss"
}

echo "== UDP tracker benchmark: $SECS s per run, $THREADS server thread(s), $LOAD_WORKERS load worker(s) =="
S=$(run_one spate "$PORT_SPATE" "$SERVE" --config "$WORK/spate.toml")
echo "$S"
A=$(run_one aquatic "$PORT_AQ" aquatic_udp -c "$WORK/aquatic.toml")
echo "$A"
field() { echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
if command -v opentracker > /dev/null; then
    PORT_OT=$((PORT_SPATE + 2))
    mkdir -p "$WORK/ot" && chmod 755 "$WORK" "$WORK/ot"
    "$LOAD" --print-hashes 1 > "$WORK/ot/whitelist.txt" && chmod 644 "$WORK/ot/whitelist.txt"
    printf 'listen.udp 127.0.0.1:%s\ntracker.rootdir %s\ntracker.user nobody\naccess.whitelist ./whitelist.txt\n' \
        "$PORT_OT" "$WORK/ot" > "$WORK/ot.conf"
    O=$(run_one opentracker "$PORT_OT" opentracker -f "$WORK/ot.conf")
    echo "$O"
fi
echo "ratio spate/aquatic:" \
    "aquatic-load announces/s $(ratio "$(field "$S" announce_responses_per_s)" "$(field "$A" announce_responses_per_s)")," \
    "closed-loop announces/s $(ratio "$(field "$S" announces_per_s)" "$(field "$A" announces_per_s)")," \
    "p99 $(ratio "$(field "$S" p99_us)" "$(field "$A" p99_us)")," \
    "cpu $(ratio "$(field "$S" cpu_s)" "$(field "$A" cpu_s)")," \
    "peak rss $(ratio "$(field "$S" peak_rss_kib)" "$(field "$A" peak_rss_kib)")"
