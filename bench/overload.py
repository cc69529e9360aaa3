"""Open-loop overload: goodput, accepted p99 and 429 share from 1× to 4× the gateway's capacity.

A closed loop (N clients, each waiting for its answer) slows itself down as the server slows,
so it never shows what overload does. Here arrivals come at a fixed rate whatever the server
does, as users do. The script first measures capacity (closed loop, `--capacity-concurrency`
clients, reranked searches per second), then offers `--multipliers` × that rate for
`--seconds` each. For each load it reports:
- goodput: answers (200) that arrived within the deadline, per second, of which reranked ones
  (not degraded) separately;
- the accepted requests' (200) p50 and p99 latency, measured from when the request was due;
- the share refused with 429 (admission control) and of any other status or client error.

Each query is different (SciFact test claims, numbered past the 300), and the server runs with
`--cache-size 0`: every search is a cache miss and pays for its own ranking.

    python bench/overload.py --artifacts runs/scifact-art --collection ../shared/data/scifact \
        --out bench/results/overload/scifact_overload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from gateway_process import start_gateway, stop_gateway  # noqa: E402

from ranking_gateway.core.collection import read_queries  # noqa: E402
from ranking_gateway.evaluation.metrics import percentile  # noqa: E402


def query_stream(collection: Path) -> list[str]:
    return list(read_queries(collection / "queries.jsonl").values())


class Queries:
    """Distinct query texts: the collection's, then the same with a counter (never a cache hit)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.n = 0

    def next(self) -> str:
        text = self.texts[self.n % len(self.texts)]
        round_ = self.n // len(self.texts)
        self.n += 1
        return text if round_ == 0 else f"{text} ({round_})"


