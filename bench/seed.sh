#!/usr/bin/env bash
# Seeding benchmark: a libtorrent leecher fetches the same data from a spate seeder and from a
# libtorrent seeder, alternating, in one run.
#
#   bench/seed.sh                      # 1 GiB, 1 MiB pieces, 3 rounds
#   ROUNDS=5 SIZE_MIB=256 bench/seed.sh
#
# Makes a SIZE_MIB file and a private v1 torrent of it (libtorrent). Each round starts a
# fresh seeder (spate or libtorrent, the order alternating each round) on 127.0.0.1, waits
# until it has checked its data, then runs a libtorrent leecher on 127.0.0.2 under
# measure.py, which also samples the seeder: the seeder's CPU seconds while the leecher runs,
# its peak RSS (VmHWM, including its start-up check) and its peak RssAnon (heap: libtorrent
# maps files into memory, so its RSS counts file pages). Each copy is compared with the
# source. Prints median MB/s, leecher and seeder CPU and memory, and the ratios
# spate/libtorrent. Everything stays on 127.0.0.x; no DHT, LSD, UPnP, NAT-PMP or uTP.
#
# Environment: ROUNDS (3)  SIZE_MIB (1024)  PIECE_KIB (1024)  TIMEOUT (300 s per download)
#   SPATE (default target/release/spate, built if missing)  BENCH_TMP (/var/tmp)  KEEP=1
#   SPATE_ENCRYPTION   the spate seeder's --encryption (default prefer, spate's default: as
#            the answering side of an MSE handshake it selects plaintext payload when the
#            dialler offers it, as libtorrent's seeder does; `require` forces RC4)
#   PERF=1   record the spate seeder with `perf record -g` (perf.data in the kept temp dir;
#            implies KEEP=1)
BENCH=seed.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_time
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PIECE_KIB=${PIECE_KIB:-1024}
TIMEOUT=${TIMEOUT:-300}
[ "${PERF:-0}" = 1 ] && KEEP=1

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src" "$WORK/dl"
DATA="$WORK/src/bench.bin"
TORRENT="$WORK/bench.torrent"
RESULTS="$WORK/results.jsonl"
echo "== making a ${SIZE_MIB} MiB file and a private v1 torrent (${PIECE_KIB} KiB pieces) in $WORK"
make_data "$DATA" "$SIZE_MIB"
make_torrent "$DATA" "$TORRENT" "$PIECE_KIB" --private

round_with() {
    local seeder=$1 round=$2 port perf_pid=""
    port=$(free_port 127.0.0.1)
    if [ "$seeder" = spate ]; then
        spate_seed "seed-spate-$round" "$TORRENT" "$DATA" 127.0.0.1 "$port" \
            --encryption "${SPATE_ENCRYPTION:-prefer}"
        if [ "${PERF:-0}" = 1 ]; then
            perf record -g -o "$WORK/perf-$round.data" -p "$BG_PID" \
                >"$WORK/logs/perf-$round.log" 2>&1 &
            perf_pid=$!
            sleep 1
        fi
    else
        lt_seed "seed-libtorrent-$round" "$TORRENT" "$WORK/src" 127.0.0.1 "$port" -
    fi
    rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
    LT_BIND=127.0.0.2 "$PY" "$MEASURE" run --label "$seeder" --log "$WORK/logs/leech-$seeder-$round" \
        --timeout "$TIMEOUT" --expect "$DATA" --got "$WORK/dl/bench.bin" --watch "$BG_PID" -- \
        "$PY" "$LT" leech "$TORRENT" "$WORK/dl" "$(free_port 127.0.0.2)" "127.0.0.1:$port" \
        "$TIMEOUT" >>"$RESULTS"
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
    fi
    stop_all
    "$PY" -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["ok"]:
    mib = lambda k: "%.1f" % (r[k] / 1024) if r.get(k) else "n/a"
    print("   from %-10s %7.1f MB/s  leecher cpu %.2f s | seeder cpu %s s  peak RSS %s MiB  RssAnon %s MiB" % (
        r["label"], int(sys.argv[2]) / 1e6 / r["wall_s"], r["user_s"] + r["sys_s"],
        "%.2f" % r["watch_cpu_s"] if r.get("watch_cpu_s") is not None else "n/a",
        mib("watch_vmhwm_kib"), mib("watch_rssanon_peak_kib")))
else:
    print("   from %-10s FAILED: %s" % (r["label"], r["error"]))
' "$RESULTS" "$SIZE"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS"
    if [ $((round % 2)) = 1 ]; then order="spate libtorrent"; else order="libtorrent spate"; fi
    for who in $order; do
        round_with "$who" "$round"
    done
done
rm -rf "$WORK/dl"

echo
echo "== summary: a libtorrent leecher fetching ${SIZE_MIB} MiB over 127.0.0.x from each seeder, $ROUNDS round(s), medians (spate seeder --encryption ${SPATE_ENCRYPTION:-prefer})"
echo "   (the rows are named by the SEEDER; MB/s, CPU and RSS of the first table are the leecher's)"
"$PY" "$MEASURE" summary --size "$SIZE" "$RESULTS" || true
echo
echo "spate: $SPATE"
libtorrent_version
