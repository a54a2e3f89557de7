#!/usr/bin/env bash
# BitTorrent v2 download benchmark: bench/loopback.sh with a v2-only torrent (BEP 52).
#
#   bench/v2.sh                       # 1 GiB, 3 rounds, v2-only
#   FORMAT=hybrid bench/v2.sh         # the same with a hybrid torrent
#
# spate and a libtorrent leecher download the same v2 torrent in turn from one libtorrent
# seeder on 127.0.0.1 (see bench/loopback.sh for what is measured and every setting); the
# summary gives the ratios spate/libtorrent. A v2 piece is verified with SHA-256 over 16 KiB
# blocks and its merkle subtree; a hybrid piece with SHA-1 and that.
set -euo pipefail
export FORMAT=${FORMAT:-v2}
exec "$(dirname "${BASH_SOURCE[0]}")/loopback.sh" "$@"
