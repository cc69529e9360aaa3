"""Latency of `POST /v1/events` (and `GET /healthz` as the HTTP floor) against a served gateway.

Each connection is a raw keep-alive HTTP/1.1 socket sending one request at a time, so the
numbers are the gateway's (parse, validate, durable append with group-committed fdatasync,
profile update, 202) plus loopback, without an HTTP client library's own overhead. With
--connections > 1 the connections run in parallel threads (concurrent events share fsyncs).

  python bench/events_latency.py --port 8000 --requests 2000 --connections 1 --doc-id 4983
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np


def one_connection(port: int, n: int, path: str, body: dict | None, out: list[float]) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = json.dumps(body).encode() if body else b""
    method = "POST" if body else "GET"
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    try:
        for _ in range(n):
            started = time.perf_counter()
            sock.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the gateway closed the connection")
                buf += chunk
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            length = next(int(v.split(b":")[1]) for v in lines if v.lower().startswith(b"content-length"))
            while len(rest) < length:
                rest += sock.recv(65536)
            out.append((time.perf_counter() - started) * 1e3)
            status = lines[0].split()[1]
            if status not in (b"200", b"202"):
                raise RuntimeError(f"{path}: {lines[0].decode()} {rest[:200]!r}")
    finally:
        sock.close()


def measure(port: int, n: int, connections: int, path: str, body_of) -> dict[str, float]:
    results: list[list[float]] = [[] for _ in range(connections)]
    threads = [
        threading.Thread(target=one_connection, args=(port, n, path, body_of(i), results[i]))
        for i in range(connections)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.concatenate([np.array(r) for r in results])
    if len(lat) != n * connections:
        raise SystemExit(f"{path}: only {len(lat)} of {n * connections} requests answered")
    p50, p95, p99, worst = np.percentile(lat, [50, 95, 99, 100])
    return {"n": int(len(lat)), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": worst,
            "requests_per_s": len(lat) / wall}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--requests", type=int, default=2000, help="per connection")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--doc-id", required=True, help="a document id of the served index")
    p.add_argument("--out", type=Path, help="write the results JSON here")
    args = p.parse_args()
    run = f"latency-{os.getpid()}"
    out = {
        "healthz": measure(args.port, args.requests, args.connections, "/healthz", lambda i: None),
        "events": measure(args.port, args.requests, args.connections, "/v1/events",
                          lambda i: {"user_id": f"{run}-{i}", "doc_id": args.doc_id, "type": "click"}),
        "config": vars(args) | {"out": str(args.out), "loadavg_after": os.getloadavg()},
    }
    text = json.dumps(out, indent=2, default=float)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
