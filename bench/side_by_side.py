"""The gateway against the hand-written baseline (bench/baseline.py), same queries, one report.

Why: the gateway's case is that a user gets more from it than from the obvious in-process code
(transformers + FAISS + a cross-encoder, torch fp32, one process). This puts both on the same
judged queries of one split, closed-loop at each concurrency (default 1 and 8), and writes one
JSON and one PNG with, per system and concurrency, NDCG@10, MRR@10, p50, p99 and queries/s,
and the ratios that make the case or break it: gateway qps / baseline qps at the highest
concurrency, gateway p99 / baseline p99, and the gateway's reranked p50 / its retrieval-only
p50 at concurrency 1 (measured in the same run).

The gateway is measured through HTTP with the project's own eval client
(`ranking_gateway.evaluation.client.run_mode`, what `ranking-gateway eval --concurrency C`
sends), first with reranking off at concurrency 1, then on at every concurrency; then the
gateway is left idle (or stopped, when this script started it) and the baseline runs in this
process, reranked at every concurrency and FAISS-only at concurrency 1. Requests ask for
`--retrieval dense` by default, the baseline's first stage (FAISS only); `--retrieval server`
leaves the gateway's own (hybrid on builds with BM25).

Either give a running gateway (`ranking-gateway serve --artifacts DIR --cache-size 0
--rerank-alpha 1 --rerank-depth 30`; without `--cache-size 0` the second pass over the same
queries is answered from its hot-query cache, which the report flags), or `--artifacts DIR` and
this script starts `ranking-gateway serve` on a free port with the cache off, rerank alpha 1
(the logit alone, as the baseline ranks), `--rerank-depth`/`--rerank-max-length` the baseline's,
and stops it at the end.

    .venv/bin/python bench/side_by_side.py --artifacts /tmp/bl/art --collection /tmp/bl/qs \
        --cross-encoder /tmp/bl/reranker --depth 30 --max-length 128 --concurrency 1,8 \
        --embeddings-cache /tmp/bl/qs-emb.npy --out bench/results/side_by_side/side_by_side.json [--limit N]

The cross-encoder should be the one the artifacts were built with (`build --reranker`), at
the build's `--max-length`; the gateway serves it as the build's CPU runtime (ONNX int8 where
the CPU lacks native bf16), the baseline in torch fp32, so NDCG@10 may differ slightly.
The gateway runs without a search deadline here (`--deadline-ms 600000`), but where a reranked
query takes longer than its Triton client timeout (10 s; easily reached by a cross-encoder on a
small CPU at concurrency 8), the gateway answers in retrieval order ("degraded"): the
report counts those and warns, and `qps_not_degraded` counts only fully reranked answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

import baseline as bl  # noqa: E402
from gateway_process import start_gateway, stop_gateway  # noqa: E402

from ranking_gateway.evaluation.client import ModeResult, check_reachable, gateway_config, run_mode  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "side_by_side"


# ---------------------------------------------------------------- the gateway


def start(args: argparse.Namespace, logs: Path) -> tuple[subprocess.Popen, str]:
    """`ranking-gateway serve` on a free port, cache off, the baseline's rerank settings."""
    # every answer reranked in full, as the baseline's: no deadline cuts a slow rerank short
    flags = ["--cache-size", "0", "--deadline-ms", "600000", "--rerank-depth", str(args.depth),
             "--event-log", str(logs / "events"), "--triton-log", str(logs / "triton.log")]
    flags += [] if args.alpha == "server" else ["--rerank-alpha", args.alpha]
    # a late-interaction build's token budget is the query's: leave it to the build ("server")
    flags += [] if args.gateway_max_length == "server" else ["--rerank-max-length", str(args.max_length)]
    return start_gateway(args.artifacts, flags, logs / "serve.log")


