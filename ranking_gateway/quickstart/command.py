"""`ranking-gateway quickstart-corpus`: write the stdlib-documentation collection in BEIR layout."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "quickstart-corpus",
        help="write a BEIR collection built from the installed Python standard library's docstrings",
        description="Documents are stdlib names' docstrings without their summary sentence; queries are the "
        "summary sentences (inverse cloze task). Offline and deterministic for a given Python version; "
        "train-reranker, build (corpus.jsonl) and eval take the result.",
    )
    p.add_argument("--out", required=True, type=Path, help="collection directory to write")
    p.add_argument("--max-docs", type=int, default=3000)
    p.add_argument("--test-queries", type=int, default=200, help="queries held out as the test split")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ranking_gateway.quickstart.corpus import CorpusSpec, write_quickstart_collection

    meta = write_quickstart_collection(args.out, CorpusSpec(max_docs=args.max_docs, test_queries=args.test_queries))
    print(json.dumps({"out": str(args.out), **meta}, indent=2))
    return 0
