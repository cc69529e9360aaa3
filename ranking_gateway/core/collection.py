"""Loading a BEIR-layout collection: `corpus.jsonl`, `queries.jsonl`, `qrels/{split}.tsv`.

Training, negative mining and evaluation all read collections through this one module so they
agree on what a query, a judgment and a split are.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ranking_gateway.core.corpus import Document, read_corpus
from ranking_gateway.core.errors import CliError

Qrels = dict[str, dict[str, int]]  # query id -> {doc id -> graded relevance}


class CollectionError(CliError):
    """The collection directory is missing a file or a file breaks the BEIR format."""


@dataclass(slots=True)
class Collection:
    """One split of a collection: only queries that have at least one judgment are kept."""

    root: Path
    split: str
    documents: list[Document]
    queries: dict[str, str]  # query id -> text, restricted to the judged queries of the split
    qrels: Qrels

    @property
    def doc_by_id(self) -> dict[str, Document]:
        return {d.id: d for d in self.documents}


def read_queries(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise CollectionError(f"{path}: no such queries file")
    queries: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                qid, text = str(obj["_id"]), obj["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise CollectionError(f"{path}:{number}: expected {{\"_id\", \"text\"}}") from None
            if not isinstance(text, str) or not text.strip():
                raise CollectionError(f"{path}:{number}: query {qid!r} has no text")
            queries[qid] = text.strip()
    return queries


def read_qrels(path: Path) -> Qrels:
    """`query-id<TAB>corpus-id<TAB>score` with a header line, as BEIR ships them."""
    if not path.is_file():
        raise CollectionError(f"{path}: no such qrels file")
    qrels: Qrels = {}
    with path.open(encoding="utf-8", newline="") as fh:
        rows = csv.reader(fh, delimiter="\t")
        for number, row in enumerate(rows, start=1):
            if not row or (number == 1 and not row[-1].strip().lstrip("-").isdigit()):
                continue  # blank line or header
            if len(row) < 3:
                raise CollectionError(f"{path}:{number}: expected 3 tab-separated columns")
            try:
                score = int(row[2])
            except ValueError:
                raise CollectionError(f"{path}:{number}: score {row[2]!r} is not an integer") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    return qrels


def load_collection(root: str | Path, split: str) -> Collection:
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(f"{root}: no such collection directory")
    documents = read_corpus(root / "corpus.jsonl")
    all_queries = read_queries(root / "queries.jsonl")
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    doc_ids = {d.id for d in documents}
    missing_q = [q for q in qrels if q not in all_queries]
    if missing_q:
        raise CollectionError(f"{root}: qrels/{split}.tsv names unknown query ids, e.g. {missing_q[0]!r}")
    for qid, judged in qrels.items():
        unknown = [d for d in judged if d not in doc_ids]
        if unknown:
            raise CollectionError(f"{root}: query {qid!r} is judged against unknown document {unknown[0]!r}")
    queries = {qid: all_queries[qid] for qid in qrels}
    return Collection(root=root, split=split, documents=documents, queries=queries, qrels=qrels)


def write_collection(
    root: str | Path, documents: list[Document], queries: dict[str, str], qrels_by_split: dict[str, Qrels]
) -> None:
    """Write a collection in BEIR layout (used by the quickstart corpus and by tests)."""
    from ranking_gateway.core.corpus import write_documents

    root = Path(root)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    write_documents(documents, root / "corpus.jsonl")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    for split, qrels in qrels_by_split.items():
        with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
            fh.write("query-id\tcorpus-id\tscore\n")
            for qid, judged in qrels.items():
                for did, score in judged.items():
                    fh.write(f"{qid}\t{did}\t{score}\n")
