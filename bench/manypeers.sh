#!/usr/bin/env bash
# Many-peers benchmark: a leecher (spate, then libtorrent) downloads from one libtorrent
# seeder while PEERS other peers are connected to it, against the same download with only
# the seeder connected; alternating, in one run.
#
#   bench/manypeers.sh                   # 1 GiB, 1 MiB pieces, 500 peers, 3 rounds
#   ROUNDS=5 PEERS=1000 SIZE_MIB=512 bench/manypeers.sh
#
# The seeder speaks plaintext only (LT_ENCRYPTION=disabled): it dials the leecher, and
# spate's default `prefer` would answer its MSE offer with RC4 where libtorrent answers with
# plaintext (see bench/seed.sh); this benchmark is about peers, not ciphers.
# The other peers are bench/peer_swarm.py: PEERS plaintext BitTorrent connections from one
# asyncio process, each from its own address 127.1.x.y, that have no pieces, say
# `interested` and read whatever the leecher sends (its HAVE for every piece, to every
# peer). They are not a source of data: what they measure is the leecher's cost of being
# connected to many peers (announcing pieces, choking rounds, timers, per-peer state). The
# data comes from one real libtorrent seeder (lt_peer.py) on 127.0.0.1.
# Each run: the leecher starts on 127.0.0.2 with no peer; the swarm connects (the run waits
# until all PEERS have finished their handshake, for at most CONNECT_WAIT seconds);
# then the seeder starts, checks its data and
# dials the leecher. The rate is SIZE over the time from the seeder's "seeding" to the
# leecher's exit (spate includes its final fsync). Each copy is compared with the source.
# Prints per leecher the median rate with 1 peer (the seeder) and with PEERS+1, their ratio,
# CPU seconds and peak RSS/RssAnon of the leecher, and how many swarm peers were still
# connected when the download ended. Everything stays on 127.0.0.0/8; no DHT, LSD, UPnP,
# NAT-PMP or uTP.
#
# Environment: ROUNDS (3)  SIZE_MIB (1024)  PIECE_KIB (1024)  PEERS (500)  TIMEOUT (300)
#   CONNECT_WAIT (30 s: the longest wait for the swarm to connect)
#   SPATE (default target/release/spate, built if missing)  BENCH_TMP (/var/tmp)  KEEP=1
BENCH=manypeers.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_time
ROUNDS=${ROUNDS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PIECE_KIB=${PIECE_KIB:-1024}
PEERS=${PEERS:-500}
TIMEOUT=${TIMEOUT:-300}
CONNECT_WAIT=${CONNECT_WAIT:-30}
SWARM="$REPO/bench/peer_swarm.py"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SIZE=$((SIZE_MIB * 1024 * 1024))
mkdir -p "$WORK/src" "$WORK/dl"
DATA="$WORK/src/bench.bin"
TORRENT="$WORK/bench.torrent"
RESULTS="$WORK/results.jsonl"
echo "== making a ${SIZE_MIB} MiB file and a private v1 torrent (${PIECE_KIB} KiB pieces) in $WORK"
make_data "$DATA" "$SIZE_MIB"
make_torrent "$DATA" "$TORRENT" "$PIECE_KIB" --private

# run_one WHO N ROUND: one download by WHO (spate|libtorrent) with N swarm peers connected.
run_one() {
    local who=$1 n=$2 round=$3 lport label="$1-$2" t_leech t0 mpid swarm_pid="" i
    lport=$(free_port 127.0.0.2)
    rm -rf "$WORK/dl" && mkdir -p "$WORK/dl"
    local log="$WORK/logs/$label-$round"
    t_leech=$(date +%s.%N)
    if [ "$who" = spate ]; then
        "$PY" "$MEASURE" run --label "$label" --log "$log" --timeout "$TIMEOUT" \
            --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
            "$SPATE" download "$TORRENT" -o "$WORK/dl" --listen "127.0.0.2:$lport" \
            --no-seed --no-dht --no-lsd --no-trackers --transport tcp \
            --max-peers $((2 * n + 100)) >"$log.json" &
    else
        LT_BIND=127.0.0.2 LT_CONNECTIONS_LIMIT=$((2 * n + 100)) \
            "$PY" "$MEASURE" run --label "$label" --log "$log" --timeout "$TIMEOUT" \
            --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
            "$PY" "$LT" leech "$TORRENT" "$WORK/dl" "$lport" - "$TIMEOUT" >"$log.json" &
    fi
    mpid=$!
    # Wait until the leecher listens.
    for i in $(seq 1 300); do
        ss -Hltn "src 127.0.0.2:$lport" 2>/dev/null | grep -q . && break
        sleep 0.1
    done
    if [ "$n" -gt 0 ]; then
        bg "swarm-$label-$round" "$PY" "$SWARM" "$TORRENT" "127.0.0.2:$lport" "$n" \
            --timeout $((TIMEOUT + 120))
        swarm_pid=$BG_PID
        # Until all are connected, for at most CONNECT_WAIT seconds (a leecher may refuse
        # or close some; the summary shows how many stayed).
        local until=$((SECONDS + CONNECT_WAIT))
        while [ "$SECONDS" -lt "$until" ]; do
            [ "$(tail -n 1 "$WORK/logs/swarm-$label-$round.out" 2>/dev/null | cut -d' ' -f1-2)" = "connected $n" ] && break
            kill -0 "$mpid" 2>/dev/null || break
            sleep 0.1
        done
        echo "   $label: $(tail -n 1 "$WORK/logs/swarm-$label-$round.out" | cut -d' ' -f1-2) swarm peers before the seeder starts"
    fi
    # Plaintext only: the seeder dials, and spate's default answers an MSE handshake that
    # offers RC4 with RC4 (libtorrent's with plaintext); this benchmark is about peers.
    LT_ENCRYPTION=disabled lt_seed "seed-$label-$round" "$TORRENT" "$WORK/src" 127.0.0.1 \
        "$(free_port 127.0.0.1)" "127.0.0.2:$lport" --no-pex
    t0=$(date +%s.%N)
    wait "$mpid" || true
    local swarm_log=-
    [ -n "$swarm_pid" ] && swarm_log="$WORK/logs/swarm-$label-$round.out"
    stop_all
    "$PY" - "$log.json" "$t_leech" "$t0" "$swarm_log" "$n" "$SIZE" >>"$RESULTS" <<'EOF'
import json, sys
path, t_leech, t0, swarm_log, n, size = sys.argv[1:]
r = json.loads(open(path).read())
r['swarm_peers'] = int(n)
r['connected_at_end'] = None
if r['ok'] and r.get('wall_s'):
    # From the seeder's start of seeding to the leecher's exit.
    t_end = float(t_leech) + r['wall_s']
    r['transfer_s'] = t_end - float(t0)
    r['mbps'] = int(size) / 1e6 / r['transfer_s']
    if swarm_log != '-':
        # The fewest swarm peers connected from the seeder's start until the leecher closed
        # them (the last change the swarm saw: a complete leecher closes every connection,
        # then makes its final fsync and exits).
        lines = []
        for line in open(swarm_log):
            f = line.split()
            if f[0] == 'connected' and len(f) >= 3:
                lines.append((float(f[2]), int(f[1])))
        counts, last = [], None
        for k, (t, c) in enumerate(lines):
            if t <= float(t0):
                last = c
            elif k < len(lines) - 1:
                counts.append(c)
        if last is not None:
            counts.append(last)
        r['connected_at_end'] = min(counts) if counts else None
print(json.dumps(r))
EOF
    "$PY" -c '
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
if r["ok"]:
    print("   %-16s %7.1f MB/s  cpu %.2f s  peak RSS %.1f MiB  RssAnon %s MiB  fewest swarm peers connected: %s" % (
        r["label"], r["mbps"], r["user_s"] + r["sys_s"], r["maxrss_kib"] / 1024,
        "%.1f" % (r["rssanon_peak_kib"] / 1024) if r.get("rssanon_peak_kib") else "n/a",
        r["connected_at_end"] if r["connected_at_end"] is not None else "-"))
else:
    print("   %-16s FAILED: %s" % (r["label"], r["error"]))
' "$RESULTS"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "== round $round/$ROUNDS"
    if [ $((round % 2)) = 1 ]; then order="spate libtorrent"; else order="libtorrent spate"; fi
    for who in $order; do
        run_one "$who" 0 "$round"
        run_one "$who" "$PEERS" "$round"
    done
done
rm -rf "$WORK/dl"

echo
echo "== summary: ${SIZE_MIB} MiB from one libtorrent seeder, with the seeder only and with $PEERS more peers connected, $ROUNDS round(s), medians"
"$PY" - "$RESULTS" "$PEERS" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(sys.argv[2])
med = lambda xs: statistics.median(xs) if xs else None
f = lambda x, s: 'n/a' if x is None else format(x, s)
print('%-22s %5s %9s %8s %13s %11s %16s' % ('leecher', 'runs', 'MB/s', 'CPU s', 'peak RSS MiB',
                                          'RssAnon MiB', 'fewest connected'))
rate = {}
for who in ('spate', 'libtorrent'):
    for k in (0, n):
        label = '%s-%d' % (who, k)
        mine = [r for r in rows if r['label'] == label]
        ok = [r for r in mine if r['ok']]
        rate[label] = med([r['mbps'] for r in ok])
        print('%-22s %2d/%-2d %9s %8s %13s %11s %16s' % (
            '%s, %d peer%s' % (who, k + 1, 's' if k else ''), len(ok), len(mine),
            f(rate[label], '.1f'), f(med([r['user_s'] + r['sys_s'] for r in ok]), '.2f'),
            f(med([r['maxrss_kib'] / 1024 for r in ok if r.get('maxrss_kib')]), '.1f'),
            f(med([r['rssanon_peak_kib'] / 1024 for r in ok if r.get('rssanon_peak_kib')]), '.1f'),
            f(med([r['connected_at_end'] for r in ok if r.get('connected_at_end') is not None]), 'd')
            if k else '-'))
        for r in mine:
            if not r['ok']:
                print('   FAILED: %s (logs %s.*)' % (r.get('error'), r.get('log')))
print()
for who in ('spate', 'libtorrent'):
    a, b = rate.get('%s-%d' % (who, n)), rate.get('%s-0' % who)
    print('%s: rate with %d peers / rate with 1: %s' % (who, n + 1, f(a / b if a and b else None, '.2f')))
a, b = rate.get('spate-%d' % n), rate.get('libtorrent-%d' % n)
print('spate/libtorrent with %d peers: %s' % (n + 1, f(a / b if a and b else None, '.2f')))
PYEOF
echo
echo "spate: $SPATE"
libtorrent_version