class LoadClient:
    """Keep-alive HTTP/1.1 over asyncio streams, a connection per request in flight: the load
    generator shares the 2-core machine with the gateway, and httpx's own CPU per request (about
    a sixth of a core at 57 q/s) was taken from the server it measures."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        # (reader, writer, when it went idle): one idle near the server's keep-alive timeout
        # (uvicorn: 5 s) may be closed under the request, so it is dropped instead of reused
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        while self._idle and time.monotonic() - self._idle[-1][2] > 2.0:
            self._idle.pop()[1].close()
        if self._idle:
            reader, writer, _ = self._idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        try:
            writer.write(b"POST %s HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(v.split(b":")[1]) for v in lines if v.lower().startswith(b"content-length:"))
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self._idle.append((reader, writer, time.monotonic()))
        return int(lines[0].split()[1]), json.loads(payload)

    async def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()


async def one(client: LoadClient, query: str, due: float, timeout_ms: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"query": query, "k": 10}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    try:
        status, answer = await asyncio.wait_for(client.post("/v1/search", body), 60)
        degraded = status == 200 and answer["degraded"]
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
        status, degraded = type(exc).__name__, False
    return {"status": status, "degraded": degraded, "latency_ms": (time.perf_counter() - due) * 1000}


async def capacity(url: str, queries: Queries, clients: int, seconds: float) -> float:
    """Closed loop: reranked answers per second with `clients` waiting clients."""
    done = 0
    stop = time.perf_counter() + seconds
    client = LoadClient(url)

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            r = await one(client, queries.next(), time.perf_counter(), None)
            done += r["status"] == 200 and not r["degraded"]

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        await client.close()
    return done / (time.perf_counter() - started)


async def open_loop(url: str, queries: Queries, rate: float, seconds: float, deadline_ms: int) -> dict[str, Any]:
    """`rate` arrivals a second, evenly spaced, for `seconds`, whatever the answers do."""
    n = int(rate * seconds)
    cpu_before = time.process_time()  # the load generator shares the machine: its own CPU is reported
    client = LoadClient(url)
    try:
        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, queries.next(), due, None)))
        results = await asyncio.gather(*tasks)
        wall = time.perf_counter() - start
    finally:
        await client.close()
    ok = [r for r in results if r["status"] == 200]
    on_time = [r for r in ok if r["latency_ms"] <= deadline_ms]
    latencies = [r["latency_ms"] for r in ok]
    return {
        "offered_qps": round(rate, 2),
        "requests": n,
        "wall_s": round(wall, 1),
        "goodput_qps": round(len(on_time) / seconds, 2),
        "reranked_goodput_qps": round(sum(not r["degraded"] for r in on_time) / seconds, 2),
        "accepted": len(ok),
        "accepted_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "accepted_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "share_429": round(sum(r["status"] == 429 for r in results) / n, 3),
        "share_degraded": round(sum(r["degraded"] for r in ok) / max(1, len(ok)), 3),
        "other": sorted({str(r["status"]) for r in results} - {"200", "429"}),
        # of the machine's cores, the share the load generator itself used during the run
        "client_cpu_share": round((time.process_time() - cpu_before) / wall / (os.cpu_count() or 1), 3),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = report["runs"]
    x = [r["multiplier"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot(x, [r["goodput_qps"] for r in runs], "o-", label="goodput (200 within the deadline)")
    a.plot(x, [r["reranked_goodput_qps"] for r in runs], "s--", label="of which reranked")
    a.plot(x, [r["offered_qps"] for r in runs], ":", color="gray", label="offered")
    a.set_xlabel("offered load / measured capacity")
    a.set_ylabel("answers per second")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    b.plot(x, [r["accepted_p99_ms"] for r in runs], "o-", label="accepted p99 ms")
    b.axhline(report["deadline_ms"], color="red", ls=":", label="deadline")
    b.set_ylim(bottom=0)
    b2 = b.twinx()
    b2.plot(x, [100 * r["share_429"] for r in runs], "s--", color="tab:orange", label="429 %")
    b.set_xlabel("offered load / measured capacity")
    b.set_ylabel("ms")
    b2.set_ylabel("% refused (429)")
    b.legend(loc="upper left", fontsize=8)
    b2.legend(loc="lower right", fontsize=8)
    b.grid(alpha=0.3)
    fig.suptitle(f"Open-loop overload, capacity {report['capacity_qps']:.1f} q/s ({report['flags']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--collection", type=Path, required=True)
    p.add_argument("--multipliers", default="1,2,3,4")
    p.add_argument("--seconds", type=float, default=20.0, help="offered-load duration per multiplier")
    p.add_argument("--capacity-seconds", type=float, default=20.0)
    p.add_argument("--capacity-concurrency", type=int, default=8,
                   help="closed-loop clients when measuring capacity (at most serve's --max-inflight + --max-queue, "
                   "or the closed loop itself is refused)")
    p.add_argument("--deadline-ms", type=int, default=2000)
    p.add_argument("--serve-flags", default="", help="extra `serve` flags, e.g. '--max-inflight 8'")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "overload" / "overload.json")
    args = p.parse_args()

    flags = ["--cache-size", "0", "--deadline-ms", str(args.deadline_ms), *args.serve_flags.split()]
    logs = Path(tempfile.mkdtemp(prefix="overload-"))
    proc, url = start_gateway(args.artifacts, flags, logs / "serve.log")
    try:
        queries = Queries(query_stream(args.collection))
        asyncio.run(capacity(url, queries, 2, 3.0))  # warm-up
        cap = asyncio.run(capacity(url, queries, args.capacity_concurrency, args.capacity_seconds))
        print(f"capacity: {cap:.2f} reranked q/s (closed loop, {args.capacity_concurrency} clients)", flush=True)
        runs = []
        for m in [float(x) for x in args.multipliers.split(",")]:
            run = {"multiplier": m, **asyncio.run(open_loop(url, queries, m * cap, args.seconds, args.deadline_ms))}
            print(json.dumps(run), flush=True)
            runs.append(run)
    finally:
        stop_gateway(proc)
    peak = max(r["goodput_qps"] for r in runs)
    report = {
        "artifacts": str(args.artifacts), "flags": " ".join(flags), "deadline_ms": args.deadline_ms,
        "capacity_qps": round(cap, 2), "capacity_concurrency": args.capacity_concurrency, "runs": runs,
        "goodput_at_max_over_peak": round(runs[-1]["goodput_qps"] / peak, 3) if peak else None,
        "accepted_p99_at_max_within_deadline": (runs[-1]["accepted_p99_ms"] or 0) <= args.deadline_ms,
        "median_accepted_p50_ms": statistics.median(r["accepted_p50_ms"] for r in runs if r["accepted_p50_ms"]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))
    print(json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
