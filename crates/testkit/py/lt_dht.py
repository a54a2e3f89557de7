#!/usr/bin/python3
"""libtorrent as a Mainline DHT participant, for spate's DHT tests and benchmark, on
loopback only. Each process gets its own 127.0.0.x address.

Run with Debian's interpreter (/usr/bin/python3): python3-libtorrent is built for it.

  lt_dht.py node   IP PORT NODES TIMEOUT
  lt_dht.py seed   IP PORT NODES TIMEOUT TORRENT SAVE_DIR
  lt_dht.py magnet IP PORT NODES TIMEOUT MAGNET OUT_DIR

NODES: comma-separated HOST:PORT of DHT nodes to add with add_dht_node (never a bootstrap
"router", and never anything outside 127.0.0.0/8), or "-".
No tracker, no LSD, no UPnP/NAT-PMP, no uTP; peers are found through the DHT only.

Output (stdout, flushed; T is seconds since the process started):
  listening PORT
  dht nodes=N                        (every second)
  seeding                            (seed: data checked complete; it then announces)
  metadata T                         (magnet: metadata received)
  first_piece T                      (magnet: first piece verified)
  finished T                         (magnet: all data verified; exit 0)
Exit codes: 0 finished (magnet) or TIMEOUT passed (node, seed), 1 magnet timed out,
2 bad usage, 3 seed data incomplete.
"""
import sys
import time

import libtorrent as lt

START = time.monotonic()


def log(*a):
    print(*a, flush=True)


def err(*a):
    print(*a, file=sys.stderr, flush=True)


def since():
    return time.monotonic() - START


def session(ip, port):
    # INTEROP.md's loopback DHT settings: local addresses allowed in the routing table and
    # in searches, no id verification (every node is 127.0.0.x).
    s = lt.session({
        'listen_interfaces': '%s:%d' % (ip, port),
        'outgoing_interfaces': ip,
        'enable_dht': True,
        'dht_bootstrap_nodes': '',
        'dht_restrict_routing_ips': False,
        'dht_restrict_search_ips': False,
        'dht_ignore_dark_internet': False,
        'dht_prefer_verified_node_ids': False,
        'dht_extended_routing_table': False,
        'enable_lsd': False,
        'enable_upnp': False,
        'enable_natpmp': False,
        'enable_incoming_utp': False,
        'enable_outgoing_utp': False,
        'enable_ip_notifier': False,
        'allow_multiple_connections_per_ip': True,
        'alert_mask': lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification,
    })
    return s


def parse_nodes(s):
    out = []
    if s in ('', '-'):
        return out
    for p in s.split(','):
        host, port = p.strip().rsplit(':', 1)
        if not host.startswith('127.'):
            raise SystemExit('lt_dht.py: refusing non-loopback node %s' % p)
        out.append((host, int(port)))
    return out


def drain(ses, handle=None, state=None):
    for a in ses.pop_alerts():
        if isinstance(a, lt.metadata_received_alert) and state is not None \
                and not state.get('metadata'):
            state['metadata'] = True
            log('metadata %.3f' % since())
        elif isinstance(a, lt.piece_finished_alert) and state is not None \
                and not state.get('first_piece'):
            state['first_piece'] = True
            log('first_piece %.3f' % since())
        elif a.category() & lt.alert.category_t.error_notification:
            err('alert: %s: %s' % (type(a).__name__, a.message()))


def main(argv):
    if len(argv) < 5:
        err(__doc__)
        return 2
    role, ip, port, nodes, timeout = argv[0], argv[1], int(argv[2]), argv[3], float(argv[4])
    if not ip.startswith('127.'):
        err('lt_dht.py: IP must be in 127.0.0.0/8')
        return 2
    ses = session(ip, port)
    if role == 'magnet':
        ses.apply_settings({'alert_mask': lt.alert.category_t.error_notification
                            | lt.alert.category_t.status_notification
                            | lt.alert.category_t.piece_progress_notification})
    for n in parse_nodes(nodes):
        ses.add_dht_node(n)
    deadline = START + timeout
    h = None
    state = {}
    if role == 'seed':
        if len(argv) != 7:
            err(__doc__)
            return 2
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(argv[5])
        params.save_path = argv[6]
        h = ses.add_torrent(params)
    elif role == 'magnet':
        if len(argv) != 7:
            err(__doc__)
            return 2
        params = lt.parse_magnet_uri(argv[5])
        params.save_path = argv[6]
        h = ses.add_torrent(params)
    elif role != 'node':
        err(__doc__)
        return 2
    listening = False
    checked = False
    next_status = 0.0
    next_announce = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            if role == 'magnet':
                s = h.status()
                err('timeout: magnet not finished after %.0f s: has_metadata=%s progress=%.4f '
                    'peers=%d' % (timeout, s.has_metadata, s.progress, s.num_peers))
                return 1
            return 0
        if not listening and ses.is_listening():
            listening = True
            log('listening %d' % ses.listen_port())
        if role == 'seed' and not checked:
            s = h.status()
            if s.state not in (lt.torrent_status.checking_files,
                               lt.torrent_status.checking_resume_data):
                checked = True
                if not s.is_seeding:
                    err('error: seed data incomplete: %d pieces valid' % s.num_pieces)
                    return 3
                log('seeding')
        if role == 'seed' and checked and now >= next_announce:
            # Announce early and often: the DHT around us forms while we run.
            h.force_dht_announce()
            next_announce = now + 5.0
        if now >= next_status:
            log('dht nodes=%d' % ses.status().dht_nodes)
            next_status = now + 1.0
        if role == 'magnet':
            s = h.status()
            if s.has_metadata and s.is_seeding and s.total_wanted_done == s.total_wanted:
                drain(ses, h, state)
                log('finished %.3f' % since())
                return 0
        drain(ses, h, state)
        time.sleep(0.02)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
