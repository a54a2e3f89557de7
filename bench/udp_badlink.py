#!/usr/bin/env python3
"""A UDP relay that emulates a bad link, for bench/utp.sh LOSSY=1 (this machine's kernel has
no netem): every datagram, both ways, is dropped with probability LOSS, else sent at once with
probability REORDER (overtaking the others) or after DELAY seconds.

    udp_badlink.py LISTEN_PORT TARGET_PORT [DELAY=0.05] [LOSS=0.01] [REORDER=0.25]

Listens on 127.0.0.1:LISTEN_PORT and relays to 127.0.0.1:TARGET_PORT, one upstream socket per
client. Prints `ready` once listening; runs until killed.
"""
import heapq
import random
import selectors
import socket
import sys
import time


def main():
    listen, target = int(sys.argv[1]), ('127.0.0.1', int(sys.argv[2]))
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    loss = float(sys.argv[4]) if len(sys.argv) > 4 else 0.01
    reorder = float(sys.argv[5]) if len(sys.argv) > 5 else 0.25
    rng = random.Random(7)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(('127.0.0.1', listen))
    front.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(front, selectors.EVENT_READ, None)
    up = {}  # client addr -> upstream socket
    queue = []  # (time, seq, sock, data, dest)
    seq = 0
    print('ready', flush=True)
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        for key, _ in sel.select(timeout):
            sock, client = key.fileobj, key.data
            while True:
                try:
                    data, frm = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                if client is None:  # from a client, to the target
                    s = up.get(frm)
                    if s is None:
                        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        s.bind(('127.0.0.1', 0))
                        s.setblocking(False)
                        up[frm] = s
                        sel.register(s, selectors.EVENT_READ, frm)
                    out, dest = s, target
                else:  # from the target, back to its client
                    out, dest = front, client
                if rng.random() < loss:
                    continue
                at = time.monotonic() + (0 if rng.random() < reorder else delay)
                seq += 1
                heapq.heappush(queue, (at, seq, out, data, dest))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, data, dest = heapq.heappop(queue)
            try:
                out.sendto(data, dest)
            except OSError:
                pass


if __name__ == '__main__':
    main()
