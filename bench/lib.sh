# Shared setup for the bench/*.sh scripts; source it, do not run it:
#
#   BENCH=seed.sh; . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets REPO (and cd's there), PY (Debian's python3, for libtorrent), LT (lt_peer.py),
# MEASURE (measure.py), SPATE (built if missing) and WORK (a fresh temp dir, removed at exit
# unless KEEP=1). Processes started with `bg NAME CMD...` run in their own process group,
# log to $WORK/logs/NAME.{out,err} and are killed at exit or by `stop_all`.
# Nothing here opens a socket outside 127.0.0.0/8.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
PY=/usr/bin/python3
LT="$REPO/crates/testkit/py/lt_peer.py"
MEASURE="$REPO/bench/measure.py"
BENCH=${BENCH:-bench}

die() {
    echo "$BENCH: $*" >&2
    exit 1
}

"$PY" -c 'import libtorrent' 2>/dev/null ||
    die "python3-libtorrent for $PY is missing (apt-get install python3-libtorrent)"

# need_time: /usr/bin/time (measure.py runs the downloads under it).
need_time() {
    [ -x /usr/bin/time ] && return
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    echo "installing the 'time' package for /usr/bin/time"
    $sudo apt-get install -y time >/dev/null 2>&1 ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y time >/dev/null; } ||
        die "cannot install the 'time' package"
}

if [ -z "${SPATE:-}" ]; then
    SPATE="${CARGO_TARGET_DIR:-$REPO/target}/release/spate"
    if [ ! -x "$SPATE" ]; then
        echo "building spate (release)..."
        cargo build --release -p spate --bin spate || die "building spate failed"
    fi
fi

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/spate-${BENCH%.sh}.XXXXXX")
mkdir -p "$WORK/logs"
BG_PIDS=()

# bg NAME CMD...: start CMD in its own process group; its pid is in $BG_PID.
bg() {
    local name=$1
    shift
    setsid "$@" >"$WORK/logs/$name.out" 2>"$WORK/logs/$name.err" </dev/null &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

stop_all() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill -KILL -- "-$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BG_PIDS=()
}

cleanup() {
    stop_all
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port [ADDR]: a free TCP port on ADDR (default 127.0.0.1).
free_port() {
    "$PY" -c 'import socket,sys; s=socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' \
        "${1:-127.0.0.1}"
}

# wait_for FILE REGEX PID SECS WHAT: until a line of FILE matches REGEX; dies when PID exits
# or SECS pass.
wait_for() {
    local file=$1 re=$2 pid=$3 secs=$4 what=$5 i
    for i in $(seq 1 $((secs * 10))); do
        grep -Eq "$re" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited: $(tail -n 5 "${file%.*}.err" 2>/dev/null)"
        sleep 0.1
    done
    die "$what: no '$re' in $file within $secs s"
}

# make_data PATH MIB [FILES]: random data; one file at PATH, or with FILES > 1 a folder PATH
# of FILES files of uneven sizes (from a few KiB to a few MiB) adding up to MIB MiB, some in
# subfolders.
make_data() {
    local path=$1 mib=$2 files=${3:-1}
    if [ "$files" -le 1 ]; then
        head -c $((mib * 1024 * 1024)) /dev/urandom >"$path"
        return
    fi
    "$PY" - "$path" "$mib" "$files" <<'EOF'
import os, random, sys
path, total, n = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3])
rng = random.Random(13)
weights = [rng.lognormvariate(0, 1.2) for _ in range(n)]
sizes = [max(1, int(total * w / sum(weights))) for w in weights]
sizes[-1] += total - sum(sizes)
for i, size in enumerate(sizes):
    f = os.path.join(path, 'd%02d' % (i % 7) if i % 3 == 0 else '', 'file-%04d.bin' % i)
    os.makedirs(os.path.dirname(f), exist_ok=True)
    with open(f, 'wb') as out:
        left = size
        while left:
            chunk = min(left, 4 << 20)
            out.write(os.urandom(chunk))
            left -= chunk
EOF
}

# make_torrent DATA OUT.torrent PIECE_KIB [lt_peer.py create options]: libtorrent makes it.
make_torrent() {
    local data=$1 out=$2 piece_kib=$3
    shift 3
    "$PY" "$LT" create "$data" "$out" $((piece_kib * 1024)) "$@" >"$WORK/logs/create.log" 2>&1 ||
        die "torrent creation failed: $(cat "$WORK/logs/create.log")"
}

# lt_seed NAME TORRENT SAVE_DIR ADDR PORT PEERS [lt_peer.py options]: a libtorrent seeder
# on ADDR:PORT that dials PEERS (lt_peer.py's list, "-" for none); returns once it has
# checked its data ($BG_PID is its pid).
lt_seed() {
    local name=$1 torrent=$2 dir=$3 addr=$4 port=$5 peers=$6
    shift 6
    LT_BIND=$addr bg "$name" "$PY" "$LT" seed "$torrent" "$dir" "$port" "$peers" 86400 "$@"
    wait_for "$WORK/logs/$name.out" '^seeding$' "$BG_PID" 300 "libtorrent seeder $name"
}

# spate_seed NAME TORRENT DATA ADDR PORT [spate seed options]: a spate seeder on ADDR:PORT;
# returns once it has checked its data ($BG_PID is its pid).
spate_seed() {
    local name=$1 torrent=$2 data=$3 addr=$4 port=$5
    shift 5
    bg "$name" "$SPATE" seed "$torrent" "$data" --listen "$addr:$port" --no-dht --no-lsd \
        --no-trackers --transport tcp "$@"
    wait_for "$WORK/logs/$name.err" 'seeding:' "$BG_PID" 300 "spate seeder $name"
}

libtorrent_version() {
    "$PY" -c 'import libtorrent; print("libtorrent", libtorrent.__version__)'
}
