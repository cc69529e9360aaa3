"""Plots of a reranker's training and offline evaluation, from the JSON the commands write.

    python bench/plot_reranker.py --reports STAGE1.json STAGE2.json --offline OFFLINE.json \
        --out bench/results/scifact/reranker.png

Left: held-out NDCG@10 per epoch of each `train-reranker` report (the logit alone, the best
blend, and the first stage). Right: `ranking-gateway eval-offline` NDCG@10 by rerank
depth for each max length (alpha = 1, the reranker's logit alone), first stage as a line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", type=Path, nargs="+", required=True, help="training_report.json files, in stage order")
    p.add_argument("--offline", type=Path, required=True, help="offline evaluation JSON")
    p.add_argument("--stage", default="hybrid", help="first stage of the offline JSON to plot")
    p.add_argument("--alpha", default="1", help="blend weight to plot")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    x0 = 0
    for path in args.reports:
        report = json.loads(path.read_text())
        epochs = report["epochs"]
        xs = [x0 + e["epoch"] for e in epochs]
        name = f"{report.get('source', '?')} ({report.get('examples')} ex.)"
        left.plot(xs, [e["rerank_ndcg@10"] for e in epochs], "o-", label=f"{name}: logit")
        left.plot(xs, [e["best_ndcg@10"] for e in epochs], "x--", label=f"{name}: best blend")
        left.plot(xs, [e["retrieval_ndcg@10"] for e in epochs], ":", color="grey")
        x0 = xs[-1]
    left.set_xlabel("epoch (stages one after another)")
    left.set_ylabel("held-out NDCG@10 (train-split queries)")
    left.set_title("training (dotted: first stage)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    offline = json.loads(args.offline.read_text())
    stage = offline["first_stage"][args.stage]
    depths = offline["depth"]
    for length in offline["max_length"]:
        ys = [stage["rerank"][f"len={length},depth={d},alpha={float(args.alpha):g}"]["ndcg@10"] for d in depths]
        right.plot(depths, ys, "o-", label=f"max length {length}")
    right.axhline(stage["retrieval"]["ndcg@10"], color="grey", linestyle=":", label=f"{args.stage} first stage")
    right.set_xlabel("candidates reranked (depth)")
    right.set_ylabel(f"NDCG@10, {offline['split']} split ({offline['queries']} queries)")
    right.set_title(f"offline, alpha={args.alpha}")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
