#!/usr/bin/env bash
# Loopback download benchmark: spate vs libtorrent, from the same libtorrent seeder, in one run.
#
#   bench/loopback.sh                 # 1 GiB, 3 rounds
#   ROUNDS=5 SIZE_MIB=256 bench/loopback.sh
#
# Makes a SIZE_MIB file in a temp dir on disk, a private v1 torrent of it (libtorrent,
# PIECE_KIB pieces), starts one libtorrent seeder on 127.0.0.1, then for ROUNDS rounds lets
# spate and a libtorrent leecher download it in turn (the order alternates each round), each
# into a freshly wiped folder (nothing else is dropped between rounds: the seeder's file stays
# in the page cache for both). Each download runs under /usr/bin/time; its /proc status is
# sampled for VmHWM and RssAnon (libtorrent maps files into memory, so its RSS counts file
# pages: compare RssAnon for heap). Each copy is compared with the source.
# Prints median MB/s, CPU seconds (user+sys), peak RSS and RssAnon per downloader and the
# ratios spate/libtorrent. Everything stays on 127.0.0.1; no DHT, LSD, UPnP, NAT-PMP or uTP.
#
# Environment:
#   ROUNDS (3)  SIZE_MIB (1024)  PIECE_KIB (1024)  TIMEOUT (300 s per download)
#   FORMAT      the torrent libtorrent makes: v1 (default), v2 (BEP 52 only) or hybrid
#               (bench/v2.sh runs FORMAT=v2)
#   SPATE       the spate binary (default: target/release/spate, built if missing)
#   BENCH_TMP   where the temp dir goes (default /var/tmp: on disk, not tmpfs)
#   KEEP=1      keep the temp dir (data, torrent, logs)
#   ENCRYPTION=rc4  every peer forces protocol encryption with RC4 (libtorrent pe_forced and
#               pe_rc4 on the seeder and the leecher, spate --encryption require); default:
#               each side's default (spate prefer, libtorrent pe_enabled: an obfuscated
#               handshake, then plaintext, which libtorrent's seeder selects)
#   FILES=N     N files instead of one (a multi-file torrent: a folder of N files of uneven
#               sizes adding up to SIZE_MIB, some in subfolders; issue 13's many-files case is
#               FILES=200 SIZE_MIB=512)
#   LOAD=1      run the rounds beside other work: two busy-looping shells (CPU) and a `dd`
#               writing and fsyncing 1 GiB files over and over in the temp dir (disk), the
#               "loaded machine" of issue 13; memory must stay bounded there too
BENCH=loopback.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_time
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PIECE_KIB=${PIECE_KIB:-1024}
TIMEOUT=${TIMEOUT:-300}
FILES=${FILES:-1}

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src" "$WORK/dl"
DATA="$WORK/src/bench.bin"
[ "$FILES" -gt 1 ] && DATA="$WORK/src/bench"
TORRENT="$WORK/bench.torrent"
RESULTS="$WORK/results.jsonl"

FORMAT=${FORMAT:-v1}
echo "== making ${SIZE_MIB} MiB in $FILES file(s) and a private $FORMAT torrent (${PIECE_KIB} KiB pieces) in $WORK"
make_data "$DATA" "$SIZE_MIB" "$FILES"
make_torrent "$DATA" "$TORRENT" "$PIECE_KIB" --private --format "$FORMAT"

SPATE_ENC=()
if [ "${ENCRYPTION:-}" = rc4 ]; then
    export LT_ENCRYPTION=forced
    SPATE_ENC=(--encryption require)
    echo "== protocol encryption forced, RC4 (libtorrent pe_forced/pe_rc4, spate --encryption require)"
fi

SEED_PORT=$(free_port)
echo "== libtorrent seeder on 127.0.0.1:$SEED_PORT"
lt_seed seeder "$TORRENT" "$WORK/src" 127.0.0.1 "$SEED_PORT" -
GOT="$WORK/dl/$(basename "$DATA")"

run_spate() {
    local round=$1
    "$PY" "$MEASURE" run --label spate --log "$WORK/logs/spate-$round" --timeout "$TIMEOUT" \
        --expect "$DATA" --got "$GOT" -- \
        "$SPATE" download "$TORRENT" -o "$WORK/dl" --peer "127.0.0.1:$SEED_PORT" \
        --listen 127.0.0.1:0 --no-seed --no-dht --no-lsd --no-port-mapping "${SPATE_ENC[@]}" >>"$RESULTS"
}

run_libtorrent() {
    local round=$1
    "$PY" "$MEASURE" run --label libtorrent --log "$WORK/logs/libtorrent-$round" \
        --timeout "$TIMEOUT" --expect "$DATA" --got "$GOT" -- \
        "$PY" "$LT" leech "$TORRENT" "$WORK/dl" "$(free_port)" "$SEED_PORT" "$TIMEOUT" \
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

if [ "${LOAD:-0}" = 1 ]; then
    echo "== load: 2 busy loops and a dd of 1 GiB files with fsync, in $WORK"
    bg load-1 sh -c 'while :; do :; done'
    bg load-2 sh -c 'while :; do :; done'
    bg load-dd sh -c "while :; do dd if=/dev/zero of='$WORK/load.bin' bs=1M count=1024 conv=fsync status=none; done"
fi

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
stop_all

echo
echo "== summary: ${SIZE_MIB} MiB in $FILES file(s) ($FORMAT torrent) over 127.0.0.1 from a libtorrent seeder, $ROUNDS round(s), medians${LOAD:+ (LOAD=$LOAD)}"
"$PY" "$MEASURE" summary --size "$SIZE" "$RESULTS" || true
echo
echo "spate: $SPATE"
libtorrent_version
