#!/usr/bin/env bash
# uTP (BEP 29) loopback download benchmark: spate vs libtorrent, both over uTP only, from the
# same libtorrent seeder that speaks uTP only (lt_peer.py LT_TRANSPORT=utp: TCP off both ways).
#
#   bench/utp.sh                      # 1 GiB, 3 rounds
#   ROUNDS=1 SIZE_MIB=256 bench/utp.sh
#
# The structure of bench/loopback.sh (same temp dir layout, same measure.py, same summary):
# one libtorrent seeder on 127.0.0.1, then for ROUNDS rounds spate (`--transport utp`) and a
# libtorrent leecher (uTP only) download it in turn, the order alternating, each into a
# freshly wiped folder, each copy compared with the source. Prints median MB/s, CPU seconds,
# peak RSS and RssAnon per downloader and the ratios spate/libtorrent. Everything stays on
# 127.0.0.1; no DHT, LSD, UPnP or NAT-PMP.
#
# Environment:
#   ROUNDS (3)  SIZE_MIB (1024)  PIECE_KIB (1024)  TIMEOUT (600 s per download)
#   SPATE       the spate binary (default: target/release/spate, built if missing)
#   BENCH_TMP   where the temp dir goes (default /var/tmp: on disk, not tmpfs)
#   KEEP=1      keep the temp dir (data, torrent, logs)
#   UTP_IMPL    spate's uTP implementation: rqbit (default) or own (`--utp-impl own`:
#               spate's own uTP with LEDBAT)
#   LOSSY=1     both downloaders reach the seeder through bench/udp_badlink.py, a relay that
#               delays every datagram 50 ms, drops 1% and lets 25% overtake (netem's
#               `delay 50ms loss 1% reorder 25%`; this kernel has no netem). Use a smaller
#               SIZE_MIB (e.g. 32).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PIECE_KIB=${PIECE_KIB:-1024}
TIMEOUT=${TIMEOUT:-600}
PY=/usr/bin/python3
LT="$REPO/crates/testkit/py/lt_peer.py"
MEASURE="$REPO/bench/measure.py"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

die() {
    echo "utp.sh: $*" >&2
    exit 1
}

# --- prerequisites ------------------------------------------------------------------------
"$PY" -c 'import libtorrent' 2>/dev/null ||
    die "python3-libtorrent for $PY is missing (apt-get install python3-libtorrent)"
if [ ! -x /usr/bin/time ]; then
    echo "installing the 'time' package for /usr/bin/time"
    $SUDO apt-get install -y time >/dev/null 2>&1 ||
        { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y time >/dev/null; } ||
        die "cannot install the 'time' package"
fi

if [ -z "${SPATE:-}" ]; then
    SPATE="${CARGO_TARGET_DIR:-$REPO/target}/release/spate"
    if [ ! -x "$SPATE" ]; then
        echo "building spate (release)..."
        cargo build --release -p spate --bin spate ||
            echo "WARNING: building spate failed; its rounds will be reported as failed"
    fi
