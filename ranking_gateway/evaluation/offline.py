"""`ranking-gateway eval-offline`: first stages and reranking evaluated in-process, without a gateway.

Used to choose options before serving them (which first stage, which max length, whether to
interpolate the reranker with the retrieval score). The served numbers come from `eval`.

    ranking-gateway eval-offline --collection DIR --split test \
        --first-stage dense,bm25,hybrid [--bm25-stemmer english|none] \
        [--reranker MODEL --max-length 256 --depth 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ranking_gateway.core.config import RETRIEVAL_MODES
from ranking_gateway.core.errors import CliError
from ranking_gateway.core.lexical import STEMMER, check_stemmer
from ranking_gateway.core.scoring import interpolate
from ranking_gateway.evaluation.metrics import aggregate


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-offline",
        help="evaluate first stages and a reranker in-process on a BEIR split (no gateway)",
        description="Retrieve each judged query of a BEIR split with each --first-stage (the gateway's first "
        "stage, run in-process) and, with --reranker, rerank the candidates at each --max-length, --depth and "
        "--alphas; print and write NDCG@10, MRR@10 and Recall@100 of every combination.",
    )
    p.add_argument("--collection", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--first-stage", default="dense", help="comma-separated: dense, bm25, hybrid")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--bm25-stemmer", default=STEMMER or "none",
                   help="stemmer of the bm25 and hybrid first stages: a Snowball language or none "
                   f"(default {STEMMER or 'none'}, what build indexes with)")
    p.add_argument("--embeddings-cache", type=Path, default=None)
    p.add_argument("--encoder", type=Path, default=None, help="dense first stage's bi-encoder (default all-MiniLM-L6-v2)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--reranker", type=Path, default=None)
    p.add_argument("--max-length", default="256", help="reranker max tokens; comma-separated to compare several")
    p.add_argument("--depth", default="30", help="candidates reranked per query; comma-separated to compare several")
    p.add_argument("--alphas", default="1.0,0.8,0.6,0.5,0.4", help="interpolation weights of the reranker")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(handler=run)


def rerank_run(cands: list[tuple[str, float]], logits: list[float], alpha: float) -> dict[str, float]:
    """Scores of one query: the reranked head (blended at `alpha`) above the tail in retrieval order."""
    depth = len(logits)
    head = cands[:depth]
    mixed = interpolate([s for _, s in head], logits, alpha)
    scores = {d: 1000.0 + float(m) for (d, _), m in zip(head, mixed)}
    scores.update({d: float(len(cands) - i) for i, (d, _) in enumerate(cands) if i >= depth})
    return scores


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ranking_build.models import resolve_device, use_bf16
    from ranking_gateway.core.collection import load_collection
    from ranking_gateway.training.loop import score_pairs
    from ranking_gateway.training.mining import mine_candidates

    stages = args.first_stage.split(",")
    unknown = [s for s in stages if s not in RETRIEVAL_MODES]
    if unknown:
        raise CliError(f"--first-stage {unknown[0]!r}: choose from {', '.join(RETRIEVAL_MODES)}")
    stemmer = None if args.bm25_stemmer == "none" else args.bm25_stemmer
    try:
        check_stemmer(stemmer)
    except ValueError as exc:
        raise CliError(f"--bm25-stemmer: {exc}") from None
    coll = load_collection(args.collection, args.split)
    qids = sorted(coll.queries)[: args.limit] if args.limit else sorted(coll.queries)
    queries = {q: coll.queries[q] for q in qids}
    qrels = {q: coll.qrels[q] for q in qids}
    docs = coll.doc_by_id
    report: dict = {"collection": str(args.collection), "split": args.split, "queries": len(qids),
                    "bm25_stemmer": stemmer, "first_stage": {}}
    device = resolve_device(args.device)
    bf16 = use_bf16(device)
    lengths = [int(x) for x in args.max_length.split(",")]
    depths = [int(x) for x in args.depth.split(",")]
    alphas = [float(a) for a in args.alphas.split(",")]
    model = tokenizer = None
    if args.reranker:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(args.reranker))
        model = AutoModelForSequenceClassification.from_pretrained(str(args.reranker), dtype=torch.float32).to(device)
    for stage in stages:
        t0 = time.perf_counter()
        cands = mine_candidates(stage, coll.documents, queries, args.k, encoder_path=args.encoder,
                                embeddings_cache=args.embeddings_cache, device=str(device), bm25_stemmer=stemmer)
        retrieved = {q: {d: float(len(c) - i) for i, (d, _) in enumerate(c)} for q, c in cands.items()}
        entry: dict = {"retrieval": aggregate(retrieved, qrels), "retrieval_seconds": round(time.perf_counter() - t0, 1)}
        if model is not None:
            entry["rerank"], entry["rerank_seconds_per_query"] = {}, {}
            for length in lengths:
                t0 = time.perf_counter()
                logits = {q: score_pairs(model, tokenizer, queries[q], [docs[d].full_text for d, _ in cands[q][: max(depths)]],
                                         length, bf16) for q in tqdm(qids, desc=f"{stage} rerank len {length}")}
                entry["rerank_seconds_per_query"][f"len={length}"] = round((time.perf_counter() - t0) / len(qids), 4)
                for depth in depths:
                    for alpha in alphas:
                        reranked = {q: rerank_run(cands[q], logits[q][:depth], alpha) for q in qids}
                        entry["rerank"][f"len={length},depth={depth},alpha={alpha:g}"] = aggregate(reranked, qrels)
        report["first_stage"][stage] = entry
        print(json.dumps({stage: entry}, indent=1), flush=True)
    report.update(max_length=lengths, depth=depths, device=str(device), reranker=str(args.reranker) if args.reranker else None)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0
