#!/usr/bin/python3
"""A libtorrent peer for spate's tests and benchmarks, on 127.0.0.1 only.

Run with Debian's interpreter (/usr/bin/python3): python3-libtorrent is built for it.

  lt_peer.py seed   TORRENT SAVE_DIR PORT PEERS TIMEOUT [OPTIONS]
  lt_peer.py leech  TORRENT OUT_DIR  PORT PEERS TIMEOUT [OPTIONS]
  lt_peer.py magnet MAGNET_URI OUT_DIR PORT PEERS TIMEOUT [--save-torrent PATH]
  lt_peer.py create PATH OUT.torrent PIECE_LENGTH [--private] [--symlinks] [--tracker URL]...
                    [--format v1|v2|hybrid]   (default v1: create_torrent flag v1_only;
                    v2: flag v2_only; hybrid: neither, libtorrent 2.0's default)
  lt_peer.py infohash TORRENT

PEERS is a comma-separated list of ports (meaning 127.0.0.1:PORT) or HOST:PORT, or "-" for
none. OPTIONS (seed and leech):
  --upload-limit BYTES_PER_S     per-torrent upload limit
  --download-limit BYTES_PER_S   per-torrent download limit
  --no-pex                       the torrent flag disable_pex: neither send nor take PEX
  --print-peers                  print a `peer ...` line for each new connection
Every peer is dialled with connect_peer at start and again every 2 s while it is not
connected (a Transmission leecher never dials out on loopback, so the seeder must dial it).

Output (stdout, line by line, flushed):
  listening PORT
  checked have=N/M pieces
  seeding                           (seeder: the data checked complete)
  status state=S progress=P downloaded=N uploaded=N peers=N   (every 0.5 s)
  peer IP:PORT pid=PREFIX outgoing=0|1 source=N client="NAME"  (with --print-peers; PREFIX:
                                    the first 8 bytes of the peer id, e.g. -SE0100- for spate;
                                    NAME: libtorrent's name for the client)
  finished downloaded=N uploaded=N seconds=T                   (leecher, then exit 0)
  metadata info_hash=H pieces=N size=N seconds=T   (magnet: the info dict arrived from a peer)
The magnet role is a leecher given only a magnet link (no .torrent): it must fetch the
metadata from PEERS (BEP 9) and then the data; with --save-torrent it writes the torrent
libtorrent built from the fetched metadata to PATH. It always runs with the torrent flags
disable_pex, disable_dht and disable_lsd (PEX is on by default for public torrents).
LT_SUPER_SEED=1 makes a seeder super-seed (BEP 16).
LT_WANT_PIECES=START:END makes a magnet leecher want only pieces START..END-1 (priority 0 for
the others, set once the metadata arrives): a v2 piece of a file only partly wanted can only
be checked with the file's piece layer (BEP 52 hash requests).
LT_CONNECTIONS_LIMIT=N raises (or lowers) libtorrent's connection limit (default 200).
LT_LSD=1 in the environment turns local service discovery (BEP 14) on (default off).
LT_BIND=127.x.y.z (or ::1) in the environment listens and dials from that loopback address
instead of 127.0.0.1; PEERS may then name [::1]:PORT. Errors and libtorrent error alerts go to stderr. Exit codes: 0 finished (leecher) or
timed out (seeder: it only serves until TIMEOUT), 1 leecher timed out, 2 bad usage,
3 seeder's data is incomplete.
"""
import os
import sys
import time

import libtorrent as lt


def log(*a):
    print(*a, flush=True)


def err(*a):
    print(*a, file=sys.stderr, flush=True)


def encryption_settings():
    # LT_ENCRYPTION=forced: protocol encryption (MSE) in and out, RC4 only;
    # LT_ENCRYPTION=disabled: plaintext only. Unset: libtorrent's default (both accepted).
    mode = os.environ.get('LT_ENCRYPTION', '')
    if mode == 'forced':
        return {'out_enc_policy': int(lt.enc_policy.forced),
                'in_enc_policy': int(lt.enc_policy.forced),
                'allowed_enc_level': int(lt.enc_level.rc4),
                'prefer_rc4': True}
    if mode == 'disabled':
        return {'out_enc_policy': int(lt.enc_policy.disabled),
                'in_enc_policy': int(lt.enc_policy.disabled)}
    return {}


