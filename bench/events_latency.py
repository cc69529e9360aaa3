"""Latency of `POST /v1/events`, and where it goes, against a served gateway.

Each connection is a raw keep-alive HTTP/1.1 socket sending one request at a time, so the
numbers are the gateway's plus loopback, without an HTTP client library's own overhead. Each of
`--runs` rounds sends `--requests` events per connection (default 5 × 220, as the issue's
measurement did) after as many `GET /healthz` (the HTTP floor: the same server, no work). The
gateway's `Server-Timing` header splits each event into the durable append (`log`: queued,
written and fdatasync'd by the group-commit thread) and the profile update (`profile`); the rest
is HTTP, routing, validation and loopback.

    python bench/events_latency.py --artifacts runs/scifact-art --doc-id 4983 \
        --out bench/results/events_latency.json                     # + .png
    python bench/events_latency.py --url http://127.0.0.1:8000 --doc-id 4983   # a running gateway

With `--connections N` the connections run in parallel threads (concurrent events share fsyncs).
With `--search-clients N`, N other processes search the same gateway back to back (distinct
queries, cache misses) the whole time: events as they arrive in production, next to reranking.
Each run is followed by 500 bare write+fdatasync calls in the bench's own directory, under the
same load: the floor the disk sets for a durable append, whatever the gateway does.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from gateway_process import start_gateway, stop_gateway  # noqa: E402

TIMING = re.compile(rb"(\w+);dur=([0-9.]+)")


def one_connection(host: str, port: int, n: int, path: str, body: dict | None, out: list[tuple[float, dict]]) -> None:
    """`n` requests on one socket; appends (milliseconds, Server-Timing steps) per answer."""
    sock = socket.create_connection((host, port))
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
            elapsed = (time.perf_counter() - started) * 1e3
            status = lines[0].split()[1]
            if status not in (b"200", b"202"):
                raise RuntimeError(f"{path}: {lines[0].decode()} {rest[:200]!r}")
            timing = next((v for v in lines if v.lower().startswith(b"server-timing")), b"")
            out.append((elapsed, {k.decode(): float(v) for k, v in TIMING.findall(timing)}))
    finally:
        sock.close()


def measure(host: str, port: int, n: int, connections: int, path: str, body_of) -> dict[str, Any]:
    results: list[list[tuple[float, dict]]] = [[] for _ in range(connections)]
    threads = [
        threading.Thread(target=one_connection, args=(host, port, n, path, body_of(i), results[i]))
        for i in range(connections)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    answers = [a for r in results for a in r]
    if len(answers) != n * connections:
        raise SystemExit(f"{path}: only {len(answers)} of {n * connections} requests answered")
    out = {"n": len(answers), "requests_per_s": len(answers) / wall, "total": stats([ms for ms, _ in answers])}
    steps = sorted({step for _, timing in answers for step in timing})
    for step in steps:
        out[step] = stats([timing.get(step, 0.0) for _, timing in answers])
    if steps:  # what the server's steps do not account for: HTTP, routing, validation, loopback
        out["rest"] = stats([ms - sum(timing.values()) for ms, timing in answers])
    return out


def search_forever(url: str, worker: int) -> None:
    """One search client, back to back, until killed (a separate process: its CPU and GIL are
    not the measuring threads')."""
    import http.client

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80)
    for i in range(10**9):
        body = json.dumps({"query": f"how do proteins fold in cells {worker}-{i}", "k": 10})
        conn.request("POST", "/v1/search", body, {"Content-Type": "application/json"})
        conn.getresponse().read()


def fdatasync_floor(directory: Path, n: int = 500) -> dict[str, float]:
    """Milliseconds of one small append + fdatasync on the filesystem of `directory`."""
    path = directory / "fsync-probe.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    took = []
    try:
        for i in range(n):
            os.write(fd, b'{"probe": %d, "user_id": "latency", "doc_id": "4983", "type": "click"}\n' % i)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append((time.perf_counter() - started) * 1e3)
            time.sleep(0.001)
    finally:
        os.close(fd)
        path.unlink()
    return stats(took)


