#!/usr/bin/python3
"""Magnet link to metadata and to first verified piece over a loopback DHT: spate vs
libtorrent, in one run. Called by bench/dht_magnet.sh (which builds spate and enters a
network namespace); every address is in 127.0.9.0/24.

  dht_magnet.py --spate BIN --work DIR [--rounds N] [--size MIB]

The DHT: 20 `spate dht node`s and 3 libtorrent nodes (lt_dht.py node). A libtorrent seeder
announces the torrent. Each round, spate and a libtorrent leecher (in alternating order) get
only the bare magnet link and one DHT node (a different one each round), with a fresh
routing table. Times:
  spate:      from process start to the stderr lines `metadata fetched and verified`,
              `first piece verified`, and to its exit (every piece verified);
  libtorrent: from its session's creation (after the Python interpreter has started and
              imported libtorrent, which favours libtorrent) to metadata_received_alert,
              the first piece_finished_alert, and every piece verified.
Prints one line per run and the medians and ratios.
"""
import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LT_DHT = os.path.join(HERE, '..', 'crates', 'testkit', 'py', 'lt_dht.py')
NET = '127.0.9.'
PORT = 6881
NODES = 20


def die(msg):
    print('dht_magnet: ' + msg, file=sys.stderr, flush=True)
    sys.exit(1)


class Proc:
    """A child whose stdout and stderr lines are collected with the time they arrived."""

    def __init__(self, name, cmd, logdir):
        self.name = name
        self.start = time.monotonic()
        self.lines = []
        self.lock = threading.Lock()
        self.out = open(os.path.join(logdir, name + '.log'), 'w')
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, start_new_session=True)
        for stream in (self.p.stdout, self.p.stderr):
            threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            t = time.monotonic() - self.start
            with self.lock:
                self.lines.append((t, line.rstrip('\n')))
                self.out.write('%.3f %s' % (t, line))
                self.out.flush()

    def first(self, pred):
        with self.lock:
            for t, l in self.lines:
                if pred(l):
                    return t, l
        return None

    def wait_line(self, pred, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            hit = self.first(pred)
            if hit:
                return hit
            if self.p.poll() is not None:
                time.sleep(0.1)
                hit = self.first(pred)
                if hit:
                    return hit
                die('%s exited before %s (log: %s)' % (self.name, what, self.out.name))
            time.sleep(0.02)
        die('%s: no %s within %d s (log: %s)' % (self.name, what, timeout, self.out.name))

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, 9)
            except OSError:
                pass
            self.p.wait()


