"""Relevance and latency of the served stack at several reranker max lengths, one build.

For each length L: `ranking-gateway serve --rerank-max-length L` (embedded Triton) and
`ranking-gateway eval` over the split (reranking off at the first length, on at every length),
then one JSON and one PNG comparing NDCG@10 with latency. Everything goes through HTTP, as a
client sees it; the machine is shared, so compare the lengths of one run with each other.

    python bench/rerank_lengths.py --artifacts runs/scifact/artifacts \
        --collection ../shared/data/scifact --lengths 128,256,384 --depth 30 [--limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package

from gateway_process import start_gateway  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def serve(artifacts: Path, length: int, depth: int, alpha: str | None, log_path: Path) -> tuple[subprocess.Popen, str]:
    # the model's own latency is measured: no deadline cuts a slow rerank short
    flags = ["--rerank-max-length", str(length), "--rerank-depth", str(depth), "--deadline-ms", "600000"]
    flags += ["--rerank-alpha", alpha] if alpha is not None else []
    return start_gateway(artifacts, flags, log_path)


def evaluate(url: str, collection: Path, split: str, modes: str, out: Path, limit: int | None) -> dict:
    cmd = [sys.executable, "-m", "ranking_gateway.cli", "eval", "--url", url, "--collection", str(collection),
           "--split", split, "--modes", modes, "--out", str(out)]
    cmd += ["--limit", str(limit)] if limit else []
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        x, y = row["latency_ms"]["client"]["p50"], row["metrics"]["ndcg@10"]
        ax.scatter([x], [y], s=60, marker="o" if row["rerank"] else "s")
        ax.annotate(row["label"], (x, y), textcoords="offset points", xytext=(6, -4))
    ax.set_xscale("log")
    ax.margins(x=0.35, y=0.1)  # room for the labels right of the points
    ax.set_xlabel("client latency p50, ms (log scale; concurrency 1)")
    ax.set_ylabel("NDCG@10")
    ax.set_title("served stack: reranker max length vs relevance and latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--collection", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--lengths", default="128,256,384")
    p.add_argument("--depth", type=int, default=30, help="serve --rerank-depth")
    p.add_argument("--alpha", default=None, help="serve --rerank-alpha (default: the build's recommended one)")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--name", default="rerank_lengths", help="output name under bench/results/")
    p.add_argument("--replot", action="store_true", help="only redraw the PNG from bench/results/NAME.json")
    args = p.parse_args()

    work = RESULTS / args.name
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"artifacts": str(args.artifacts), "collection": str(args.collection), "split": args.split,
                    "depth": args.depth, "runs": {}}
    out = RESULTS / f"{args.name}.json"
    if args.replot:  # redraw the PNG of an earlier run from its JSON
        report = json.loads(out.read_text())
    else:
        logs = Path(tempfile.mkdtemp(prefix=f"{args.name}-logs-"))  # the servers' logs: not results
        print(f"serve logs in {logs}")
        for i, length in enumerate(int(x) for x in args.lengths.split(",")):
            proc, url = serve(args.artifacts, length, args.depth, args.alpha, logs / f"serve-len{length}.log")
            try:
                report["runs"][f"len={length}"] = evaluate(
                    url, args.collection, args.split, "off,on" if i == 0 else "on", work / f"eval-len{length}.json", args.limit
                )
            finally:
                proc.terminate()
                proc.wait(timeout=60)
    rows = [
        {"label": f"rerank {length.split('=')[1]} tok" if mode["rerank"] else f"no rerank ({result['retrieval']})", **mode}
        for length, result in report["runs"].items()
        for mode in result["modes"]
    ]
    report["summary"] = [
        {"label": r["label"], "ndcg@10": r["metrics"]["ndcg@10"], "mrr@10": r["metrics"]["mrr@10"],
         "recall@100": r["metrics"]["recall@100"], "client_p50_ms": r["latency_ms"]["client"]["p50"],
         "client_p95_ms": r["latency_ms"]["client"]["p95"], "client_p99_ms": r["latency_ms"]["client"]["p99"],
         "server_rerank_p50_ms": r["latency_ms"].get("server_rerank", {}).get("p50"), "queries": r["queries"],
         "errors": r["errors"]}
        for r in rows
    ]
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(rows, out.with_suffix(".png"))
    print(json.dumps(report["summary"], indent=1))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
