"""In-process evaluation of first stages and reranking, without a gateway.

Used to choose options before serving them (which first stage, which max length, whether to
interpolate the reranker with the retrieval score). The served numbers come from `eval`.

    python -m ranking_gateway.evaluation.offline --collection DIR --split test \
        --first-stage dense,bm25,hybrid [--reranker MODEL --max-length 256 --depth 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ranking_gateway.evaluation.metrics import aggregate
from ranking_gateway.scoring import interpolate


def main(argv: list[str] | None = None) -> int:
    from ranking_gateway.collection import load_collection
    from ranking_gateway.models import default_encoder_path
    from ranking_gateway.models import native_bf16
    from ranking_gateway.training.loop import score_pairs
    from ranking_gateway.training.mining import mine_candidates

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collection", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--first-stage", default="dense", help="comma-separated: dense, bm25, hybrid")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--embeddings-cache", type=Path, default=None)
    p.add_argument("--reranker", type=Path, default=None)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--depth", type=int, default=30, help="candidates reranked per query")
    p.add_argument("--alphas", default="1.0,0.8,0.6,0.5,0.4", help="interpolation weights of the reranker")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    coll = load_collection(args.collection, args.split)
    qids = sorted(coll.queries)[: args.limit] if args.limit else sorted(coll.queries)
    queries = {q: coll.queries[q] for q in qids}
    qrels = {q: coll.qrels[q] for q in qids}
    docs = coll.doc_by_id
    report: dict = {"collection": str(args.collection), "split": args.split, "queries": len(qids), "first_stage": {}}
    model = tokenizer = None
    if args.reranker:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.reranker))
        model = AutoModelForSequenceClassification.from_pretrained(str(args.reranker))
    for stage in args.first_stage.split(","):
        t0 = time.perf_counter()
        cands = mine_candidates(stage, coll.documents, queries, args.k, encoder_path=default_encoder_path(),
                                embeddings_cache=args.embeddings_cache)
        run = {q: {d: float(len(c) - i) for i, (d, _) in enumerate(c)} for q, c in cands.items()}
        entry: dict = {"retrieval": aggregate(run, qrels), "retrieval_seconds": round(time.perf_counter() - t0, 1)}
        if model is not None:
            t0 = time.perf_counter()
            per_alpha: dict[str, dict[str, dict[str, float]]] = {a: {} for a in args.alphas.split(",")}
            for q in qids:
                head = cands[q][: args.depth]
                logits = score_pairs(model, tokenizer, queries[q], [docs[d].full_text for d, _ in head],
                                     args.max_length, native_bf16())
                for a in per_alpha:
                    mixed = list(interpolate([s for _, s in head], logits, float(a)))
                    scores = {d: 1000.0 + s for (d, _), s in zip(head, mixed)}
                    scores.update({d: float(len(cands[q]) - i) for i, (d, _) in enumerate(cands[q]) if i >= args.depth})
                    per_alpha[a][q] = scores
            entry["rerank_seconds_per_query"] = round((time.perf_counter() - t0) / len(qids), 3)
            entry["rerank"] = {f"alpha={a}": aggregate(r, qrels) for a, r in per_alpha.items()}
        report["first_stage"][stage] = entry
        print(json.dumps({stage: entry}, indent=1), flush=True)
    report.update(max_length=args.max_length, depth=args.depth, reranker=str(args.reranker) if args.reranker else None)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
