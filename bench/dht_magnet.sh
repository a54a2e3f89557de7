#!/usr/bin/env bash
# DHT benchmark: from a bare magnet link to the metadata, to the first verified piece and to
# the whole download, spate vs libtorrent, in one run on a 20-node loopback DHT.
#
#   bench/dht_magnet.sh                  # 5 rounds, 64 MiB
#   ROUNDS=9 SIZE_MIB=16 bench/dht_magnet.sh
#
# Builds spate (release) outside, then runs bench/dht_magnet.py inside a fresh network
# namespace that has only `lo` (every address is in 127.0.9.0/24; nothing else is reachable),
# removing the namespace afterwards. See bench/dht_magnet.py for what is timed and how.
#
# Environment: ROUNDS (5)  SIZE_MIB (64)  SPATE (the binary; default target/release/spate,
# built)  BENCH_TMP (/var/tmp)  KEEP=1 keeps the temp dir with the logs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
ROUNDS=${ROUNDS:-5}
SIZE_MIB=${SIZE_MIB:-64}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo -n"

die() {
    echo "dht_magnet.sh: $*" >&2
    exit 1
}

/usr/bin/python3 -c 'import libtorrent' 2>/dev/null ||
    die "python3-libtorrent for /usr/bin/python3 is missing (apt-get install python3-libtorrent)"
if [ -z "${SPATE:-}" ]; then
    echo "building spate (release)..."
    cargo build --release -p spate --bin spate >&2 || die "building spate failed"
    SPATE="${CARGO_TARGET_DIR:-$REPO/target}/release/spate"
fi

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/spate-dht-bench.XXXXXX")
NS=spate-dhtbench-$$
cleanup() {
    $SUDO ip netns del "$NS" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
$SUDO ip netns add "$NS" || die "cannot create network namespace $NS (needs root or sudo)"
$SUDO ip netns exec "$NS" ip link set lo up
echo "spate: $SPATE; $ROUNDS rounds of a $SIZE_MIB MiB torrent; namespace $NS (lo only)"
$SUDO ip netns exec "$NS" env -u SPATE_NO_DHT /usr/bin/python3 "$REPO/bench/dht_magnet.py" \
    --spate "$SPATE" --work "$WORK" --rounds "$ROUNDS" --size "$SIZE_MIB"
