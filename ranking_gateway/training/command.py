"""`ranking-gateway train-reranker`: fine-tune a cross-encoder on a BEIR-layout collection."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ranking_gateway.errors import CliError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-reranker",
        help="fine-tune a cross-encoder reranker on a BEIR-layout collection",
        description="Fine-tune a cross-encoder (one logit per query-document pair) with a listwise loss over "
        "qrels positives and hard negatives mined by the project's dense retriever. The output directory "
        "is a Hugging Face model that `build --reranker` takes.",
    )
    p.add_argument("--collection", required=True, type=Path, help="BEIR directory: corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="train", help="qrels split to train on (default train)")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--init", type=Path, default=None, help="BERT-like model directory to start from (default all-MiniLM-L6-v2)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-length", type=int, default=256, help="max tokens per (query, document) pair")
    p.add_argument("--negatives", type=int, default=7, help="hard negatives per positive")
    p.add_argument("--mine-depth", type=int, default=30, help="negatives are drawn from the retriever's top-N")
    p.add_argument("--miner", choices=("dense", "bm25", "hybrid"), default="dense")
    p.add_argument("--heldout-fraction", type=float, default=0.1, help="share of the split's queries held out")
    p.add_argument("--eval-candidates", type=int, default=50, help="candidates reranked per held-out query")
    p.add_argument("--batch-queries", type=int, default=4, help="positives per step (each with its negatives)")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps")
    p.add_argument("--max-queries", type=int, default=None, help="use only the first N queries of the split (smoke runs)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bf16 autocast on CPU; auto = only where the CPU has native bf16 (AMX/AVX512-BF16)")
    p.add_argument("--mine-doc-length", type=int, default=256, help="document max tokens for the dense miner")
    p.add_argument("--embeddings-cache", type=Path, default=None,
                   help=".npy file caching the miner's corpus embeddings between runs")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_gateway.collection import load_collection
    from ranking_gateway.models import default_encoder_path, native_bf16
    from ranking_gateway.training.examples import examples_from_qrels, split_heldout
    from ranking_gateway.training.loop import HeldOut, TrainConfig, train, write_report
    from ranking_gateway.training.mining import mine_candidates

    if args.epochs < 1 or args.max_length < 16 or args.negatives < 1:
        raise CliError("--epochs must be >= 1, --max-length >= 16 and --negatives >= 1")
    init = args.init or default_encoder_path()
    if not Path(init).is_dir():
        raise CliError(f"{init}: --init must be a local model directory")
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16())
    log.info("bf16 autocast %s", "on" if bf16 else "off (no native bf16 on this CPU)" if args.bf16 == "auto" else "off")
    started = time.perf_counter()
    coll = load_collection(args.collection, args.split)
    qids = sorted(coll.queries)[: args.max_queries] if args.max_queries else sorted(coll.queries)
    train_ids, held_ids = split_heldout(qids, args.heldout_fraction, args.seed)
    docs = coll.doc_by_id
    depth = max(args.mine_depth, args.eval_candidates if held_ids else 0)
    cands = mine_candidates(
        args.miner, coll.documents, {q: coll.queries[q] for q in qids}, depth,
        encoder_path=default_encoder_path(), doc_max_length=args.mine_doc_length,
        bf16=bf16, embeddings_cache=args.embeddings_cache,
    )
    mined = {q: [d for d, _ in c[: args.mine_depth]] for q, c in cands.items()}
    examples = examples_from_qrels(
        {q: coll.queries[q] for q in train_ids}, {q: coll.qrels[q] for q in train_ids}, mined, docs,
        n_negatives=args.negatives, seed=args.seed,
    )
    if not examples:
        raise CliError("no training examples: no judged query has mined negatives")
    heldout = HeldOut(
        queries={q: coll.queries[q] for q in held_ids},
        candidates={q: [(d, docs[d].full_text) for d, _ in cands[q][: args.eval_candidates]] for q in held_ids},
        qrels={q: coll.qrels[q] for q in held_ids},
    )
    mining_seconds = time.perf_counter() - started
    log.info("%d training examples from %d queries; %d held-out queries", len(examples), len(train_ids), len(held_ids))

    tokenizer = AutoTokenizer.from_pretrained(str(init))
    model = AutoModelForSequenceClassification.from_pretrained(str(init), num_labels=1)
    cfg = TrainConfig(
        epochs=args.epochs, batch_queries=args.batch_queries, lr=args.lr, max_length=args.max_length,
        bf16=bf16, seed=args.seed, max_steps=args.max_steps,
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def save_best(epoch: int) -> None:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        log.info("saved epoch %d to %s", epoch, out)

    result = train(model, tokenizer, examples, cfg, heldout=heldout if held_ids else None, save_best=save_best)
    write_report(
        out / "training_report.json", cfg, result,
        {
            "command": "train-reranker",
            "collection": str(args.collection), "split": args.split, "init": str(init),
            "miner": args.miner, "bf16": bf16, "mine_depth": args.mine_depth, "negatives": args.negatives,
            "eval_candidates": args.eval_candidates,
            "train_queries": len(train_ids), "heldout_queries": len(held_ids), "examples": len(examples),
            "mining_seconds": round(mining_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(json.dumps({"out": str(out), "best_epoch": result.best_epoch, "epochs": result.heldout,
                      "train_seconds": round(result.seconds, 1)}, indent=2))
    return 0
