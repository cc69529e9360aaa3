"""Live swap under steady load: `serve` on one build, concurrent clients searching in a loop,
`ranking-gateway deploy --artifacts OTHER` (the real command) in the middle.

Reports failed requests (non-200, transport errors) and degraded answers (200s that skipped a
stage at the deadline) apart, latency p50/p99 before,
during (command start to its exit) and after the swap, and the time from the command to the new
version serving (the gateway's own `switched_after_ms`, and a client's view: the first `/readyz`
showing the new version). JSON + PNG (latency over time, the command's span marked).

    python bench/live_swap.py --artifacts runs/a --candidate runs/b --concurrency 4 \
        --before 15 --after 15 --warm 20 --out bench/results/live_swap/small
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway_process import start_gateway, stop_gateway  # noqa: E402
from ranking_gateway.core.corpus import read_corpus  # noqa: E402


def queries_from(artifacts: Path, n: int) -> list[str]:
    """Searchable text from the build's own documents: titles, else their first words."""
    docs = read_corpus(artifacts / "index" / "documents.jsonl")
    out = []
    for i, d in enumerate(docs[: n * 3]):
        words = d.text.split()
        out.append(" ".join(words[i % 3 : i % 3 + 6]) or d.title)
    return out[:n] or ["search"]


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def phase_stats(samples: list[dict], lo: float, hi: float) -> dict:
    inside = [s for s in samples if lo <= s["t"] < hi]
    ok = [s["ms"] for s in inside if s["ok"]]
    span = max(hi - lo, 1e-9)
    return {"requests": len(inside), "failed": sum(not s["ok"] for s in inside),
            "degraded": sum(bool(s["degraded"]) for s in inside), "p50_ms": pct(ok, 50),
            "p99_ms": pct(ok, 99), "max_ms": round(max(ok), 1) if ok else None, "qps": round(len(inside) / span, 1)}


async def load(url: str, queries: list[str], concurrency: int, stop: asyncio.Event, samples: list[dict],
               t0: float, body_extra: dict) -> None:
    async def client_loop(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            i = n
            while not stop.is_set():
                query = f"{queries[i % len(queries)]} {i // len(queries)}"  # mostly cache misses
                i += concurrency
                start = time.monotonic()
                try:
                    r = await client.post("/v1/search", json={"query": query, **body_extra})
                    ok = r.status_code == 200
                    degraded = r.json()["degraded_reasons"] if ok else []
                    stages = r.json().get("timings_ms", {}) if ok else {}  # where a slow answer's time went
                    why = None if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why, degraded, stages = False, repr(exc), [], {}
                samples.append({"t": start - t0, "ms": (time.monotonic() - start) * 1000, "ok": ok, "why": why,
                                "degraded": degraded, "stages_ms": stages})

    await asyncio.gather(*(client_loop(n) for n in range(concurrency)))


async def watch_version(url: str, old: str, t0: float, stop: asyncio.Event) -> float | None:
    """Seconds (since t0) of the first `/readyz` that names another version than `old`."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                version = (await client.get("/readyz")).json().get("version")
                if version and version != old:
                    return time.monotonic() - t0
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.02)
    return None


async def run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--deadline-ms", str(args.deadline_ms), "--triton-log", str((out / "triton.log").resolve())]
    proc, url = start_gateway(args.artifacts.resolve(), flags, out / "serve.log")
    try:
        old_version = httpx.get(url + "/readyz", timeout=10).json()["version"]
        samples: list[dict] = []
        stop, stop_watch = asyncio.Event(), asyncio.Event()
        t0 = time.monotonic()
        extra = {"k": 10, "candidates": args.candidates, "rerank": not args.no_rerank}
        loader = asyncio.create_task(load(url, queries_from(args.artifacts, 64), args.concurrency, stop, samples, t0, extra))
        await asyncio.sleep(args.before)
        cmd = [sys.executable, "-m", "ranking_gateway.cli", "deploy", "--artifacts", str(args.candidate.resolve()),
               "--url", url, "--warm", str(args.warm)]
        watcher = asyncio.create_task(watch_version(url, old_version, t0, stop_watch))
        command_start = time.monotonic() - t0
        done = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True)
        command_end = time.monotonic() - t0
        await asyncio.sleep(args.after)
        stop.set()
        stop_watch.set()
        await loader
        seen_new = await watcher
    finally:
        stop_gateway(proc)
    report = json.loads(done.stdout) if done.returncode == 0 else None
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    end = max(s["t"] for s in samples) if samples else command_end
    result = {
        "artifacts": str(args.artifacts), "candidate": str(args.candidate), "concurrency": args.concurrency,
        "rerank": not args.no_rerank, "candidates": args.candidates, "warm": args.warm, "deadline_ms": args.deadline_ms,
        "deploy_exit_status": done.returncode,
        "failed_requests": sum(not s["ok"] for s in samples),
        "failures": sorted({s["why"] for s in samples if not s["ok"]})[:10],
        # 200s that skipped a stage (e.g. `rerank_deadline`: answered in retrieval order at the deadline)
        "degraded_answers": sum(bool(s["degraded"]) for s in samples),
        "degraded_reasons": sorted({r for s in samples for r in s["degraded"]}),
        "requests": len(samples),
        "phases": {
            "before": phase_stats(samples, 0, command_start),
            "during": phase_stats(samples, command_start, command_end),
            "after": phase_stats(samples, command_end, end + 1e-3),
        },
        "command_s": round(command_end - command_start, 3),
        "switched_after_ms (gateway)": None if report is None else report["switched_after_ms"],
        "new_version_seen_after_s (client, /readyz)": None if seen_new is None else round(seen_new - command_start, 3),
        "deploy_timings_ms": None if report is None else report["timings_ms"],
        "deploy_report": report,
    }
    (out / "live_swap.json").write_text(json.dumps({**result, "samples": samples}, indent=1))
    plot(samples, command_start, command_end, None if seen_new is None else seen_new, out / "live_swap.png")
    return result


def plot(samples: list[dict], start: float, end: float, seen: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    ok = [s for s in samples if s["ok"]]
    bad = [s for s in samples if not s["ok"]]
    ax.scatter([s["t"] for s in ok], [s["ms"] for s in ok], s=4, alpha=0.5, label="search (200)")
    if bad:
        ax.scatter([s["t"] for s in bad], [s["ms"] for s in bad], s=12, color="red", label="failed")
    ax.axvspan(start, end, color="orange", alpha=0.15, label="`deploy` command running")
    if seen is not None:
        ax.axvline(seen, color="green", linestyle="--", label="/readyz shows the new version")
    ax.set_xlabel("seconds")
    ax.set_ylabel("latency, ms")
    ax.set_yscale("log")
    ax.set_title("Live swap under load")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True, help="the build served first")
    p.add_argument("--candidate", type=Path, required=True, help="the build swapped in")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--before", type=float, default=10.0, help="seconds of load before the deploy")
    p.add_argument("--after", type=float, default=10.0, help="seconds of load after the deploy command exits")
    p.add_argument("--warm", type=int, default=20)
    p.add_argument("--candidates", type=int, default=30)
    p.add_argument("--no-rerank", action="store_true")
    p.add_argument("--deadline-ms", type=int, default=2000)
    p.add_argument("--out", default="bench/results/live_swap")
    result = asyncio.run(run(p.parse_args()))
    print(json.dumps({k: v for k, v in result.items() if k != "deploy_report"}, indent=2))


if __name__ == "__main__":
    main()
