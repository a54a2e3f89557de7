#!/usr/bin/python3
"""Helpers for bench/loopback.sh.

  measure.py run --label L --log PREFIX --timeout S [--expect FILE --got FILE] -- CMD...
      Runs CMD under `/usr/bin/time -f '%e %U %S %M'`, samples the downloader's
      /proc/PID/status (VmHWM, RssAnon) every 20 ms, kills its process group after S seconds,
      optionally compares the downloaded FILE with the source, and prints one JSON line:
      {"label", "ok", "exit", "error", "wall_s", "user_s", "sys_s", "maxrss_kib",
       "vmhwm_kib", "rssanon_peak_kib", "log"}.
      --watch PID also samples a process that is already running (a seeder): its CPU
      seconds during the run ("watch_cpu_s", from /proc/PID/stat, all threads), its VmHWM at
      the end ("watch_vmhwm_kib") and its peak RssAnon ("watch_rssanon_peak_kib").
      --expect and --got may be folders (a multi-file torrent): every file is compared.

  measure.py summary --size BYTES RESULTS.jsonl
      Prints median MB/s, CPU seconds (user+sys), peak RSS (time's %M) and peak RssAnon
      (heap: libtorrent maps files into memory, so its RSS counts file pages) per label,
      and the ratios spate/libtorrent (or spate/--against LABEL).
"""
import argparse
import filecmp
import json
import os
import signal
import statistics
import subprocess
import sys
import time


