"""`ranking-gateway train-reranker`: train a reranker (a cross-encoder, or a late-interaction
reranker whose document side `build` precomputes) on a BEIR-layout collection."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-reranker",
        help="fine-tune a cross-encoder reranker on a BEIR-layout collection",
        description="Fine-tune a cross-encoder (one logit per query-document pair) with a listwise loss over "
        "positives and hard negatives mined by the project's retriever. Positives come from the split's qrels "
        "(--source qrels) or, without any labels, from the corpus itself (--source corpus: inverse cloze, a "
        "title or sentence as the query and its document without it as the positive). The output directory "
        "is a Hugging Face model that `build --reranker` takes (and `--init` of a next stage).",
    )
    p.add_argument("--collection", required=True, type=Path, help="BEIR directory: corpus.jsonl, queries.jsonl, qrels/")
    p.add_argument("--split", default="train", help="qrels split to train on (default train)")
    p.add_argument("--source", choices=("qrels", "corpus", "events"), default="qrels",
                   help="qrels: the split's judgments; corpus: self-supervised inverse-cloze pairs (no labels used); "
                   "events: the gateway's click log (--events), clicked vs skipped-above and mined negatives")
    p.add_argument("--events", default=None,
                   help="--source events: an event-log file or directory, or a redis:// URL of the event stream")
    p.add_argument("--redis-stream", default="rg:events", help="stream name with a redis:// --events")
    p.add_argument("--queries-per-doc", type=int, default=2, help="--source corpus: pseudo-queries per document")
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--kind", choices=("cross-encoder", "late-interaction"), default="cross-encoder",
                   help="cross-encoder: one logit per pair, the whole Transformer at search time; late-interaction: "
                   "ColBERT-style token vectors, the document side frozen and stored by build (trainable on a CPU)")
    p.add_argument("--dim", type=int, default=128, help="late-interaction: token vector size")
    p.add_argument("--query-max-length", type=int, default=32, help="late-interaction: query tokens")
    p.add_argument("--document-max-length", type=int, default=512, help="late-interaction: document tokens stored")
    p.add_argument("--projection-lr", type=float, default=1e-3, help="late-interaction: learning rate of the projections")
    p.add_argument("--document-states-cache", type=Path, default=None,
                   help="late-interaction: .npz caching the frozen document encoder's outputs between runs")
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
                   help="bf16 autocast; auto = on a GPU, and on a CPU only where bf16 is native (AMX/AVX512-BF16)")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--mine-encoder", type=Path, default=None,
                   help="bi-encoder directory of the dense miner (default all-MiniLM-L6-v2: what `build` serves)")
    p.add_argument("--mine-doc-length", type=int, default=256, help="document max tokens for the dense miner")
    p.add_argument("--embeddings-cache", type=Path, default=None,
                   help=".npy file caching the miner's corpus embeddings between runs")
    p.set_defaults(handler=run)


def _load(args: argparse.Namespace):
    """The collection; without qrels for the split, --source corpus/events use the corpus alone
    (no held-out slice then)."""
    from ranking_gateway.core.corpus import read_corpus
    from ranking_gateway.core.collection import Collection, load_collection

    if args.source != "qrels" and not (args.collection / "qrels" / f"{args.split}.tsv").is_file():
        documents = read_corpus(args.collection / "corpus.jsonl")
        return Collection(root=args.collection, split=args.split, documents=documents, queries={}, qrels={})
    return load_collection(args.collection, args.split)


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ranking_build.models import default_encoder_path, resolve_device, use_bf16
    from ranking_gateway.training.loop import TrainConfig, train, write_report

    if args.kind == "late-interaction":
        return _run_late_interaction(args)
    if (args.source == "events") != (args.events is not None):
        raise CliError("--events FILE|DIR|redis://… goes with --source events, and only with it")
    if args.epochs < 1 or args.max_length < 16 or args.negatives < 1 or args.queries_per_doc < 1:
        raise CliError("--epochs must be >= 1, --max-length >= 16, --negatives and --queries-per-doc >= 1")
    init = args.init or default_encoder_path()
    if not Path(init).is_dir():
        raise CliError(f"{init}: --init must be a local model directory")
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as exc:
        raise CliError(f"--device: {exc}") from None
    bf16 = use_bf16(device, args.bf16)
    log.info("device %s, bf16 autocast %s", device, "on" if bf16 else "off")
    started = time.perf_counter()
    coll = _load(args)
    examples, heldout, n_train_queries = _examples(args, coll, bf16, str(device))
    mining_seconds = time.perf_counter() - started
    log.info("%d training examples (%s); %d held-out queries", len(examples), args.source, len(heldout.queries))

    import torch

    tokenizer = AutoTokenizer.from_pretrained(str(init))
    # fp32 master weights whatever the checkpoint's dtype; autocast does the bf16 part
    model = AutoModelForSequenceClassification.from_pretrained(str(init), num_labels=1, dtype=torch.float32)
    cfg = TrainConfig(
        epochs=args.epochs, batch_queries=args.batch_queries, lr=args.lr, max_length=args.max_length,
        bf16=bf16, seed=args.seed, max_steps=args.max_steps, device=str(device),
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    def save_best(epoch: int) -> None:
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        log.info("saved epoch %d to %s", epoch, out)

    result = train(model, tokenizer, examples, cfg, heldout=heldout if heldout.queries else None, save_best=save_best)
    best = result.heldout[result.best_epoch - 1] if result.heldout and result.best_epoch > 0 else {}
    write_report(
        out / "training_report.json", cfg, result,
        {
            "command": "train-reranker",
            "collection": str(args.collection), "split": args.split, "source": args.source, "init": str(init),
            "device": str(device), "device_name": _device_name(device),
            "miner": args.miner, "bf16": bf16, "mine_depth": args.mine_depth, "negatives": args.negatives,
            "eval_candidates": args.eval_candidates,
            "train_queries": n_train_queries, "heldout_queries": len(heldout.queries), "examples": len(examples),
            # the blend weight to serve (`serve --rerank-alpha`), chosen on the held-out training queries
            "recommended_rerank_alpha": best.get("best_alpha"),
            "mining_seconds": round(mining_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        },
    )
    print(json.dumps({"out": str(out), "best_epoch": result.best_epoch, "epochs": result.heldout,
                      "recommended_rerank_alpha": best.get("best_alpha"),
                      "train_seconds": round(result.seconds, 1)}, indent=2))
    return 0


def _run_late_interaction(args: argparse.Namespace) -> int:
    """Mine with the served first stage, compute the frozen document side once, train the query
    side and the projections; the best held-out epoch is saved with its recommended alpha."""
    import torch

    from ranking_build.models import default_encoder_path
    from ranking_gateway.core.artifacts import sha256_of
    from ranking_gateway.core.reranker_dir import BUILTIN_DOCUMENT_ENCODER
    from ranking_gateway.training.late_interaction import (
        DocumentStates,
        LateInteractionTrainer,
        LateTrainConfig,
        write_report,
    )

    if args.source != "qrels":
        raise CliError("--kind late-interaction trains on --source qrels (its positives are corpus rows)")
    if args.dim < 8 or args.query_max_length < 4 or args.document_max_length < 16:
        raise CliError("--dim must be >= 8, --query-max-length >= 4, --document-max-length >= 16")
    started = time.perf_counter()
    coll = _load(args)
    examples, heldout, n_train = _row_examples(args, coll)
    mining_seconds = time.perf_counter() - started
    doc_dir = default_encoder_path()
    states = DocumentStates.compute(doc_dir, [d.full_text for d in coll.documents], args.document_max_length,
                                    args.document_states_cache)
    cfg = LateTrainConfig(
        dim=args.dim, query_max_length=args.query_max_length, document_max_length=args.document_max_length,
        epochs=args.epochs, batch_queries=args.batch_queries, negatives=args.negatives, lr=args.lr,
        projection_lr=args.projection_lr, seed=args.seed, max_steps=args.max_steps,
    )
    init = args.init or doc_dir
    trainer = LateInteractionTrainer(Path(init), states, cfg)
    out: Path = args.out
    doc_sha = sha256_of(doc_dir / "model.safetensors")
    result = trainer.train(examples, heldout, lambda epoch: trainer.save(out, BUILTIN_DOCUMENT_ENCODER, doc_sha))
    write_report(out / "training_report.json", cfg, result, {
        "command": "train-reranker --kind late-interaction", "collection": str(args.collection), "split": args.split,
        "init": str(init), "miner": args.miner, "mine_depth": args.mine_depth, "eval_candidates": args.eval_candidates,
        "train_queries": n_train, "heldout_queries": len(heldout.queries), "examples": len(examples),
        "device": _device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
        "mining_seconds": round(mining_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1),
    })
    print(json.dumps({"out": str(out), "best_epoch": result.best_epoch, "epochs": result.epochs,
                      "train_seconds": round(result.seconds, 1)}, indent=2))
    return 0


def _row_examples(args: argparse.Namespace, coll):
    """Late-interaction examples: judged rows against rows mined by the served first stage."""
    from ranking_gateway.training.examples import split_heldout
    from ranking_gateway.training.late_interaction import RowExample, RowHeldOut
    from ranking_gateway.training.mining import mine_candidates

    qids = sorted(coll.queries)[: args.max_queries] if args.max_queries else sorted(coll.queries)
    train_ids, held_ids = split_heldout(qids, args.heldout_fraction, args.seed)
    row = {d.id: i for i, d in enumerate(coll.documents)}
    cands = mine_candidates(
        args.miner, coll.documents, {q: coll.queries[q] for q in qids}, max(args.mine_depth, args.eval_candidates),
        encoder_path=args.mine_encoder, doc_max_length=args.mine_doc_length, embeddings_cache=args.embeddings_cache,
    )
    examples = []
    for q in train_ids:
        judged = coll.qrels[q]
        negatives = tuple(row[d] for d, _ in cands[q][: args.mine_depth] if d not in judged)
        examples += [RowExample(coll.queries[q], row[d], negatives) for d, s in judged.items() if s > 0 and d in row and negatives]
    if not examples:
        raise CliError("no training examples: no judged query has a positive in the corpus and mined negatives")
    heldout = RowHeldOut(
        queries={q: coll.queries[q] for q in held_ids},
        candidates={q: [(row[d], d, s) for d, s in cands[q][: args.eval_candidates]] for q in held_ids},
        qrels={q: coll.qrels[q] for q in held_ids},
    )
    return examples, heldout, len(train_ids)


def _examples(args: argparse.Namespace, coll, bf16: bool, device: str):
    """(training examples, held-out slice, training queries) for `--source`: one mining pass
    over the source's queries and the held-out ones, with the first stage the gateway serves."""
    from ranking_gateway.training.examples import (
        examples_from_clicks,
        examples_from_pseudo_queries,
        examples_from_qrels,
        inverse_cloze_queries,
        split_heldout,
    )
    from ranking_gateway.training.loop import HeldOut
    from ranking_gateway.training.mining import mine_candidates

    qids = sorted(coll.queries)[: args.max_queries] if args.max_queries else sorted(coll.queries)
    train_ids, held_ids = split_heldout(qids, args.heldout_fraction, args.seed)
    docs = coll.doc_by_id
    pseudo, clicks = [], []
    if args.source == "corpus":
        pseudo = inverse_cloze_queries(coll.documents, per_doc=args.queries_per_doc, seed=args.seed)
        log.info("%d inverse-cloze queries from %d documents", len(pseudo), len(coll.documents))
    elif args.source == "events":
        clicks = _click_pairs(args, docs)
    to_mine = {q: coll.queries[q] for q in (qids if args.source == "qrels" else held_ids)}
    to_mine.update({pq.query_id: pq.text for pq in pseudo})
    to_mine.update({f"click:{c.query}": c.query for c in clicks})
    cands = mine_candidates(
        args.miner, coll.documents, to_mine, max(args.mine_depth, args.eval_candidates if held_ids else 0),
        encoder_path=args.mine_encoder, doc_max_length=args.mine_doc_length,
        bf16=bf16, embeddings_cache=args.embeddings_cache, device=device,
    )
    mined = {q: [d for d, _ in c[: args.mine_depth]] for q, c in cands.items()}
    if args.source == "corpus":
        examples = examples_from_pseudo_queries(pseudo, mined, docs, n_negatives=args.negatives, seed=args.seed)
    elif args.source == "events":
        by_text = {c.query: mined[f"click:{c.query}"] for c in clicks}
        examples = examples_from_clicks(clicks, by_text, docs, n_negatives=args.negatives, seed=args.seed)
    else:
        examples = examples_from_qrels(
            {q: coll.queries[q] for q in train_ids}, {q: coll.qrels[q] for q in train_ids}, mined, docs,
            n_negatives=args.negatives, seed=args.seed,
        )
    if not examples:
        raise CliError("no training examples: no query has mined negatives")
    heldout = HeldOut(
        queries={q: coll.queries[q] for q in held_ids},
        candidates={q: [(d, docs[d].full_text, s) for d, s in cands[q][: args.eval_candidates]] for q in held_ids},
        qrels={q: coll.qrels[q] for q in held_ids},
    )
    n_train_queries = {"corpus": len(pseudo), "events": len(clicks)}.get(args.source, len(train_ids))
    return examples, heldout, n_train_queries


def _click_pairs(args: argparse.Namespace, docs: dict) -> list:
    from ranking_gateway.personalization.command import load_records
    from ranking_gateway.training.clicks import click_pairs

    pairs = click_pairs(load_records(args.events, args.redis_stream))
    known = [c for c in pairs if c.clicked_id in docs]
    log.info("%d clicks with a logged query in %s (%d on documents of this corpus)", len(pairs), args.events, len(known))
    if not known:
        raise CliError(f"{args.events}: no click joins an impression with a query on a document of this corpus")
    return known


def _device_name(device) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