def transport_settings():
    # LT_TRANSPORT=utp: uTP only (BEP 29), TCP off both ways. Unset: TCP only.
    mode = os.environ.get('LT_TRANSPORT', '')
    if mode == 'utp':
        return {'enable_outgoing_tcp': False, 'enable_incoming_tcp': False,
                'enable_outgoing_utp': True, 'enable_incoming_utp': True}
    if mode not in ('', 'tcp'):
        raise SystemExit('LT_TRANSPORT must be tcp or utp')
    return {}


def settings(port):
    # The INTEROP.md settings pack: everything on 127.0.0.1 (or the loopback address in
    # LT_BIND), no discovery, TCP only.
    ip = os.environ.get('LT_BIND', '127.0.0.1')
    # LT_NETNS=1: the peer runs in a network namespace the test made (the port mapping
    # test's "internet" side), whose links reach only the test's other namespaces.
    if not (ip.startswith('127.') or ip == '::1' or os.environ.get('LT_NETNS') == '1'):
        raise SystemExit('LT_BIND must be a 127.x.y.z address or ::1')
    pack = dict(encryption_settings(), **{
        'listen_interfaces': ('[%s]:%d' if ':' in ip else '%s:%d') % (ip, port),
        'outgoing_interfaces': ip,
        'enable_dht': False,
        'dht_bootstrap_nodes': '',
        # LT_LSD=1: local service discovery (BEP 14) on, for the LSD tests only.
        'enable_lsd': os.environ.get('LT_LSD', '') == '1',
        'enable_upnp': False,
        'enable_natpmp': False,
        'enable_incoming_utp': False,
        'enable_outgoing_utp': False,
        'enable_ip_notifier': False,
        'allow_multiple_connections_per_ip': True,
        'alert_mask': lt.alert.category_t.error_notification
        | lt.alert.category_t.status_notification,
    })
    pack.update(transport_settings())
    # LT_CONNECTIONS_LIMIT=N: at most N connections (libtorrent's default is 200;
    # bench/manypeers.sh raises it).
    if os.environ.get('LT_CONNECTIONS_LIMIT'):
        pack['connections_limit'] = int(os.environ['LT_CONNECTIONS_LIMIT'])
    return pack


def parse_peers(s):
    if s in ('', '-'):
        return []
    out = []
    for p in s.split(','):
        p = p.strip()
        if not p:
            continue
        if ':' in p:
            host, port = p.rsplit(':', 1)
            host = host.strip('[]')
        else:
            host, port = '127.0.0.1', p
        out.append((host, int(port)))
    return out


def drain_alerts(ses):
    for a in ses.pop_alerts():
        cat = a.category()
        if cat & lt.alert.category_t.error_notification:
            err('alert: %s: %s' % (type(a).__name__, a.message()))


