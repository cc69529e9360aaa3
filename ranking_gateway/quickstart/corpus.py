"""The quickstart collection in BEIR layout: stdlib documentation with inverse-cloze queries.

Each documented name becomes a document (title = qualified name, text = the docstring *without*
its summary sentence), and that summary sentence becomes a query whose one relevant document is
the one it was cut from. Removing the sentence from the document keeps the task from being string
matching (the inverse cloze task of Lee et al., 2019): the model has to learn that "Serialize obj
to a JSON formatted str." is about the text that describes `json.dumps`' parameters.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.collection import Qrels, write_collection
from ranking_gateway.quickstart.stdlib_docs import DocEntry, all_entries, split_summary


@dataclass(frozen=True, slots=True)
class CorpusSpec:
    max_docs: int = 3000
    max_words: int = 120  # documents are truncated: short texts keep the quickstart's build fast
    min_words: int = 12
    test_queries: int = 200
    seed: str = "stdlib-v1"


def _stable_hash(text: str, seed: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{text}".encode()).digest()[:8], "big")


def build_collection(entries: list[DocEntry], spec: CorpusSpec) -> tuple[list[Document], dict[str, str], dict[str, Qrels]]:
    """Documents, queries and {train, test} qrels; deterministic for a given list of entries."""
    seen_names: set[str] = set()
    seen_texts: set[str] = set()
    summary_count: dict[str, int] = {}
    pairs: list[tuple[str, str, str]] = []  # (name, summary, rest)
    for e in entries:
        split = split_summary(e.docstring)
        if split is None or e.name in seen_names:
            continue
        summary, rest = split
        words = rest.split()
        if len(words) < spec.min_words or len(summary.split()) < 3:
            continue
        rest = " ".join(words[: spec.max_words])
        if rest in seen_texts:
            continue
        seen_names.add(e.name)
        seen_texts.add(rest)
        key = summary.lower()
        summary_count[key] = summary_count.get(key, 0) + 1
        pairs.append((e.name, summary, rest))
    # a summary shared by several entries ("Return self==value.") has no single right answer
    pairs = [p for p in pairs if summary_count[p[1].lower()] == 1]
    pairs.sort(key=lambda p: _stable_hash(p[0], spec.seed))
    pairs = sorted(pairs[: spec.max_docs], key=lambda p: p[0])
    docs = [Document(id=name, title=name, text=rest) for name, _, rest in pairs]
    queries = {f"q:{name}": summary for name, summary, _ in pairs}
    by_hash = sorted(pairs, key=lambda p: _stable_hash("split:" + p[0], spec.seed))
    test_names = {p[0] for p in by_hash[: spec.test_queries]}
    qrels: dict[str, Qrels] = {"train": {}, "test": {}}
    for name, _, _ in pairs:
        qrels["test" if name in test_names else "train"][f"q:{name}"] = {name: 1}
    return docs, queries, qrels


def write_quickstart_collection(out: Path, spec: CorpusSpec | None = None) -> dict:
    spec = spec or CorpusSpec()
    docs, queries, qrels = build_collection(all_entries(), spec)
    write_collection(out, docs, queries, qrels)
    meta = {
        "python": sys.version.split()[0],
        "documents": len(docs),
        "train_queries": len(qrels["train"]),
        "test_queries": len(qrels["test"]),
        "spec": asdict(spec),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