def gateway_pass(
    url: str, queries: dict[str, str], args: argparse.Namespace, *, rerank: bool, concurrency: int
) -> ModeResult:
    retrieval = None if args.retrieval == "server" else args.retrieval
    return asyncio.run(run_mode(
        url, queries, rerank=rerank, k=bl.K, candidates=args.candidates, concurrency=concurrency,
        timeout_s=args.timeout, progress=True, retrieval=retrieval,
    ))


def gateway_summary(mode: ModeResult, qrels: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The baseline's summary (a failed query scores 0), plus what only a gateway can report."""
    from ranking_gateway.evaluation.metrics import percentile

    rerank_ms = mode.server_ms.get("rerank", [])
    full = len(mode.run) - mode.degraded  # a degraded answer skipped a stage (the reranker timed out)
    return {
        **bl.summarize(mode.run, qrels, mode.client_ms, mode.wall_s),
        "errors": len(mode.errors), "cached": mode.cached, "degraded": mode.degraded,
        "qps_not_degraded": round(full / mode.wall_s, 3) if mode.wall_s > 0 else None,
        "server_rerank_p50_ms": round(percentile(rerank_ms, 50), 2) if rerank_ms else None,
    }


def measure_gateway(url: str, queries: dict[str, str], qrels: dict, args: argparse.Namespace) -> dict[str, Any]:
    """Retrieval-only at concurrency 1, then reranked at every concurrency."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    check_reachable(url)
    for _ in range(3):  # warm-up: first inferences of each model pay for allocations
        httpx.post(url.rstrip("/") + "/v1/search", timeout=args.timeout,
                   json={"query": "warm-up query", "k": bl.K, "candidates": args.candidates})
    config = gateway_config(url)
    off = gateway_pass(url, queries, args, rerank=False, concurrency=1)
    runs, first_errors = {}, {}
    for c in args.concurrency:
        mode = gateway_pass(url, queries, args, rerank=True, concurrency=c)
        runs[str(c)] = gateway_summary(mode, qrels)
        first_errors.update(dict(list(mode.errors.items())[:3]))
        print(f"gateway c={c}: {json.dumps(runs[str(c)])}")
    retrieval_only = gateway_summary(off, qrels)
    print(f"gateway retrieval-only c=1: {json.dumps(retrieval_only)}")
    return {"url": url, "config": config, "runs": runs, "retrieval_only": {"1": retrieval_only},
            "first_errors": first_errors | dict(list(off.errors.items())[:3])}


# ---------------------------------------------------------------- comparison


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b not in (None, 0) else None


def ratios(
    gateway: dict[str, Any], baseline: dict[str, dict], baseline_retrieval: dict[str, dict], levels: list[int]
) -> dict[str, float | None]:
    """None where a gateway run was answered from its cache: that ratio would measure the cache."""
    g = {c: r if not r["cached"] else dict.fromkeys(r) for c, r in gateway["runs"].items()}
    b, top = baseline, str(max(levels))
    out = {f"gateway_qps_over_baseline_qps@c{top}": ratio(g[top]["qps"], b[top]["qps"]),
           # the same, counting only answers the gateway fully reranked (degraded ones are cheap)
           f"gateway_reranked_qps_over_baseline_qps@c{top}": ratio(g[top]["qps_not_degraded"], b[top]["qps"])}
    for c in map(str, levels):
        out[f"gateway_p99_over_baseline_p99@c{c}"] = ratio(g[c]["p99_ms"], b[c]["p99_ms"])
        out[f"gateway_p50_over_baseline_p50@c{c}"] = ratio(g[c]["p50_ms"], b[c]["p50_ms"])
    if "1" in g:
        out["gateway_rerank_p50_over_retrieval_only_p50@c1"] = ratio(
            g["1"]["p50_ms"], gateway["retrieval_only"]["1"]["p50_ms"])
        out["baseline_rerank_p50_over_retrieval_only_p50@c1"] = ratio(
            b["1"]["p50_ms"], baseline_retrieval["1"]["p50_ms"])
    return out


def warnings_for(gateway: dict[str, Any], settings: bl.Settings, alpha_wanted: float | None, retrieval: str) -> list[str]:
    """Anything that makes the two systems not the same work, said in the report itself."""
    out = []
    if retrieval != "dense":
        served = (gateway["config"] or {}).get("retrieval")
        out.append(f"gateway first stage: {retrieval} ({served}); the baseline's: dense FAISS")
    runs = {f"reranked c={c}": r for c, r in gateway["runs"].items()}
    runs["retrieval-only c=1"] = gateway["retrieval_only"]["1"]
    for name, r in runs.items():
        if r["cached"]:
            out.append(f"gateway {name}: {r['cached']} answers came from its hot-query cache (serve --cache-size 0)")
        if r["errors"]:
            out.append(f"gateway {name}: {r['errors']} requests failed (scored 0, not timed)")
        if r["degraded"]:
            out.append(f"gateway {name}: {r['degraded']} answers degraded (a stage failed, e.g. the reranker past "
                       "its Triton deadline: retrieval order), yet timed and scored as answers")
    ndcg = {c: r["ndcg@10"] for c, r in gateway["runs"].items()}
    if len(set(ndcg.values())) > 1:
        out.append(f"gateway reranked NDCG@10 differs by concurrency {ndcg}: the same queries were ranked "
                   "differently under load (scores depend on what shares a batch)")
    plan = (gateway["config"] or {}).get("rerank") or {}
    if not plan:
        out.append("gateway reports no reranker: its 'reranked' runs did no reranking")
    wanted = {"depth": settings.depth, "max_length": settings.max_length, "alpha": alpha_wanted}
    if plan.get("kind") == "late-interaction":  # scores stored documents: no pair length to match
        wanted.pop("max_length")
        out.append("gateway reranker: late interaction (documents precomputed by build); the baseline's: a full "
                   "cross-encoder over each pair")
    for key, want in wanted.items():
        if plan and want is not None and plan.get(key) != want:
            out.append(f"gateway rerank {key} is {plan.get(key)}, the baseline's {want}")
    return out


def print_table(systems: dict[str, dict[str, dict]]) -> None:
    print(f"{'system':<22}{'C':>3}{'NDCG@10':>9}{'MRR@10':>8}{'p50 ms':>10}{'p99 ms':>10}{'q/s':>8}")
    for name, runs in systems.items():
        for c, r in runs.items():
            print(f"{name:<22}{c:>3}{r['ndcg@10']:>9.4f}{r['mrr@10']:>8.4f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
                  f"{r['qps'] or 0:>8.2f}")


def plot(systems: dict[str, dict[str, dict]], levels: list[int], path: Path, title: str) -> None:
    """One bar per (system, concurrency): NDCG@10; p50 and p99 latency; queries/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = ("tab:blue", "tab:orange", "tab:cyan", "tab:gray")
    colors = {name: palette[i % len(palette)] for i, name in enumerate(systems)}
    slots = [(n, str(c)) for c in levels for n in systems if str(c) in systems[n]]
    xs = list(range(len(slots)))
    labels = [f"{n}\nC={c}" for n, c in slots]
    color = [colors[n] for n, _ in slots]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 5))
    bars = ax1.bar(xs, [systems[n][c]["ndcg@10"] for n, c in slots], 0.6, color=color)
    ax1.bar_label(bars, fmt="%.3f", fontsize=7)
    ax1.set_ylim(0, 1)
    ax1.set_title("NDCG@10")
    p50 = ax2.bar([x - 0.2 for x in xs], [systems[n][c]["p50_ms"] for n, c in slots], 0.4, color=color)
    p99 = ax2.bar([x + 0.2 for x in xs], [systems[n][c]["p99_ms"] for n, c in slots], 0.4, color=color,
                  alpha=0.45, hatch="//")
    ax2.bar_label(p50, fmt="%.0f", fontsize=7)
    ax2.bar_label(p99, fmt="%.0f", fontsize=7)
    ax2.set_yscale("log")
    ax2.set_ylabel("ms per query (log)")
    ax2.set_title("latency: p50 (solid), p99 (hatched)")
    qps = ax3.bar(xs, [systems[n][c]["qps"] or 0 for n, c in slots], 0.6, color=color)
    ax3.bar_label(qps, fmt="%.2f", fontsize=7)
    ax3.set_yscale("log")
    ax3.set_ylabel("queries / s (log)")
    ax3.set_title("throughput, closed loop")
    for ax in (ax1, ax2, ax3):
        ax.set_xticks(xs, labels, fontsize=7, rotation=35, ha="right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_arguments(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8000 (serve it with --cache-size 0)")
    where.add_argument("--artifacts", type=Path,
                       help="start `ranking-gateway serve --artifacts DIR` here, stop it at the end")
    p.add_argument("--alpha", default="1", help="serve --rerank-alpha when started here (1: logit alone; server: "
                   "the build's recommended alpha)")
    p.add_argument("--gateway-max-length", choices=("same", "server"), default="same",
                   help="same: serve --rerank-max-length = the baseline's --max-length; server: the build's own "
                   "(a late-interaction build, whose budget is the query's)")
    p.add_argument("--baseline-limit", type=int, default=None,
                   help="measure the baseline on the first N of the queries only (a full cross-encoder takes seconds "
                   "a query on a CPU); its NDCG@10 is then over those N")
    p.add_argument("--retrieval", choices=("dense", "bm25", "hybrid", "server"), default="dense",
                   help="first stage asked of the gateway (default dense: the baseline's; server: the gateway's own)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    p.add_argument("--out", type=Path, default=RESULTS / "side_by_side.json")
    args = p.parse_args()
    bl.check_args(args)
    return args


def main() -> int:
    args = parse_args()
    coll, queries, qrels = bl.load_queries(args.collection, args.split, args.limit)
    proc = None
    if args.artifacts:
        logs = Path(tempfile.mkdtemp(prefix="side_by_side-"))
        print(f"starting the gateway; logs in {logs}")
        proc, url = start(args, logs)
    else:
        url = args.url
    try:
        gateway = measure_gateway(url, queries, qrels, args)
    finally:
        if proc is not None:
            stop_gateway(proc)
    baseline, index_info = bl.build_baseline(args, coll)
    b_queries = dict(list(queries.items())[: args.baseline_limit]) if args.baseline_limit else queries
    b_qrels = {q: qrels[q] for q in b_queries if q in qrels}
    baseline_runs = bl.measure(baseline, b_queries, b_qrels, args.concurrency)
    baseline_retrieval = bl.measure_retrieval_only(baseline, b_queries, b_qrels)
    systems = {"baseline": baseline_runs, "gateway": gateway["runs"],
               "baseline, no rerank": baseline_retrieval, "gateway, no rerank": gateway["retrieval_only"]}
    report = {
        "collection": str(args.collection), "split": args.split, "queries": len(queries),
        "baseline_queries": len(b_queries),
        "gateway_retrieval_requested": args.retrieval, "gateway_started_here": proc is not None,
        "baseline": {"settings": asdict(baseline.settings), **bl.environment(args), "index": index_info,
                     "runs": baseline_runs, "retrieval_only": baseline_retrieval},
        "gateway": gateway,
        "ratios": ratios(gateway, baseline_runs, baseline_retrieval, args.concurrency),
        "warnings": warnings_for(gateway, baseline.settings, None if args.alpha == "server" else float(args.alpha),
                                 args.retrieval),
    }
    print_table(systems)
    print(json.dumps({"ratios": report["ratios"], "warnings": report["warnings"]}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    title = f"gateway vs baseline, {len(queries)} queries, cross-encoder: {report['baseline']['cross_encoder']}"
    plot(systems, args.concurrency, args.out.with_suffix(".png"), title)
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