def run_peer(role, torrent, directory, port, peers, timeout, upload_limit,
             download_limit=0, no_pex=False, print_peers=False):
    ses = lt.session(settings(port))
    info = lt.torrent_info(torrent)
    params = lt.add_torrent_params()
    params.ti = info
    params.save_path = directory
    if no_pex:
        params.flags |= lt.torrent_flags.disable_pex
    if role == 'seed' and os.environ.get('LT_SUPER_SEED') == '1':
        # BEP 16 super-seeding (benchmarks compare it with spate's).
        params.flags |= lt.torrent_flags.super_seeding
    h = ses.add_torrent(params)
    if upload_limit:
        # The torrent's own peer class applies to local peers too (the session's global
        # limit does not: libtorrent exempts local networks from it).
        h.set_upload_limit(upload_limit)
    if download_limit:
        h.set_download_limit(download_limit)
    printed = set()
    start = time.monotonic()
    deadline = start + timeout

    # Wait for the listen socket and the data check.
    listening = False
    checked = False
    next_dial = 0.0
    next_status = 0.0
    while True:
        now = time.monotonic()
        if now > deadline:
            if role == 'seed':
                log('timeout: seeder stops after %.0f s' % timeout)
                return 0
            s = h.status()
            err('timeout: leecher not finished after %.0f s: progress=%.4f state=%s peers=%d'
                % (timeout, s.progress, s.state, s.num_peers))
            return 1
        if not listening and ses.is_listening():
            listening = True
            log('listening %d' % ses.listen_port())
        s = h.status()
        if not checked and s.state not in (lt.torrent_status.checking_files,
                                           lt.torrent_status.checking_resume_data):
            checked = True
            log('checked have=%d/%d pieces' % (s.num_pieces, info.num_pieces()))
            if role == 'seed':
                if not s.is_seeding:
                    err('error: seeder data incomplete: %d of %d pieces valid in %s'
                        % (s.num_pieces, info.num_pieces(), directory))
                    return 3
                log('seeding')
        if checked and peers and now >= next_dial:
            connected = set()
            try:
                for pi in h.get_peer_info():
                    connected.add(pi.ip)
            except Exception:
                pass
            for p in peers:
                if p not in connected:
                    h.connect_peer(p)
            next_dial = now + 2.0
        if print_peers:
            try:
                infos = h.get_peer_info()
            except Exception:
                infos = []
            for pi in infos:
                ep = '%s:%d' % (pi.ip[0], pi.ip[1])
                if ep in printed or pi.pid.is_all_zeros():
                    continue  # printed, or still in the handshake
                printed.add(ep)
                pid = bytes(pi.pid.to_bytes())[:8].decode('latin-1') if hasattr(pi.pid, 'to_bytes') \
                    else str(pi.pid)[:16]
                out = 1 if pi.flags & lt.peer_info.outgoing_connection else 0
                # client: libtorrent's name for it (from the extension handshake's `v`, else
                # from the peer id), last on the line, quoted.
                client = pi.client
                if isinstance(client, bytes):
                    client = client.decode('utf-8', 'replace')
                log('peer %s pid=%s outgoing=%d source=%d client="%s"'
                    % (ep, pid, out, int(pi.source), client))
        if now >= next_status:
            log('status state=%s progress=%.4f downloaded=%d uploaded=%d peers=%d'
                % (s.state, s.progress, s.total_payload_download, s.total_payload_upload,
                   s.num_peers))
            next_status = now + 0.5
        if role == 'leech' and checked and s.is_seeding \
                and s.total_wanted_done == s.total_wanted:
            log('finished downloaded=%d uploaded=%d seconds=%.3f'
                % (s.total_payload_download, s.total_payload_upload, now - start))
            return 0
        drain_alerts(ses)
        time.sleep(0.05)


def run_magnet(uri, directory, port, peers, timeout, save_torrent):
    ses = lt.session(settings(port))
    params = lt.parse_magnet_uri(uri)
    params.save_path = directory
    # Only the peers we dial: no trackers from the link, no DHT, LSD or PEX.
    params.trackers = []
    params.flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht \
        | lt.torrent_flags.disable_lsd
    h = ses.add_torrent(params)
    start = time.monotonic()
    deadline = start + timeout
    listening = False
    have_metadata = False
    next_dial = 0.0
    next_status = 0.0
    while True:
        now = time.monotonic()
        s = h.status()
        if now > deadline:
            err('timeout: magnet leecher not finished after %.0f s: has_metadata=%s '
                'progress=%.4f state=%s peers=%d'
                % (timeout, s.has_metadata, s.progress, s.state, s.num_peers))
            return 1
        if not listening and ses.is_listening():
            listening = True
            log('listening %d' % ses.listen_port())
        if not have_metadata and s.has_metadata:
            have_metadata = True
            ti = h.torrent_file()
            log('metadata info_hash=%s pieces=%d size=%d seconds=%.3f'
                % (str(ti.info_hash()), ti.num_pieces(), ti.total_size(), now - start))
            want = os.environ.get('LT_WANT_PIECES')
            if want:
                start, end = (int(x) for x in want.split(':'))
                h.prioritize_pieces([4 if start <= i < end else 0
                                     for i in range(ti.num_pieces())])
            if save_torrent:
                # The info dict exactly as the peer sent it, wrapped as a .torrent.
                info = bytes(ti.metadata())
                with open(save_torrent, 'wb') as f:
                    f.write(b'd4:info' + info + b'e')
        if peers and now >= next_dial:
            connected = set()
            try:
                for pi in h.get_peer_info():
                    connected.add(pi.ip)
            except Exception:
                pass
            for p in peers:
                if p not in connected:
                    h.connect_peer(p)
            next_dial = now + 2.0
        if now >= next_status:
            log('status state=%s progress=%.4f downloaded=%d uploaded=%d peers=%d'
                % (s.state, s.progress, s.total_payload_download, s.total_payload_upload,
                   s.num_peers))
            next_status = now + 0.5
        # With LT_WANT_PIECES the torrent ends `finished` (its wanted pieces checked), not
        # seeding.
        done = s.is_seeding or (os.environ.get('LT_WANT_PIECES') and s.is_finished)
        if have_metadata and done and s.total_wanted_done == s.total_wanted:
            log('finished downloaded=%d uploaded=%d seconds=%.3f'
                % (s.total_payload_download, s.total_payload_upload, now - start))
            return 0
        drain_alerts(ses)
        time.sleep(0.05)