def status_kib(pid, key):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_s(pid):
    """User+system CPU seconds of a whole process (all its threads), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


def same_tree(a, b):
    """True when b holds the same file, or the same files (recursively), as a."""
    if os.path.isfile(a):
        return os.path.isfile(b) and filecmp.cmp(a, b, shallow=False)
    for root, _dirs, files in os.walk(a):
        for name in files:
            x = os.path.join(root, name)
            y = os.path.join(b, os.path.relpath(x, a))
            if not os.path.isfile(y) or not filecmp.cmp(x, y, shallow=False):
                return False
    return True


def children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tail(path, n=8):
    try:
        with open(path, 'rb') as f:
            lines = f.read().decode('utf-8', 'replace').replace('\r', '\n').splitlines()
        return [l for l in lines if l.strip()][-n:]
    except OSError:
        return []


def run(a):
    timefile = a.log + '.time'
    out_path, err_path = a.log + '.stdout', a.log + '.stderr'
    cmd = ['/usr/bin/time', '-f', '%e %U %S %M', '-o', timefile] + a.cmd
    res = {'label': a.label, 'ok': False, 'exit': None, 'error': None, 'log': a.log}
    vmhwm = rssanon = 0
    watch_anon = 0
    watch_cpu0 = cpu_s(a.watch) if a.watch else None
    try:
        with open(out_path, 'wb') as out, open(err_path, 'wb') as err:
            p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError as e:
        res['error'] = 'cannot start: %s' % e
        return res
    deadline = time.monotonic() + a.timeout
    timed_out = False
    while p.poll() is None:
        for c in children(p.pid):
            h = status_kib(c, 'VmHWM')
            r = status_kib(c, 'RssAnon')
            if h:
                vmhwm = max(vmhwm, h)
            if r:
                rssanon = max(rssanon, r)
        if a.watch:
            r = status_kib(a.watch, 'RssAnon')
            if r:
                watch_anon = max(watch_anon, r)
        if time.monotonic() > deadline:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()
            break
        time.sleep(0.02)
    res['exit'] = p.returncode
    if a.watch:
        c = cpu_s(a.watch)
        res['watch_cpu_s'] = None if c is None or watch_cpu0 is None else c - watch_cpu0
        res['watch_vmhwm_kib'] = status_kib(a.watch, 'VmHWM')
        res['watch_rssanon_peak_kib'] = watch_anon or None
    res['vmhwm_kib'] = vmhwm or None
    res['rssanon_peak_kib'] = rssanon or None
    try:
        with open(timefile) as f:
            fields = f.read().strip().splitlines()[-1].split()
        res['wall_s'], res['user_s'], res['sys_s'] = (float(x) for x in fields[:3])
        res['maxrss_kib'] = int(fields[3])
    except (OSError, ValueError, IndexError):
        pass
    if timed_out:
        res['error'] = 'timed out after %.0f s' % a.timeout
    elif p.returncode != 0:
        res['error'] = 'exit code %s' % p.returncode
    elif a.expect and not os.path.exists(a.got):
        res['error'] = 'exit 0 but no file at %s' % a.got
    elif a.expect and not same_tree(a.expect, a.got):
        res['error'] = 'exit 0 but %s differs from the source' % a.got
    else:
        res['ok'] = True
    if not res['ok']:
        res['stderr_tail'] = tail(err_path)
        res['stdout_tail'] = tail(out_path, 3)
    return res


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec):
    return 'n/a' if x is None else format(x, spec)


def summary(a):
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    labels = []
    for r in rows:
        if r['label'] not in labels:
            labels.append(r['label'])
    stats = {}
    print('%-11s %5s %9s %8s %10s %13s %11s' % (
        'downloader', 'runs', 'MB/s', 'CPU s', 'wall s', 'peak RSS MiB', 'RssAnon MiB'))
    for label in labels:
        mine = [r for r in rows if r['label'] == label]
        ok = [r for r in mine if r['ok']]
        s = {
            'mbps': median([a.size / 1e6 / r['wall_s'] for r in ok if r.get('wall_s')]),
            'cpu': median([r['user_s'] + r['sys_s'] for r in ok if 'user_s' in r]),
            'wall': median([r['wall_s'] for r in ok if 'wall_s' in r]),
            'rss': median([r['maxrss_kib'] / 1024 for r in ok if r.get('maxrss_kib')]),
            'anon': median([r['rssanon_peak_kib'] / 1024 for r in ok
                            if r.get('rssanon_peak_kib')]),
        }
        stats[label] = s
        print('%-11s %2d/%-2d %9s %8s %10s %13s %11s' % (
            label, len(ok), len(mine), fmt(s['mbps'], '.1f'), fmt(s['cpu'], '.2f'),
            fmt(s['wall'], '.2f'), fmt(s['rss'], '.1f'), fmt(s['anon'], '.1f')))
        bad = [r for r in mine if not r['ok']]
        if bad:
            r = bad[0]
            print('  %s: %d run(s) FAILED; first: %s (logs %s.*)' % (
                label, len(bad), r.get('error'), r.get('log')))
            for l in r.get('stderr_tail', []):
                print('    | ' + l[:200])
    other = a.against
    sp, lt = stats.get('spate'), stats.get(other)
    print()
    if not sp or not lt or sp['mbps'] is None or lt['mbps'] is None:
        print('ratios spate/%s: n/a (%s has no successful run)' % (
            other, 'spate' if not sp or sp['mbps'] is None else other))
        return 1

    def ratio(k):
        return None if sp[k] is None or not lt[k] else sp[k] / lt[k]
    print('ratios spate/%s: speed %s  CPU %s  peak RSS %s  RssAnon %s' % (
        other, fmt(ratio('mbps'), '.2f'), fmt(ratio('cpu'), '.2f'), fmt(ratio('rss'), '.2f'),
        fmt(ratio('anon'), '.2f')))
    if any('watch_cpu_s' in r for r in rows):
        # The watched process (a seeder): its CPU during the download, peak RSS, RssAnon.
        w = {}
        print()
        print('%-11s %13s %13s %11s' % ('seeder', 'CPU s', 'peak RSS MiB', 'RssAnon MiB'))
        for label in labels:
            ok = [r for r in rows if r['label'] == label and r['ok']]
            w[label] = {
                'cpu': median([r['watch_cpu_s'] for r in ok
                               if r.get('watch_cpu_s') is not None]),
                'rss': median([r['watch_vmhwm_kib'] / 1024 for r in ok
                               if r.get('watch_vmhwm_kib')]),
                'anon': median([r['watch_rssanon_peak_kib'] / 1024 for r in ok
                                if r.get('watch_rssanon_peak_kib')]),
            }
            print('%-11s %13s %13s %11s' % (label, fmt(w[label]['cpu'], '.2f'),
                                            fmt(w[label]['rss'], '.1f'),
                                            fmt(w[label]['anon'], '.1f')))
        ws, wl = w.get('spate', {}), w.get(other, {})

        def wratio(k):
            return None if ws.get(k) is None or not wl.get(k) else ws[k] / wl[k]
        print('seeder ratios spate/%s: CPU %s  peak RSS %s  RssAnon %s' % (
            other, fmt(wratio('cpu'), '.2f'), fmt(wratio('rss'), '.2f'),
            fmt(wratio('anon'), '.2f')))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='what', required=True)
    r = sub.add_parser('run')
    r.add_argument('--label', required=True)
    r.add_argument('--log', required=True)
    r.add_argument('--timeout', type=float, default=600)
    r.add_argument('--expect')
    r.add_argument('--got')
    r.add_argument('--watch', type=int, help='a running process to sample too (a seeder)')
    r.add_argument('cmd', nargs=argparse.REMAINDER)
    s = sub.add_parser('summary')
    s.add_argument('--size', type=int, required=True)
    s.add_argument('--against', default='libtorrent',
                   help='the label spate is compared with (default libtorrent)')
    s.add_argument('results')
    a = ap.parse_args()
    if a.what == 'run':
        if a.cmd and a.cmd[0] == '--':
            a.cmd = a.cmd[1:]
        if not a.cmd:
            ap.error('run needs a command after --')
        print(json.dumps(run(a)), flush=True)
        return 0
    return summary(a)


if __name__ == '__main__':
    sys.exit(main())
