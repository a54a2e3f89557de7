#!/usr/bin/env bash
# Web seed benchmark: spate vs aria2, each downloading the same torrent from the same nginx
# web seed (BEP 19 url-list) alone, no peers, in one run.
#
#   bench/webseed.sh                  # 512 MiB, one run each
#   SIZE_MIB=1024 bench/webseed.sh
#
# Makes a SIZE_MIB file in a temp dir on disk, a private v1 torrent of it whose url-list is
# an nginx started here on 127.0.0.1 with its own config, pid file and logs in the temp dir,
# then lets spate and aria2c download it in turn into fresh folders (aria2 with 3
# connections per server, spate's default too). Each runs under /usr/bin/time
# (bench/measure.py samples VmHWM and RssAnon); each copy is compared with the source.
# Prints MB/s, CPU seconds (user+sys), peak RSS and RssAnon of both and the ratios
# spate/aria2. Everything stays on 127.0.0.1; no DHT, LSD, UPnP, NAT-PMP or uTP.
#
# Environment:
#   SIZE_MIB (512)  PIECE_KIB (1024)  TIMEOUT (300 s per download)
#   SPATE       the spate binary (default: target/release/spate, built if missing)
#   BENCH_TMP   where the temp dir goes (default /var/tmp: on disk, not tmpfs)
#   KEEP=1      keep the temp dir (data, torrent, logs)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
SIZE_MIB=${SIZE_MIB:-512}
PIECE_KIB=${PIECE_KIB:-1024}
TIMEOUT=${TIMEOUT:-300}
PY=/usr/bin/python3
MEASURE="$REPO/bench/measure.py"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

die() {
    echo "webseed.sh: $*" >&2
    exit 1
}

[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx-light)"
command -v aria2c >/dev/null || die "aria2c is missing (apt-get install aria2)"
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"
if [ -z "${SPATE:-}" ]; then
    SPATE="${CARGO_TARGET_DIR:-$REPO/target}/release/spate"
    if [ ! -x "$SPATE" ]; then
        echo "building spate (release)..."
        cargo build --release -p spate --bin spate
    fi
fi

WORK=$(mktemp -d "${BENCH_TMP:-/var/tmp}/spate-webseed.XXXXXX")
NGINX_PID=""
cleanup() {
    if [ -n "$NGINX_PID" ]; then
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$WORK/www" "$WORK/logs" "$WORK/nginx"
DATA="$WORK/www/bench.bin"
SIZE=$((SIZE_MIB << 20))
echo "making $SIZE_MIB MiB of random data..."
head -c "$SIZE" /dev/urandom >"$DATA"

PORT=$(free_port)
user=""
[ "$(id -u)" = 0 ] && user="user root root;"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
$user
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 128; }
http {
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    fastcgi_temp_path $WORK/nginx;
    uwsgi_temp_path $WORK/nginx;
    scgi_temp_path $WORK/nginx;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PORT;
        root $WORK/www;
    }
}
CONF
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" &
NGINX_PID=$!
for _ in $(seq 1 100); do
    "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break
    sleep 0.1
done

TORRENT="$WORK/bench.torrent"
"$SPATE" create "$DATA" -o "$TORRENT" --private --piece-length "${PIECE_KIB}k" \
    -w "http://127.0.0.1:$PORT/bench.bin" >/dev/null
RESULTS="$WORK/results.jsonl"

rm -rf "$WORK/dl"
echo "spate..."
"$PY" "$MEASURE" run --label spate --log "$WORK/logs/spate" --timeout "$TIMEOUT" \
    --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
    "$SPATE" download "$TORRENT" -o "$WORK/dl" --listen 127.0.0.1:0 --no-seed --no-dht --no-lsd --no-port-mapping \
    >>"$RESULTS"
rm -rf "$WORK/dl"
echo "aria2c..."
"$PY" "$MEASURE" run --label aria2 --log "$WORK/logs/aria2" --timeout "$TIMEOUT" \
    --expect "$DATA" --got "$WORK/dl/bench.bin" -- \
    aria2c --no-conf=true --dir="$WORK/dl" --seed-time=0 --enable-dht=false \
    --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --interface=127.0.0.1 --disable-ipv6=true --listen-port="$(free_port)" \
    --file-allocation=falloc --allow-overwrite=true --auto-file-renaming=false \
    --max-connection-per-server=3 --split=3 --console-log-level=warn --summary-interval=0 \
    "$TORRENT" >>"$RESULTS"
rm -rf "$WORK/dl"

echo "web seed, $SIZE_MIB MiB, ${PIECE_KIB} KiB pieces, nginx on 127.0.0.1, one run each:"
"$PY" "$MEASURE" summary --size "$SIZE" --against aria2 "$RESULTS"
