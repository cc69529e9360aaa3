"""Latency and throughput of `POST /v1/search` through a running gateway, by concurrency.

Each concurrency level sends its own slice of distinct queries (cold: cache misses), then
the same slice again (hot: cache hits), so both are measured in one run on the same machine.

    python bench/search_latency.py --url http://127.0.0.1:8000 --queries Q.jsonl \
        [--levels 1 4 16] [--per-level 48] [--candidates 100] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np


def read_queries(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]


async def run_level(
    client: httpx.AsyncClient, queries: list[str], concurrency: int, candidates: int
) -> dict[str, float]:
    semaphore = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    rerank_ms: list[float] = []

    async def one(query: str) -> None:
        async with semaphore:
            t0 = time.perf_counter()
            r = await client.post("/v1/search", json={"query": query, "k": 10, "candidates": candidates})
            latencies.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            rerank_ms.append(r.json()["timings_ms"]["rerank"])

    started = time.perf_counter()
    await asyncio.gather(*(one(q) for q in queries))
    wall = time.perf_counter() - started
    return {
        "p50_ms": statistics.median(latencies),
        "p95_ms": float(np.percentile(latencies, 95)),
        "throughput_qps": len(queries) / wall,
        "rerank_p50_ms": statistics.median(rerank_ms),
    }


async def main_async(args: argparse.Namespace) -> dict:
    queries = read_queries(args.queries)
    report: dict = {"candidates": args.candidates, "levels": {}}
    async with httpx.AsyncClient(base_url=args.url, timeout=300) as client:
        offset = 0
        for level in args.levels:
            batch = queries[offset : offset + args.per_level]
            offset += args.per_level
            cold = await run_level(client, batch, level, args.candidates)
            hot = await run_level(client, batch, level, args.candidates)
            report["levels"][level] = {"cold": cold, "hot": hot}
            print(
                f"concurrency {level:3d}: cold p50 {cold['p50_ms']:8.1f} ms p95 {cold['p95_ms']:8.1f} ms "
                f"{cold['throughput_qps']:6.2f} q/s | hot p50 {hot['p50_ms']:6.1f} ms "
                f"({cold['p50_ms'] / hot['p50_ms']:.0f}x faster)"
            )
    return report


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(report["levels"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for kind in ("cold", "hot"):
        left.plot(levels, [report["levels"][lv][kind]["p50_ms"] for lv in levels], marker="o", label=f"{kind} p50")
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("concurrent clients")
    left.set_ylabel("latency (ms)")
    left.legend()
    right.plot(levels, [report["levels"][lv]["cold"]["throughput_qps"] for lv in levels], marker="o")
    right.set_xscale("log", base=2)
    right.set_xlabel("concurrent clients")
    right.set_ylabel("cold queries / s")
    fig.suptitle(f"POST /v1/search, {report['candidates']} candidates reranked")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--queries", type=Path, required=True, help="JSON lines with a 'text' field (BEIR queries)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--per-level", type=int, default=48)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "search_latency.png")
    print(f"wrote {args.out}/search_latency.json and .png")


if __name__ == "__main__":
    main()
