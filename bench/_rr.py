"""A TCP request/response latency probe (netperf's TCP_RR, in Python): one byte there, one back.

    python bench/_rr.py server PORT            prints "ready" once listening, serves one client
    python bench/_rr.py client HOST PORT N     prints {"p50_us", "p99_us", "mean_us"} as JSON

Run with the same interpreter on both sides of every path measured (nsenter/ip netns exec into
the namespaces), so its own overhead (~10 us a round trip) is the same in each figure."""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time


def server(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(1)
        print("ready", flush=True)
        conn, _ = s.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                b = conn.recv(1)
                if not b:
                    return
                conn.sendall(b)


def client(host: str, port: int, n: int) -> None:
    with socket.create_connection((host, port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(50):       # warm-up: ARP, caches
            c.sendall(b"x")
            c.recv(1)
        us = []
        for _ in range(n):
            t = time.perf_counter_ns()
            c.sendall(b"x")
            c.recv(1)
            us.append((time.perf_counter_ns() - t) / 1000)
    us.sort()
    print(json.dumps({"p50_us": us[len(us) // 2], "p99_us": us[int(len(us) * 0.99)],
                      "mean_us": statistics.fmean(us)}))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