fi

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/spate-bench.XXXXXX")
SEEDER_PID=""
cleanup() {
    if [ -n "${RELAY_PID:-}" ]; then
        kill -KILL -- "-$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
    fi
    if [ -n "$SEEDER_PID" ]; then
        kill -KILL -- "-$SEEDER_PID" 2>/dev/null || true
        wait "$SEEDER_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free TCP port on 127.0.0.1.
free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src" "$WORK/dl" "$WORK/logs"
DATA="$WORK/src/bench.bin"
TORRENT="$WORK/bench.torrent"
RESULTS="$WORK/results.jsonl"

echo "== making a ${SIZE_MIB} MiB file and a private v1 torrent (${PIECE_KIB} KiB pieces) in $WORK"
head -c "$SIZE" /dev/urandom >"$DATA"
"$PY" "$LT" create "$DATA" "$TORRENT" $((PIECE_KIB * 1024)) --private >"$WORK/logs/create.log" 2>&1 ||
    die "torrent creation failed: $(cat "$WORK/logs/create.log")"

# Every libtorrent process of this script (seeder and leecher) speaks uTP only.
export LT_TRANSPORT=utp
echo "== uTP only: libtorrent TCP off both ways, spate --transport utp"

SEED_PORT=$(free_port)
echo "== libtorrent seeder on 127.0.0.1:$SEED_PORT"
setsid "$PY" "$LT" seed "$TORRENT" "$WORK/src" "$SEED_PORT" - 86400 \
    >"$WORK/logs/seeder.stdout" 2>"$WORK/logs/seeder.stderr" &
SEEDER_PID=$!
for _ in $(seq 1 600); do
    grep -qx seeding "$WORK/logs/seeder.stdout" 2>/dev/null && break
    kill -0 "$SEEDER_PID" 2>/dev/null || die "the seeder exited: $(tail -n 5 "$WORK/logs/seeder.stderr")"
    sleep 0.1
done
grep -qx seeding "$WORK/logs/seeder.stdout" || die "the seeder did not finish checking in 60 s"

DIAL_PORT=$SEED_PORT
RELAY_PID=""
LINK=""
if [ "${LOSSY:-0}" = 1 ]; then
    DIAL_PORT=$(free_port)
    setsid "$PY" "$REPO/bench/udp_badlink.py" "$DIAL_PORT" "$SEED_PORT" 0.05 0.01 0.25 \
        >"$WORK/logs/relay.stdout" 2>"$WORK/logs/relay.stderr" &
    RELAY_PID=$!
    for _ in $(seq 1 100); do
        grep -qx ready "$WORK/logs/relay.stdout" 2>/dev/null && break
        sleep 0.1
    done
    grep -qx ready "$WORK/logs/relay.stdout" || die "the relay did not start"
    LINK=" (lossy link: 50 ms, 1% loss, 25% reorder)"
    echo "== lossy link: relay 127.0.0.1:$DIAL_PORT -> seeder, 50 ms delay, 1% loss, 25% reorder"
fi

run_spate() {
    local round=$1
    "$PY" "$MEASURE" run --label spate --log "$WORK/logs/spate-$round" --timeout "$TIMEOUT" \
        --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
        "$SPATE" download "$TORRENT" -o "$WORK/dl" --peer "127.0.0.1:$DIAL_PORT" \
        --listen 127.0.0.1:0 --no-seed --no-dht --transport utp \
        ${UTP_IMPL:+--utp-impl "$UTP_IMPL"} >>"$RESULTS"
}

run_libtorrent() {
    local round=$1
    "$PY" "$MEASURE" run --label libtorrent --log "$WORK/logs/libtorrent-$round" \
        --timeout "$TIMEOUT" --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
        "$PY" "$LT" leech "$TORRENT" "$WORK/dl" "$(free_port)" "$DIAL_PORT" "$TIMEOUT" \
        >>"$RESULTS"
}

show_last() {
    "$PY" -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["ok"]:
    mbps = int(sys.argv[2]) / 1e6 / r["wall_s"]
    print("   %-10s %7.1f MB/s  cpu %.2f s  peak RSS %.1f MiB  RssAnon %s MiB" % (
        r["label"], mbps, r["user_s"] + r["sys_s"], r["maxrss_kib"] / 1024,
        "%.1f" % (r["rssanon_peak_kib"] / 1024) if r.get("rssanon_peak_kib") else "n/a"))
else:
    print("   %-10s FAILED: %s" % (r["label"], r["error"]))
' "$RESULTS" "$SIZE"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS"
    if [ $((round % 2)) = 1 ]; then order="spate libtorrent"; else order="libtorrent spate"; fi
    for who in $order; do
        rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
        "run_$who" "$round"
        show_last
    done
done
rm -rf "$WORK/dl"

echo
echo "== summary: ${SIZE_MIB} MiB over uTP on 127.0.0.1$LINK from a libtorrent seeder (uTP only), $ROUNDS round(s), medians"
"$PY" "$MEASURE" summary --size "$SIZE" "$RESULTS" || true
echo
echo "spate: $SPATE (uTP implementation: ${UTP_IMPL:-rqbit})"
"$PY" -c 'import libtorrent; print("libtorrent", libtorrent.__version__)'
