#!/usr/bin/env bash
# Swarm benchmark: one seeder and LEECHERS leechers, all spate, against the same swarm all
# libtorrent (lt_peer.py), alternating, in one run: the time until every leecher is done.
#
#   bench/swarm.sh                       # 256 MiB, 1 MiB pieces, 4 leechers, 3 rounds
#   ROUNDS=5 SIZE_MIB=512 LEECHERS=6 bench/swarm.sh
#
# The seeder listens on 127.0.0.1; leecher i on 127.0.0.(20+i), each dialling the seeder and
# every other leecher (no tracker, no PEX needed). Nobody is rate-limited. Each leecher runs
# under /usr/bin/time and exits once complete (spate `download --no-seed`, lt_peer.py leech);
# the swarm is done when the last one has exited. Every copy is compared with the source.
# Printed per round and as medians: time to all done, the leechers' CPU seconds (summed),
# the seeder's CPU seconds during the swarm, the largest leecher peak RSS; and the ratio of
# times spate/libtorrent. Everything stays on 127.0.0.x; no DHT, LSD, UPnP, NAT-PMP or uTP.
#
# Environment: SPATE_ENCRYPTION  --encryption of every spate peer (default prefer, spate's
#   default: spate peers dialling each other then select RC4; libtorrent peers, at their
#   default, select plaintext among themselves; `allow` makes spate select plaintext too)
#   ROUNDS (3)  SIZE_MIB (256)  PIECE_KIB (1024)  LEECHERS (4)  TIMEOUT (600)
#   SPATE (default target/release/spate, built if missing)  BENCH_TMP (/var/tmp)  KEEP=1
BENCH=swarm.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_time
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-256}
PIECE_KIB=${PIECE_KIB:-1024}
LEECHERS=${LEECHERS:-4}
TIMEOUT=${TIMEOUT:-600}

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src"
DATA="$WORK/src/swarm.bin"
TORRENT="$WORK/swarm.torrent"
RESULTS="$WORK/results.jsonl"
echo "== making a ${SIZE_MIB} MiB file and a private v1 torrent (${PIECE_KIB} KiB pieces) in $WORK"
make_data "$DATA" "$SIZE_MIB"
make_torrent "$DATA" "$TORRENT" "$PIECE_KIB" --private
echo "== 1 seeder and $LEECHERS leechers of each kind, $ROUNDS round(s)"

