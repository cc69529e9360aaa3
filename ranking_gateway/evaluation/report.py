"""Turning measured runs into the summary dict, a terminal table and a PNG plot."""

from __future__ import annotations

from pathlib import Path

from ranking_gateway.evaluation.client import ModeResult
from ranking_gateway.evaluation.metrics import aggregate, percentile

PCTS = (50, 95, 99)


def latency_summary(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q), 2) for q in PCTS} | {"mean": round(sum(values) / len(values), 2) if values else float("nan")}


def summarize(mode: ModeResult, qrels: dict[str, dict[str, int]]) -> dict:
    judged = {q: j for q, j in qrels.items() if q in mode.run or q in mode.errors}
    return {
        "rerank": mode.rerank,
        "queries": len(mode.run),
        "errors": len(mode.errors),
        "cached": mode.cached,
        "degraded": mode.degraded,
        "metrics": {k: round(v, 4) for k, v in aggregate(mode.run, judged).items()},
        "latency_ms": {
            "client": latency_summary(mode.client_ms),
            **{f"server_{stage}": latency_summary(v) for stage, v in mode.server_ms.items()},
        },
        "throughput_qps": round(len(mode.run) / mode.wall_s, 2) if mode.wall_s else None,
    }


def lift(summaries: list[dict]) -> dict[str, float] | None:
    on = next((s for s in summaries if s["rerank"]), None)
    off = next((s for s in summaries if not s["rerank"]), None)
    if on is None or off is None:
        return None
    return {k: round(on["metrics"][k] - off["metrics"][k], 4) for k in on["metrics"]}


def print_table(summaries: list[dict]) -> None:
    header = ["mode", "NDCG@10", "MRR@10", "R@100", "p50 ms", "p95 ms", "p99 ms", "server rerank p50", "errors"]
    rows = []
    for s in summaries:
        m, lat = s["metrics"], s["latency_ms"]["client"]
        rr = s["latency_ms"].get("server_rerank", {}).get("p50", float("nan"))
        rows.append([
            "rerank on" if s["rerank"] else "rerank off", f"{m['ndcg@10']:.4f}", f"{m['mrr@10']:.4f}",
            f"{m['recall@100']:.4f}", f"{lat['p50']:.1f}", f"{lat['p95']:.1f}", f"{lat['p99']:.1f}", f"{rr:.1f}",
            str(s["errors"]),
        ])
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="ranking-gateway eval")
        for h in header:
            table.add_column(h, justify="right" if h != "mode" else "left")
        for r in rows:
            table.add_row(*r)
        Console().print(table)
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        for r in rows:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def plot(summaries: list[dict], modes: list[ModeResult], path: Path) -> None:
    """Left: relevance per mode; right: client latency CDF per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["ndcg@10", "mrr@10", "recall@100"]
    width = 0.8 / max(1, len(summaries))
    for i, s in enumerate(summaries):
        vals = [s["metrics"][n] for n in names]
        bars = ax1.bar(np.arange(len(names)) + i * width, vals, width, label="rerank on" if s["rerank"] else "rerank off")
        ax1.bar_label(bars, fmt="%.3f", fontsize=8)
    ax1.set_xticks(np.arange(len(names)) + width * (len(summaries) - 1) / 2, names)
    ax1.set_ylim(0, 1)
    ax1.set_title("relevance")
    ax1.legend()
    for m in modes:
        xs = np.sort(np.asarray(m.client_ms))
        if len(xs):
            ax2.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label="rerank on" if m.rerank else "rerank off")
    ax2.set_xscale("log")
    ax2.set_xlabel("client latency (ms)")
    ax2.set_ylabel("fraction of queries")
    ax2.set_title("latency CDF")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
