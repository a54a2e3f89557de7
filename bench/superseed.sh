#!/usr/bin/env bash
# Super-seeding benchmark (BEP 16): how much an initial seeder uploads before a swarm of
# LEECHERS libtorrent leechers is complete, with and without super-seeding, for a spate
# seeder and a libtorrent seeder, in one run.
#
#   bench/superseed.sh                   # 32 MiB, 4 leechers, seeder capped at 2 MB/s
#   SIZE_MIB=64 RATE=4000000 bench/superseed.sh
#
# The seeder (127.0.0.1) uploads at most RATE bytes/s; the leechers (127.0.0.11, .12, ...,
# each its own address) dial the seeder and each other and trade at full speed. The seeder's
# upload is what the leechers downloaded minus what they uploaded to each other. Printed per
# seeder: that upload in copies of the data (1.00 is the ideal: every byte leaves the seeder
# once) and the time until the last leecher is done. Every copy is compared with the source.
# Everything stays on 127.0.0.x; no DHT, LSD, UPnP, NAT-PMP or uTP (spate: --no-dht --no-lsd).
#
# Environment: SIZE_MIB (32)  PIECE_KIB (256)  LEECHERS (4)  RATE (2000000)  TIMEOUT (300)
#   SPATE (default target/release/spate, built if missing)  BENCH_TMP (/var/tmp)  KEEP=1
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-32}
PIECE_KIB=${PIECE_KIB:-256}
LEECHERS=${LEECHERS:-4}
RATE=${RATE:-2000000}
TIMEOUT=${TIMEOUT:-300}
BENCH=superseed.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src" "$WORK/logs"
DATA="$WORK/src/swarm.bin"
TORRENT="$WORK/swarm.torrent"
head -c "$SIZE" /dev/urandom >"$DATA"
"$PY" "$LT" create "$DATA" "$TORRENT" $((PIECE_KIB * 1024)) >"$WORK/logs/create.log" 2>&1 ||
    die "torrent creation failed: $(cat "$WORK/logs/create.log")"
echo "== ${SIZE_MIB} MiB, ${PIECE_KIB} KiB pieces, $LEECHERS libtorrent leechers, seeder capped at $RATE B/s"

# run_swarm LABEL: starts the seeder (by LABEL), the leechers, waits for all; prints a line.
run_swarm() {
    local label=$1 seed_port start i
    seed_port=$(free_port 127.0.0.1)
    case $label in
    spate | spate-super)
        local extra=()
        [ "$label" = spate-super ] && extra=(--super-seed)
        setsid "$SPATE" seed "$TORRENT" "$DATA" --listen "127.0.0.1:$seed_port" --no-dht --no-lsd --no-port-mapping \
            --no-trackers --max-up "$RATE" "${extra[@]}" \
            >"$WORK/logs/$label-seed.out" 2>"$WORK/logs/$label-seed.err" &
        BG_PIDS+=($!)
        ;;
    libtorrent | libtorrent-super)
        local ss=0
        [ "$label" = libtorrent-super ] && ss=1
        LT_SUPER_SEED=$ss setsid "$PY" "$LT" seed "$TORRENT" "$WORK/src" "$seed_port" - "$TIMEOUT" \
            --upload-limit "$RATE" >"$WORK/logs/$label-seed.out" 2>"$WORK/logs/$label-seed.err" &
        BG_PIDS+=($!)
        ;;
    esac
    sleep 1
    local ports=() addrs=()
    for i in $(seq 1 "$LEECHERS"); do
        addrs+=("127.0.0.$((10 + i))")
        ports+=("$(free_port "127.0.0.$((10 + i))")")
    done
    start=$(date +%s.%N)
    local lpids=()
    for i in $(seq 0 $((LEECHERS - 1))); do
        local peers="127.0.0.1:$seed_port" j
        for j in $(seq 0 $((LEECHERS - 1))); do
            [ "$j" = "$i" ] || peers="$peers,${addrs[$j]}:${ports[$j]}"
        done
        rm -rf "$WORK/dl-$i" && mkdir -p "$WORK/dl-$i"
        LT_BIND=${addrs[$i]} setsid "$PY" "$LT" leech "$TORRENT" "$WORK/dl-$i" "${ports[$i]}" \
            "$peers" "$TIMEOUT" >"$WORK/logs/$label-leech-$i.out" 2>"$WORK/logs/$label-leech-$i.err" &
        lpids+=($!)
    done
    local failed=0
    for p in "${lpids[@]}"; do wait "$p" || failed=1; done
    local took
    took=$(echo "$(date +%s.%N) - $start" | bc)
    stop_all
    if [ "$failed" = 1 ]; then
        printf '   %-17s FAILED (a leecher timed out; logs in %s)\n' "$label" "$WORK/logs"
        return
    fi
    for i in $(seq 0 $((LEECHERS - 1))); do
        cmp -s "$DATA" "$WORK/dl-$i/swarm.bin" || die "$label: leecher $i's copy differs"
        rm -rf "$WORK/dl-$i"
    done
    cat "$WORK"/logs/"$label"-leech-*.out | "$PY" -c '
import sys
down = up = 0
for line in sys.stdin:
    if line.startswith("finished "):
        f = dict(kv.split("=") for kv in line.split()[1:])
        down += int(f["downloaded"]); up += int(f["uploaded"])
size, label, took = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
print("   %-17s seeder uploaded %6.2f copies (%d MiB)   swarm done in %5.1f s" % (
    label, (down - up) / size, (down - up) >> 20, took))
' "$SIZE" "$label" "$took"
}

for label in spate spate-super libtorrent libtorrent-super; do
    run_swarm "$label"
done
echo "spate: $SPATE"
"$PY" -c 'import libtorrent; print("libtorrent", libtorrent.__version__)'
