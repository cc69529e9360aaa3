"""The rerankers' Pareto front on SciFact test: served NDCG@10 against served client p50.

Reads what the served benches wrote (it measures nothing itself), so every point has a command
behind it:
- the full cross-encoder at 128/256/384 tokens, ONNX int8 (`bench/rerank_lengths.py`, all 300
  queries) and at 384 tokens torch fp32 vs ONNX int8 (`--limit 100`: the first 100 queries);
- the late-interaction reranker and the first stage of the same run (`bench/side_by_side.py`).
Each row keeps the retrieval-only figures of its own run: the cross-encoder runs predate the
stemmed BM25 (hybrid 0.668 then, 0.717 since), so compare the lift as well as the level.

    python bench/plot_pareto.py  # -> bench/results/realtime/scifact_pareto.{json,png}, a Markdown table on stdout
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def lengths_rows(path: Path, label: str) -> list[dict]:
    """One row per reranked length of a `rerank_lengths.py` report, with its run's retrieval-only row."""
    report = json.loads(path.read_text())
    # the report measures retrieval only once (its first length): one first stage for every length
    off = next(m for run in report["runs"].values() for m in run["modes"] if not m["rerank"])
    base = {"ndcg@10": off["metrics"]["ndcg@10"], "p50_ms": off["latency_ms"]["client"]["p50"]}
    rows = []
    for name, run in report["runs"].items():
        on = next(m for m in run["modes"] if m["rerank"])
        rows.append({
            "variant": f"cross-encoder {name.split('=')[1]} tokens, {label}",
            "queries": on["queries"],
            "ndcg@10": on["metrics"]["ndcg@10"],
            "p50_ms": on["latency_ms"]["client"]["p50"],
            "first_stage": base,
            "source": str(path.relative_to(RESULTS.parent.parent)),
        })
    return rows


def side_by_side_rows(path: Path) -> list[dict]:
    """The gateway's reranked and retrieval-only rows of a `side_by_side.py` report, concurrency 1."""
    report = json.loads(path.read_text())
    gateway = report["gateway"]
    on, off = gateway["runs"]["1"], gateway["retrieval_only"]["1"]
    base = {"ndcg@10": off["ndcg@10"], "p50_ms": off["p50_ms"]}
    kind = gateway["config"]["rerank"]["kind"]
    source = str(path.relative_to(RESULTS.parent.parent))
    return [
        {"variant": f"first stage only ({gateway['config']['retrieval']})", "queries": off["queries"],
         "ndcg@10": off["ndcg@10"], "p50_ms": off["p50_ms"], "first_stage": base, "source": source},
        {"variant": f"{kind} (default)", "queries": on["queries"], "ndcg@10": on["ndcg@10"],
         "p50_ms": on["p50_ms"], "first_stage": base, "source": source},
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| variant | queries | NDCG@10 | p50 ms | its run's first stage: NDCG@10, p50 ms | p50 / first stage p50 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        fs = r["first_stage"]
        lines.append(f"| {r['variant']} | {r['queries']} | {r['ndcg@10']:.3f} | {r['p50_ms']:,.0f} | "
                     f"{fs['ndcg@10']:.3f}, {fs['p50_ms']:.0f} | {r['p50_ms'] / fs['p50_ms']:.1f}× |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        late = r["variant"].startswith("late")
        marker, color = ("*", "tab:red") if late else ("o", "tab:blue") if "cross" in r["variant"] else ("s", "tab:gray")
        ax.scatter(r["p50_ms"], r["ndcg@10"], marker=marker, s=160 if late else 50, color=color)
        ax.annotate(r["variant"] + ("" if r["queries"] == 300 else f" ({r['queries']} q)"),
                    (r["p50_ms"], r["ndcg@10"]), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(right=max(r["p50_ms"] for r in rows) * 8)  # room for the labels right of the points
    ax.set_xlabel("served client p50, ms (log), concurrency 1, 2-core CPU")
    ax.set_ylabel("NDCG@10, SciFact test")
    ax.set_title("Rerankers on the CPU: quality against latency (up and left is better)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", type=Path, default=RESULTS / "scifact_rerank_lengths.json")
    p.add_argument("--runtime-fp32", type=Path, default=RESULTS / "scifact_runtime_fp32_100q.json")
    p.add_argument("--runtime-int8", type=Path, default=RESULTS / "scifact_runtime_int8_100q.json")
    p.add_argument("--side-by-side", type=Path, default=RESULTS / "realtime" / "scifact_side_by_side.json")
    p.add_argument("--out", type=Path, default=RESULTS / "realtime" / "scifact_pareto")
    args = p.parse_args()

    rows = (side_by_side_rows(args.side_by_side)
            + lengths_rows(args.lengths, "ONNX int8")
            + lengths_rows(args.runtime_int8, "ONNX int8")
            + lengths_rows(args.runtime_fp32, "torch fp32"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    plot(rows, args.out.with_suffix(".png"))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