def create(path, out, piece_length, private, trackers, symlinks=False, fmt='v1'):
    fs = lt.file_storage()
    path = os.path.abspath(path)
    # libtorrent records BEP 47 attributes itself: `x` for executable files, and with the
    # symlinks flag `l` and a `symlink path` for symlinks (instead of following them).
    extra = lt.create_torrent.symlinks if symlinks else 0
    lt.add_files(fs, path, flags=extra)
    if fs.num_files() == 0:
        err('error: no files in %s' % path)
        return 2
    fmt_flag = {'v1': lt.create_torrent.v1_only, 'v2': lt.create_torrent.v2_only,
                'hybrid': 0}[fmt]
    ct = lt.create_torrent(fs, piece_length, flags=fmt_flag | extra)
    for i, t in enumerate(trackers):
        ct.add_tracker(t, i)
    ct.set_priv(private)
    ct.set_creator('spate testkit lt_peer.py')
    lt.set_piece_hashes(ct, os.path.dirname(path))
    data = lt.bencode(ct.generate())
    with open(out, 'wb') as f:
        f.write(data)
    ti = lt.torrent_info(out)
    hashes = ti.info_hashes()
    v1 = str(hashes.v1) if hashes.has_v1() else '-'
    v2 = str(hashes.v2) if hashes.has_v2() else '-'
    log('created %s info_hash=%s info_hash_v2=%s pieces=%d' % (out, v1, v2, ti.num_pieces()))
    return 0


def usage():
    err(__doc__)
    return 2


def main(argv):
    if len(argv) < 2:
        return usage()
    role = argv[1]
    if role in ('seed', 'leech'):
        if len(argv) < 7:
            return usage()
        torrent, directory, port, peers, timeout = argv[2], argv[3], int(argv[4]), \
            parse_peers(argv[5]), float(argv[6])
        upload_limit = 0
        download_limit = 0
        no_pex = False
        print_peers = False
        rest = argv[7:]
        while rest:
            if rest[0] == '--upload-limit' and len(rest) > 1:
                upload_limit = int(rest[1])
                rest = rest[2:]
            elif rest[0] == '--download-limit' and len(rest) > 1:
                download_limit = int(rest[1])
                rest = rest[2:]
            elif rest[0] == '--no-pex':
                no_pex = True
                rest = rest[1:]
            elif rest[0] == '--print-peers':
                print_peers = True
                rest = rest[1:]
            else:
                return usage()
        return run_peer(role, torrent, directory, port, peers, timeout, upload_limit,
                        download_limit, no_pex, print_peers)
    if role == 'magnet':
        if len(argv) < 7:
            return usage()
        uri, directory, port, peers, timeout = argv[2], argv[3], int(argv[4]), \
            parse_peers(argv[5]), float(argv[6])
        save_torrent = None
        rest = argv[7:]
        while rest:
            if rest[0] == '--save-torrent' and len(rest) > 1:
                save_torrent = rest[1]
                rest = rest[2:]
            elif rest[0] == '--no-pex':
                rest = rest[1:]  # always so for a magnet leecher
            else:
                return usage()
        return run_magnet(uri, directory, port, peers, timeout, save_torrent)
    if role == 'create':
        if len(argv) < 5:
            return usage()
        path, out, piece_length = argv[2], argv[3], int(argv[4])
        private, trackers, symlinks, fmt = False, [], False, 'v1'
        rest = argv[5:]
        while rest:
            if rest[0] == '--private':
                private = True
                rest = rest[1:]
            elif rest[0] == '--symlinks':
                symlinks = True
                rest = rest[1:]
            elif rest[0] == '--tracker' and len(rest) > 1:
                trackers.append(rest[1])
                rest = rest[2:]
            elif rest[0] == '--format' and len(rest) > 1 and rest[1] in ('v1', 'v2', 'hybrid'):
                fmt = rest[1]
                rest = rest[2:]
            else:
                return usage()
        return create(path, out, piece_length, private, trackers, symlinks, fmt)
    if role == 'infohash':
        if len(argv) != 3:
            return usage()
        log(str(lt.torrent_info(argv[2]).info_hash()))
        return 0
    return usage()


if __name__ == '__main__':
    sys.exit(main(sys.argv))