def node_count(line):
    if not line.startswith('dht: '):
        return -1
    try:
        return int(line.split()[1])
    except (IndexError, ValueError):
        return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--spate', required=True)
    ap.add_argument('--work', required=True)
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--size', type=int, default=64, help='MiB')
    a = ap.parse_args()
    logs = os.path.join(a.work, 'logs')
    os.makedirs(logs, exist_ok=True)
    src = os.path.join(a.work, 'src')
    os.makedirs(src, exist_ok=True)
    data = os.path.join(src, 'bench.bin')
    with open(data, 'wb') as f:
        for _ in range(a.size):
            f.write(os.urandom(1 << 20))
    torrent = os.path.join(a.work, 'bench.torrent')
    out = subprocess.run([a.spate, 'create', data, '-o', torrent, '--piece-length', '262144'],
                         capture_output=True, text=True, check=True).stdout
    magnet = next(l.split()[1] for l in out.splitlines() if l.startswith('magnet:'))
    magnet = magnet.split('&')[0]  # the bare link: no name, no trackers, no peers
    env = dict(os.environ)
    env.pop('SPATE_NO_DHT', None)
    env['SPATE_NO_LSD'] = '1'  # peers from the DHT only, no multicast
    env['SPATE_NO_PORTMAP'] = '1'  # no gateway asked to forward ports
    procs = []
    try:
        for i in range(NODES):
            cmd = [a.spate, 'dht', 'node', '--listen', '%s%d:%d' % (NET, 10 + i, PORT),
                   '--status-interval', '1']
            if i:
                cmd += ['--bootstrap', '%s10:%d' % (NET, PORT),
                        '--bootstrap', '%s%d:%d' % (NET, 9 + i, PORT)]
            procs.append(Proc('node%d' % i, cmd, logs))
        procs[-1].wait_line(lambda l: node_count(l) >= 8, 30, 'a table of 8 nodes')
        for i in range(3):
            procs.append(Proc('ltnode%d' % i,
                              ['/usr/bin/python3', '-W', 'ignore', LT_DHT, 'node',
                               '%s%d' % (NET, 60 + i), str(PORT),
                               '%s%d:%d,%s%d:%d' % (NET, 11 + 3 * i, PORT, NET, 17 + i, PORT),
                               '3600'], logs))
        seeder = Proc('ltseed', ['/usr/bin/python3', '-W', 'ignore', LT_DHT, 'seed',
                                 NET + '80', str(PORT), '%s15:%d,%s60:%d' % (NET, PORT, NET, PORT),
                                 '3600', torrent, src], logs)
        procs.append(seeder)
        seeder.wait_line(lambda l: l == 'seeding', 120, '`seeding`')
        time.sleep(3)  # its first announce spreads

        results = {'spate': [], 'libtorrent': []}
        for r in range(a.rounds):
            entry = '%s%d:%d' % (NET, 10 + (3 + 5 * r) % NODES, PORT)
            order = ['spate', 'libtorrent'] if r % 2 == 0 else ['libtorrent', 'spate']
            for who in order:
                dl = os.path.join(a.work, 'dl-%s-%d' % (who, r))
                shutil.rmtree(dl, ignore_errors=True)
                os.makedirs(dl)
                if who == 'spate':
                    cmd = [a.spate, 'download', magnet, '-o', dl, '--no-seed',
                           '--listen', '%s%d:%d' % (NET, 100 + r, PORT),
                           '--dht-bootstrap', entry, '--dht-state', os.path.join(dl, 'dht.dat'),
                           '--metadata-timeout', '60']
                    p = Proc('spate-%d' % r, cmd, logs)
                    code = p.wait(120)
                    meta = p.first(lambda l: 'metadata fetched and verified' in l)
                    first = p.first(lambda l: 'first piece verified' in l)
                    done = time.monotonic() - p.start
                    t = (meta and meta[0], first and first[0], done)
                else:
                    cmd = ['/usr/bin/python3', '-W', 'ignore', LT_DHT, 'magnet',
                           '%s%d' % (NET, 150 + r), str(PORT), entry, '120', magnet, dl]
                    p = Proc('lt-%d' % r, cmd, logs)
                    code = p.wait(150)

                    def at(key):
                        hit = p.first(lambda l: l.startswith(key + ' '))
                        return float(hit[1].split()[1]) if hit else None
                    t = (at('metadata'), at('first_piece'), at('finished'))
                ok = code == 0 and None not in t and \
                    filecmp.cmp(data, os.path.join(dl, 'bench.bin'), shallow=False)
                print('round %d %-10s exit=%s metadata=%s first_piece=%s done=%s %s'
                      % (r + 1, who, code, *('%.3f' % x if x is not None else '-' for x in t),
                         'ok' if ok else 'FAILED (log: %s)' % p.out.name), flush=True)
                if ok:
                    results[who].append(t)
                shutil.rmtree(dl, ignore_errors=True)
        print()
        med = {}
        for who, rs in results.items():
            if not rs:
                die('%s never succeeded' % who)
            med[who] = [statistics.median(x[i] for x in rs) for i in range(3)]
            print('%-10s median of %d: metadata %.3f s, first piece %.3f s, all %d MiB %.3f s'
                  % (who, len(rs), med[who][0], med[who][1], a.size, med[who][2]))
        s, l = med['spate'], med['libtorrent']
        print('ratio spate/libtorrent (lower is faster): metadata %.2f, first piece %.2f, '
              'all %.2f' % (s[0] / l[0], s[1] / l[1], s[2] / l[2]))
    finally:
        for p in procs:
            p.kill()


if __name__ == '__main__':
    main()
