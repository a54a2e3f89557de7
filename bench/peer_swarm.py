#!/usr/bin/python3
"""Many lightweight BitTorrent peers for bench/manypeers.sh, in one asyncio process.

  peer_swarm.py TORRENT HOST:PORT COUNT [--timeout S]

Opens COUNT TCP connections to HOST:PORT (the leecher under test), each from its own
loopback address 127.1.X.Y (X = i // 250, Y = i % 250 + 1), and speaks plaintext BitTorrent
(BEP 3) to it: the handshake for TORRENT's info-hash, then `interested`, then it reads and
throws away whatever the leecher sends (its HAVEs, bitfield, chokes, keep-alives), sending a
keep-alive every 60 s. These peers have no pieces and never request one: they are what a
leecher in a big swarm pays for being connected to many peers, not a source of data. A
connection that is closed or refused is dialled again after a second.

Output (stdout, line by line): `connected N T` whenever the number of connections with a
completed handshake changes (checked every 0.1 s; T is the Unix time), and `peak N` at exit. Exits after S
seconds (default 3600) or on SIGTERM/SIGINT. Only 127.0.0.0/8 addresses are used.
"""
import argparse
import asyncio
import hashlib
import os
import signal
import sys
import time


def info_hash(path):
    """SHA-1 of the raw `info` value of a .torrent (a small bencode walker)."""
    data = open(path, 'rb').read()

    def end_of(i):
        c = data[i:i + 1]
        if c == b'i':
            return data.index(b'e', i) + 1
        if c in (b'l', b'd'):
            i += 1
            while data[i:i + 1] != b'e':
                i = end_of(i)
            return i + 1
        colon = data.index(b':', i)
        return colon + 1 + int(data[i:colon])

    if data[:1] != b'd':
        raise SystemExit('%s: not a torrent' % path)
    i = 1
    while data[i:i + 1] != b'e':
        k_end = end_of(i)
        colon = data.index(b':', i)
        key = data[colon + 1:k_end]
        v_end = end_of(k_end)
        if key == b'info':
            return hashlib.sha1(data[k_end:v_end]).digest()
        i = v_end
    raise SystemExit('%s: no info dictionary' % path)


class Swarm:
    def __init__(self, ih, host, port):
        self.ih, self.host, self.port = ih, host, port
        self.connected = 0
        self.peak = 0

    async def peer(self, i):
        src = '127.1.%d.%d' % (i // 250, i % 250 + 1)
        pid = b'-PS0001-' + os.urandom(12)
        while True:
            up = False
            try:
                r, w = await asyncio.open_connection(self.host, self.port,
                                                     local_addr=(src, 0))
                w.write(b'\x13BitTorrent protocol' + bytes(8) + self.ih + pid)
                w.write(b'\x00\x00\x00\x01\x02')  # interested
                await w.drain()
                hs = await r.readexactly(68)
                if hs[28:48] != self.ih:
                    raise ConnectionError('wrong info-hash')
                up = True
                self.connected += 1
                self.peak = max(self.peak, self.connected)
                while True:
                    try:
                        chunk = await asyncio.wait_for(r.read(65536), 60)
                    except asyncio.TimeoutError:
                        w.write(bytes(4))  # keep-alive
                        await w.drain()
                        continue
                    if not chunk:
                        break
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                if up:
                    self.connected -= 1
            await asyncio.sleep(1)

    async def report(self):
        last = None
        while True:
            if self.connected != last:
                last = self.connected
                print('connected %d %.3f' % (last, time.time()), flush=True)
            await asyncio.sleep(0.1)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('torrent')
    ap.add_argument('target', help='HOST:PORT of the leecher, a 127.x.y.z address')
    ap.add_argument('count', type=int)
    ap.add_argument('--timeout', type=float, default=3600)
    a = ap.parse_args()
    host, port = a.target.rsplit(':', 1)
    if not host.startswith('127.'):
        raise SystemExit('the target must be on 127.0.0.0/8')
    if not 0 < a.count <= 250 * 250:
        raise SystemExit('COUNT must be 1..62500')
    swarm = Swarm(info_hash(a.torrent), host, int(port))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    tasks = [asyncio.create_task(swarm.peer(i)) for i in range(a.count)]
    tasks.append(asyncio.create_task(swarm.report()))
    try:
        await asyncio.wait_for(stop.wait(), a.timeout)
    except asyncio.TimeoutError:
        pass
    print('peak %d' % swarm.peak, flush=True)
    for t in tasks:
        t.cancel()


if __name__ == '__main__':
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(130)