cpu_of() { # CPU seconds (user+sys, all threads) of a running process
    "$PY" -c '
import os, sys
f = open("/proc/%s/stat" % sys.argv[1]).read().rsplit(")", 1)[1].split()
print((int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"))' "$1" 2>/dev/null || echo nan
}

run_swarm() {
    local kind=$1 round=$2 seed_port i j start took seed_cpu0 seed_cpu1 seed_pid
    seed_port=$(free_port 127.0.0.1)
    if [ "$kind" = spate ]; then
        spate_seed "$kind-seed-$round" "$TORRENT" "$DATA" 127.0.0.1 "$seed_port" \
            --encryption "${SPATE_ENCRYPTION:-prefer}"
    else
        lt_seed "$kind-seed-$round" "$TORRENT" "$WORK/src" 127.0.0.1 "$seed_port" -
    fi
    seed_pid=$BG_PID
    local addrs=() ports=() lpids=()
    for i in $(seq 1 "$LEECHERS"); do
        addrs+=("127.0.0.$((20 + i))")
        ports+=("$(free_port "127.0.0.$((20 + i))")")
    done
    seed_cpu0=$(cpu_of "$seed_pid")
    start=$(date +%s.%N)
    for i in $(seq 0 $((LEECHERS - 1))); do
        rm -rf "$WORK/dl-$i" && mkdir -p "$WORK/dl-$i"
        local peers=("127.0.0.1:$seed_port") log="$WORK/logs/$kind-leech-$round-$i"
        for j in $(seq 0 $((LEECHERS - 1))); do
            [ "$j" = "$i" ] || peers+=("${addrs[$j]}:${ports[$j]}")
        done
        if [ "$kind" = spate ]; then
            local args=()
            for p in "${peers[@]}"; do args+=(--peer "$p"); done
            setsid /usr/bin/time -f '%e %U %S %M' -o "$log.time" \
                timeout -s KILL "$TIMEOUT" "$SPATE" download "$TORRENT" -o "$WORK/dl-$i" \
                --listen "${addrs[$i]}:${ports[$i]}" --no-seed --no-dht --no-lsd --no-trackers \
                --transport tcp --encryption "${SPATE_ENCRYPTION:-prefer}" "${args[@]}" >"$log.out" 2>"$log.err" </dev/null &
        else
            local list
            list=$(
                IFS=,
                echo "${peers[*]}"
            )
            LT_BIND=${addrs[$i]} setsid /usr/bin/time -f '%e %U %S %M' -o "$log.time" \
                "$PY" "$LT" leech "$TORRENT" "$WORK/dl-$i" "${ports[$i]}" "$list" "$TIMEOUT" \
                >"$log.out" 2>"$log.err" </dev/null &
        fi
        lpids+=($!)
        BG_PIDS+=($!)
    done
    local failed=0
    for p in "${lpids[@]}"; do wait "$p" || failed=1; done
    took=$(echo "$(date +%s.%N) - $start" | bc)
    seed_cpu1=$(cpu_of "$seed_pid")
    stop_all
    local ok=true error=""
    if [ "$failed" = 1 ]; then
        ok=false
        error="a leecher failed or timed out (logs $WORK/logs/$kind-leech-$round-*)"
    else
        for i in $(seq 0 $((LEECHERS - 1))); do
            if ! cmp -s "$DATA" "$WORK/dl-$i/swarm.bin"; then
                ok=false
                error="leecher $i's copy differs from the source"
            fi
        done
    fi
    for i in $(seq 0 $((LEECHERS - 1))); do rm -rf "$WORK/dl-$i"; done
    "$PY" - "$kind" "$ok" "$error" "$took" "$seed_cpu0" "$seed_cpu1" \
        "$WORK/logs/$kind-leech-$round" "$LEECHERS" >>"$RESULTS" <<'EOF'
import json, sys
kind, ok, error, took, c0, c1, prefix, n = sys.argv[1:]
cpu, rss = 0.0, 0
for i in range(int(n)):
    try:
        e, u, s, m = open('%s-%d.time' % (prefix, i)).read().split()[-4:]
        cpu += float(u) + float(s)
        rss = max(rss, int(m))
    except (OSError, ValueError):
        pass
print(json.dumps({'label': kind, 'ok': ok == 'true', 'error': error or None,
                  'took_s': float(took), 'leech_cpu_s': cpu, 'leech_rss_max_kib': rss,
                  'seed_cpu_s': float(c1) - float(c0)}))
EOF
    "$PY" -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["ok"]:
    print("   %-10s all done in %6.2f s  leechers cpu %.2f s (sum)  seeder cpu %.2f s  leecher peak RSS %.1f MiB (max)" % (
        r["label"], r["took_s"], r["leech_cpu_s"], r["seed_cpu_s"], r["leech_rss_max_kib"] / 1024))
else:
    print("   %-10s FAILED: %s" % (r["label"], r["error"]))
' "$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS"
    if [ $((round % 2)) = 1 ]; then order="spate libtorrent"; else order="libtorrent spate"; fi
    for kind in $order; do
        run_swarm "$kind" "$round"
    done
done

echo
echo "== summary: ${SIZE_MIB} MiB, 1 seeder + $LEECHERS leechers per swarm over 127.0.0.x, $ROUNDS round(s), medians (spate --encryption ${SPATE_ENCRYPTION:-prefer})"
"$PY" - "$RESULTS" "$SIZE" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
med = {}
print('%-11s %5s %12s %17s %13s %19s' % ('swarm', 'runs', 'all done s', 'leechers CPU s',
                                         'seeder CPU s', 'leecher RSS MiB'))
for kind in ('spate', 'libtorrent'):
    mine = [r for r in rows if r['label'] == kind]
    ok = [r for r in mine if r['ok']]
    if not ok:
        print('%-11s %2d/%-2d  all failed: %s' % (kind, 0, len(mine),
                                                 mine[0]['error'] if mine else 'no run'))
        continue
    m = {k: statistics.median([r[k] for r in ok])
         for k in ('took_s', 'leech_cpu_s', 'seed_cpu_s', 'leech_rss_max_kib')}
    med[kind] = m
    print('%-11s %2d/%-2d %12.2f %17.2f %13.2f %19.1f' % (
        kind, len(ok), len(mine), m['took_s'], m['leech_cpu_s'], m['seed_cpu_s'],
        m['leech_rss_max_kib'] / 1024))
if len(med) == 2:
    s, l = med['spate'], med['libtorrent']
    print()
    print('ratios spate/libtorrent: time to all done %.2f  leechers CPU %.2f  seeder CPU %s' % (
        s['took_s'] / l['took_s'], s['leech_cpu_s'] / l['leech_cpu_s'],
        '%.2f' % (s['seed_cpu_s'] / l['seed_cpu_s']) if l['seed_cpu_s'] else 'n/a'))
EOF
echo
echo "spate: $SPATE"
libtorrent_version