def stats(values: list[float]) -> dict[str, float]:
    p50, p95, p99, worst = np.percentile(values, [50, 95, 99, 100])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "max_ms": float(worst)}


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    x = np.arange(1, len(runs) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(x, [r["events"]["total"]["p99_ms"] for r in runs], "o-", label="POST /v1/events p99")
    a.plot(x, [r["events"]["total"]["p50_ms"] for r in runs], "o--", label="POST /v1/events p50")
    a.plot(x, [r["healthz"]["total"]["p99_ms"] for r in runs], "s:", label="GET /healthz p99 (HTTP floor)")
    a.plot(x, [r["fdatasync_alone"]["p99_ms"] for r in runs], "^:", label="fdatasync alone p99 (disk floor)")
    a.axhline(report["goal_p99_ms"], color="red", lw=1, label=f"goal {report['goal_p99_ms']:g} ms")
    load = report["config"]["search_clients"]
    a.set(xlabel="run", ylabel="ms", xticks=x,
          title=f"event latency per run ({load} search clients meanwhile)" if load else "event latency per run")
    a.legend(fontsize=8)
    steps = [s for s in ("log", "profile", "rest") if s in runs[0]["events"]]
    width = 0.8 / max(len(steps), 1)
    for i, step in enumerate(steps):
        b.bar(x + (i - (len(steps) - 1) / 2) * width, [r["events"][step]["p50_ms"] for r in runs], width, label=step)
    b.set(xlabel="run", ylabel="ms (p50)", title="where an event's time goes", xticks=x)
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8000")
    where.add_argument("--artifacts", type=Path, help="start `serve` on these artifacts (embedded Triton, fsync on)")
    p.add_argument("--serve-flag", action="append", default=[], help="extra `serve` flag with --artifacts (repeatable)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--requests", type=int, default=220, help="per connection per run")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--search-clients", type=int, default=0, help="processes searching the gateway meanwhile")
    p.add_argument("--doc-id", required=True, help="a document id of the served index")
    p.add_argument("--goal-p99-ms", type=float, default=5.0)
    p.add_argument("--out", type=Path, help="write the results JSON here (and a PNG beside it)")
    args = p.parse_args()

    proc = None
    url = args.url
    work = Path(tempfile.mkdtemp(prefix="events-latency-"))
    if args.artifacts:
        flags = ["--event-log", str(work / "events"), *args.serve_flag]
        proc, url = start_gateway(args.artifacts, flags, work / "serve.log")
    searchers = [multiprocessing.Process(target=search_forever, args=(url, w), daemon=True)
                 for w in range(args.search_clients)]
    for searcher in searchers:
        searcher.start()
    try:
        host, port = urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 80
        tag = f"latency-{os.getpid()}"
        runs = []
        for r in range(args.runs):
            healthz = measure(host, port, args.requests, args.connections, "/healthz", lambda i: None)
            events = measure(host, port, args.requests, args.connections, "/v1/events",
                             lambda i: {"user_id": f"{tag}-{r}-{i}", "doc_id": args.doc_id, "type": "click"})
            floor = fdatasync_floor(work)
            runs.append({"healthz": healthz, "events": events, "fdatasync_alone": floor, "loadavg": os.getloadavg()[0]})
            split = ", ".join(f"{step} p50 {events[step]['p50_ms']:.2f}" for step in ("log", "profile", "rest")
                              if step in events)  # a gateway without Server-Timing gives no split
            print(f"run {r + 1}: events p50 {events['total']['p50_ms']:.2f} p99 {events['total']['p99_ms']:.2f} ms "
                  f"({split}); healthz p99 {healthz['total']['p99_ms']:.2f} ms; fdatasync alone p50 "
                  f"{floor['p50_ms']:.2f} p99 {floor['p99_ms']:.2f} ms", file=sys.stderr)
    finally:
        for searcher in searchers:
            searcher.kill()
        if proc is not None:
            stop_gateway(proc)
    worst = max(r["events"]["total"]["p99_ms"] for r in runs)
    report = {
        "runs": runs,
        "events_p99_ms_per_run": [r["events"]["total"]["p99_ms"] for r in runs],
        "events_p99_ms_worst": worst,
        "goal_p99_ms": args.goal_p99_ms,
        "goal_met_every_run": worst <= args.goal_p99_ms,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        plot(report, args.out.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
