#!/usr/bin/python3
"""Many small seeding torrents in one daemon: spate daemon vs transmission-daemon, one run.

  bench/daemon_scale.py [--counts 1000,10000] [--settle 30] [--idle 60] [--spate PATH]

For each count N it makes N single-file torrents of 16 KiB each (one piece; data written
beside them), starts each daemon in turn on 127.0.0.1 with DHT, LSD, PEX, UPnP and trackers
out of the way (the torrents name no tracker), adds all N over its Transmission RPC
(`torrent-add` with base64 metainfo and the data's folder, so each verifies and seeds), and
measures:
  - time from the first add until every torrent is seeding (status 6),
  - peak RSS (VmHWM) of the daemon,
  - CPU seconds used over `--idle` seconds of idling, `--settle` seconds after all seed
    (spate parks a torrent that has had nothing to do for 5 s: the settled state is the
    one a long-running daemon spends its days in),
  - RSS (VmRSS) at the end of that idle time,
  - the latency of one `torrent-get` of the *arr field list for all torrents (median of 5).
Prints a table and the ratios spate/transmission. Only 127.0.0.1 is used.
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ARR_FIELDS = [
    "id", "name", "hashString", "status", "percentDone", "leftUntilDone", "sizeWhenDone",
    "totalSize", "eta", "downloadDir", "errorString", "error", "uploadRatio", "seedRatioLimit",
    "seedRatioMode", "seedIdleLimit", "seedIdleMode", "isFinished", "labels", "rateDownload",
    "rateUpload", "uploadedEver", "downloadedEver", "addedDate", "doneDate", "queuePosition",
    "secondsSeeding", "secondsDownloading", "fileCount",
]
PIECE = 16 * 1024


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):
        out = b"d"
        for k in sorted(v, key=lambda k: k.encode() if isinstance(k, str) else k):
            out += benc(k) + benc(v[k])
        return out + b"e"
    raise TypeError(v)


def make_torrents(n, folder):
    data_dir = os.path.join(folder, "data")
    os.makedirs(data_dir, exist_ok=True)
    out = []
    for i in range(n):
        name = "f%06d.bin" % i
        data = hashlib.sha256(b"%d" % i).digest() * (PIECE // 32)
        with open(os.path.join(data_dir, name), "wb") as f:
            f.write(data)
        info = {"name": name, "length": len(data), "piece length": PIECE,
                "pieces": hashlib.sha1(data).digest()}
        out.append(base64.b64encode(benc({"info": info})).decode())
    return data_dir, out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Rpc:
    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/transmission/rpc" % port
        self.sid = ""

    def call(self, method, args=None, timeout=600):
        body = json.dumps({"method": method, "arguments": args or {}}).encode()
        for _ in range(3):
            req = urllib.request.Request(self.url, data=body, headers={
                "X-Transmission-Session-Id": self.sid, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code == 409:
                    self.sid = e.headers.get("X-Transmission-Session-Id", "")
                    continue
                raise
        raise RuntimeError("no session id")


def wait_rpc(rpc, proc, secs=60):
    end = time.time() + secs
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("daemon exited with %s" % proc.returncode)
        try:
            rpc.call("session-get", timeout=5)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    raise RuntimeError("RPC did not come up")


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(parts[11]) + int(parts[12])) / tick


def vmhwm_mib(pid, field="VmHWM"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def start_spate(spate, work, rpc_port):
    peer = free_port()
    env = dict(os.environ, XDG_CONFIG_HOME=work, XDG_STATE_HOME=work, SPATE_NO_DHT="1", SPATE_NO_LSD="1", SPATE_NO_PORTMAP="1")
    cmd = [spate, "daemon", "--config", os.path.join(work, "config.toml"),
           "--rpc", "127.0.0.1:%d" % rpc_port, "--listen", "127.0.0.1:%d" % peer,
           "--state-dir", os.path.join(work, "state"), "--download-dir", work, "--no-dht", "--no-lsd", "--no-port-mapping"]
    log = open(os.path.join(work, "daemon.log"), "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)


def start_transmission(work, rpc_port):
    cfg = os.path.join(work, "tr-config")
    os.makedirs(cfg, exist_ok=True)
    settings = {
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "port-forwarding-enabled": False, "utp-enabled": False,
        "bind-address-ipv4": "127.0.0.1", "rpc-bind-address": "127.0.0.1",
        "rpc-whitelist": "127.0.0.1,::1", "rpc-port": rpc_port, "peer-port": free_port(),
        "peer-port-random-on-start": False, "download-dir": work,
        "speed-limit-down-enabled": False, "speed-limit-up-enabled": False,
        "download-queue-enabled": False, "seed-queue-enabled": False,
        "rpc-authentication-required": False, "rpc-host-whitelist-enabled": False,
        "message-level": 1,
    }
    with open(os.path.join(cfg, "settings.json"), "w") as f:
        json.dump(settings, f)
    log = open(os.path.join(work, "daemon.log"), "w")
    return subprocess.Popen(["transmission-daemon", "-f", "-g", cfg], stdout=log, stderr=log,
                            start_new_session=True)


def run_one(label, start, torrents, data_dir, idle, work, settle=0):
    port = free_port()
    p = start(work, port)
    rpc = Rpc(port)
    result = {"label": label}
    try:
        wait_rpc(rpc, p)
        t0 = time.time()
        for b64 in torrents:
            r = rpc.call("torrent-add", {"metainfo": b64, "download-dir": data_dir})
            if r.get("result") != "success":
                raise RuntimeError("torrent-add: %s" % r.get("result"))
        result["add_all_s"] = time.time() - t0
        deadline = t0 + 1800
        while True:
            r = rpc.call("torrent-get", {"fields": ["id", "status"]})
            ts = r["arguments"]["torrents"]
            seeding = sum(1 for t in ts if t["status"] == 6)
            if seeding == len(torrents):
                break
            if time.time() > deadline:
                raise RuntimeError("only %d of %d seeding after 30 min" % (seeding, len(torrents)))
            time.sleep(0.5)
        result["to_all_seeding_s"] = time.time() - t0
        time.sleep(settle)
        cpu0 = proc_stat(p.pid)
        time.sleep(idle)
        result["idle_cpu_s"] = proc_stat(p.pid) - cpu0
        lat = []
        for _ in range(5):
            s = time.time()
            r = rpc.call("torrent-get", {"fields": ARR_FIELDS})
            lat.append(time.time() - s)
            assert len(r["arguments"]["torrents"]) == len(torrents)
        result["get_all_ms"] = statistics.median(lat) * 1000
        result["peak_rss_mib"] = vmhwm_mib(p.pid)
        result["rss_after_idle_mib"] = vmhwm_mib(p.pid, "VmRSS")
    except Exception as e:  # noqa: BLE001 - reported in the table
        result["error"] = str(e)
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=60)
        except Exception:  # noqa: BLE001
            os.killpg(p.pid, signal.SIGKILL)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1000,10000")
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--settle", type=int, default=30)
    ap.add_argument("--spate", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "spate"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", choices=["spate", "transmission"], help="run one daemon only")
    a = ap.parse_args()
    if not shutil.which("transmission-daemon"):
        sys.exit("transmission-daemon is missing (apt-get install transmission-daemon)")
    rows = []
    for n in [int(x) for x in a.counts.split(",")]:
        base = tempfile.mkdtemp(prefix="spate-scale-%d-" % n, dir=os.environ.get("BENCH_TMP", "/var/tmp"))
        data_dir, torrents = make_torrents(n, base)
        for label, start in (("spate", lambda w, port: start_spate(a.spate, w, port)),
                             ("transmission", start_transmission)):
            if a.only and a.only != label:
                continue
            work = os.path.join(base, label)
            os.makedirs(work)
            r = run_one(label, start, torrents, data_dir, a.idle, work, a.settle)
            r["n"] = n
            print(json.dumps(r), flush=True)
            rows.append(r)
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print("%-13s %7s %14s %12s %14s %14s %14s" % ("daemon", "N", "to seeding s", "peak RSS", "RSS idle", "idle CPU s", "get-all ms"))
    for r in rows:
        if "error" in r:
            print("%-13s %7d  error: %s" % (r["label"], r["n"], r["error"]))
            continue
        print("%-13s %7d %14.1f %9.1f MiB %10.1f MiB %14.2f %14.1f" % (
            r["label"], r["n"], r["to_all_seeding_s"], r["peak_rss_mib"], r["rss_after_idle_mib"],
            r["idle_cpu_s"], r["get_all_ms"]))
    for n in sorted({r["n"] for r in rows}):
        s = next((r for r in rows if r["n"] == n and r["label"] == "spate" and "error" not in r), None)
        t = next((r for r in rows if r["n"] == n and r["label"] == "transmission" and "error" not in r), None)
        if s and t:
            print("ratio spate/transmission N=%d: to seeding %.2f, peak RSS %.2f, idle CPU %.2f, get-all %.2f" % (
                n, s["to_all_seeding_s"] / max(t["to_all_seeding_s"], 1e-9),
                s["peak_rss_mib"] / max(t["peak_rss_mib"], 1e-9),
                s["idle_cpu_s"] / max(t["idle_cpu_s"], 1e-9),
                s["get_all_ms"] / max(t["get_all_ms"], 1e-9)))


if __name__ == "__main__":
    main()
