"""`ranking-gateway eval`: relevance and latency of a running gateway, reranking on and off in one run."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path

from ranking_gateway.core.errors import CliError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="measure NDCG@10, MRR@10, Recall@100 and latency of a running gateway",
        description="Send every judged query of a BEIR split through URL/v1/search with reranking off and on, "
        "print a table, and write JSON and a PNG plot.",
    )
    p.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--collection", required=True, type=Path, help="BEIR directory (queries.jsonl, qrels/)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, default=None, help="JSON report path (the plot goes next to it as .png)")
    p.add_argument("--modes", default="off,on", help="comma-separated rerank modes to run, in order (default off,on)")
    p.add_argument("--k", type=int, default=100, help="results requested per query (Recall@100 needs 100)")
    p.add_argument("--candidates", type=int, default=100, help="retrieval candidates per query")
    p.add_argument("--retrieval", choices=("dense", "bm25", "hybrid"), default=None,
                   help="first stage to ask for in each request (default: the gateway's)")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight (1 = unloaded latency)")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries (quick checks)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, seconds")
    p.set_defaults(handler=run)


def parse_modes(text: str) -> list[bool]:
    table = {"on": True, "off": False}
    try:
        modes = [table[m.strip()] for m in text.split(",") if m.strip()]
    except KeyError:
        raise CliError(f"--modes {text!r}: use on, off or off,on") from None
    if not modes:
        raise CliError("--modes is empty")
    return modes


def read_split(collection: Path, split: str) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries and qrels only: the corpus lives in the gateway, so it is not loaded here."""
    from ranking_gateway.core.collection import read_qrels, read_queries

    qrels = read_qrels(collection / "qrels" / f"{split}.tsv")
    all_queries = read_queries(collection / "queries.jsonl")
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        raise CliError(f"{collection}: qrels/{split}.tsv names unknown query {missing[0]!r}")
    return {q: all_queries[q] for q in sorted(qrels)}, qrels


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.evaluation.client import check_reachable, gateway_config, run_mode
    from ranking_gateway.evaluation.report import lift, plot, print_table, summarize

    if args.k < 1 or args.candidates < args.k or args.concurrency < 1:
        raise CliError("need 1 <= --k <= --candidates and --concurrency >= 1")
    modes = parse_modes(args.modes)
    queries, qrels = read_split(args.collection, args.split)
    if args.limit:
        queries = dict(list(queries.items())[: args.limit])
        qrels = {q: qrels[q] for q in queries}
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request drowns the progress bar
    check_reachable(args.url)
    gateway = gateway_config(args.url)
    log.info("gateway config: %s", json.dumps(gateway))
    results = []
    for rerank in modes:
        log.info("%d queries, rerank %s, concurrency %d", len(queries), "on" if rerank else "off", args.concurrency)
        results.append(asyncio.run(run_mode(
            args.url, queries, rerank=rerank, k=args.k, candidates=args.candidates,
            concurrency=args.concurrency, timeout_s=args.timeout, progress=True, retrieval=args.retrieval,
        )))
    summaries = [summarize(r, qrels) for r in results]
    print_table(summaries)
    report = {
        "url": args.url, "collection": str(args.collection), "split": args.split, "queries": len(queries),
        "k": args.k, "candidates": args.candidates, "concurrency": args.concurrency,
        "retrieval": args.retrieval or gateway.get("retrieval"), "gateway": gateway,
        "modes": summaries, "rerank_lift": lift(summaries),
        "errors": {("on" if r.rerank else "off"): dict(list(r.errors.items())[:5]) for r in results if r.errors},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        plot(summaries, results, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    if all(s["queries"] == 0 for s in summaries):
        raise CliError("every request failed; first error: " + next(iter(results[0].errors.values()), "?"))
    return 0
