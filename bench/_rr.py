"""A TCP request/response latency probe (netperf's TCP_RR, in Python): one byte there, one back.

    python bench/_rr.py server PORT            prints "ready" once listening, serves one client
    python bench/_rr.py client HOST PORT N     prints {"p50_us", "p99_us", "mean_us"} as JSON
    python bench/_rr.py cserver PORT           the same, a new connection per round trip
    python bench/_rr.py cclient HOST PORT N    connect, 1 byte there and back, close (TCP_CRR):
                                               what a firewall's rules cost, seen once a flow

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


def cserver(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(128)
        print("ready", flush=True)
        while True:
            conn, _ = s.accept()
            with conn:
                b = conn.recv(1)
                if b == b"q":
                    return
                conn.sendall(b)


def cclient(host: str, port: int, n: int) -> None:
    us = []
    for i in range(n + 20):            # the first 20: warm-up (ARP, caches)
        t = time.perf_counter_ns()
        with socket.create_connection((host, port), timeout=10) as c:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(b"x")
            c.recv(1)
        if i >= 20:
            us.append((time.perf_counter_ns() - t) / 1000)
    with socket.create_connection((host, port), timeout=10) as c:
        c.sendall(b"q")
    report(us)


def report(us: list[float]) -> None:
    us.sort()
    print(json.dumps({"p50_us": us[len(us) // 2], "p99_us": us[int(len(us) * 0.99)],
                      "mean_us": statistics.fmean(us)}))


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
    report(us)


if __name__ == "__main__":
    if sys.argv[1] in ("server", "cserver"):
        (server if sys.argv[1] == "server" else cserver)(int(sys.argv[2]))
    else:
        (client if sys.argv[1] == "client" else cclient)(sys.argv[2], int(sys.argv[3]),
                                                          int(sys.argv[4]))
