"""Lexical (BM25) search over the corpus with bm25s: build and save at build time, load and
search one query at a time when serving.

BM25 finds exact-term matches (identifiers, rare words, numbers) that a small dense encoder
blurs; fused with dense retrieval it raised Recall@100 on BEIR SciFact from 0.925 to 0.955.
Tokenisation is `bm25s.tokenize(texts, stopwords="en", stemmer=<Snowball english>)`
(lowercased, English stopwords dropped, Snowball-stemmed so "eruptions" meets "erupted") for the
build, the gateway and negative mining alike (`core.first_stage`), so the served index and the
negatives the reranker was trained on see the same terms. Stemming raised BM25's NDCG@10 from
0.662 to 0.686 (Recall@100 0.876 to 0.913) on SciFact test and from 0.336 to 0.365 (0.704 to
0.735) on Cranfield (`eval-offline --bm25-stemmer english|none`, bench/results/first_stage/).
The stemmer an index was built with is recorded in the manifest (`LexicalEntry.stemmer`) and
must be passed to `load`: artifacts built before it (no record) are served unstemmed.

No gateway imports: training and offline evaluation can reuse this module.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

STOPWORDS = "en"
# What new builds, negative mining and offline evaluation stem with; None: no stemming
STEMMER: str | None = "english"

_stemmers = threading.local()  # a PyStemmer object is not thread-safe: one per thread and language


def _stemmer(name: str | None) -> Stemmer.Stemmer | None:
    if name is None:
        return None
    cache: dict[str, Stemmer.Stemmer] = _stemmers.__dict__.setdefault("by_name", {})
    if name not in cache:
        cache[name] = Stemmer.Stemmer(name)
    return cache[name]


def check_stemmer(name: str | None) -> str | None:
    """`name` when PyStemmer has that algorithm (or None); ValueError (one line) otherwise."""
    if name is not None and name not in Stemmer.algorithms():
        raise ValueError(f"unknown stemmer {name!r}; choose from none, {', '.join(Stemmer.algorithms())}")
    return name


def tokenize_ids(texts: Sequence[str], stemmer: str | None = STEMMER) -> bm25s.tokenization.Tokenized:
    """The tokens BM25 indexes and queries with, in bm25s's id form (shared by build and search)."""
    return bm25s.tokenize(list(texts), stopwords=STOPWORDS, stemmer=_stemmer(stemmer), show_progress=False)


class LexicalIndex:
    """A BM25 index whose row i is document i, the same rows as the FAISS index."""

    def __init__(self, retriever: bm25s.BM25, stemmer: str | None) -> None:
        self.retriever = retriever
        self.stemmer = check_stemmer(stemmer)  # queries are tokenised as the documents were
        self.num_docs = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, texts: Sequence[str], stemmer: str | None = STEMMER) -> "LexicalIndex":
        check_stemmer(stemmer)
        retriever = bm25s.BM25()
        retriever.index(tokenize_ids(texts, stemmer), show_progress=False)
        return cls(retriever, stemmer)

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, *, stemmer: str | None) -> "LexicalIndex":
        """The index saved in `directory`; `stemmer` is the one it was built with (the manifest's
        `LexicalEntry.stemmer`; None for builds that recorded none), which its queries then use."""
        if not (directory / "params.index.json").is_file():
            raise FileNotFoundError(f"no BM25 index in {directory}")
        return cls(bm25s.BM25.load(str(directory), show_progress=False), stemmer)

    def __len__(self) -> int:
        return self.num_docs

    @property
    def vocabulary(self) -> int:
        return len(self.retriever.vocab_dict)

    def search_batch(self, queries: Sequence[str], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query, the top-n rows (int64) and BM25 scores (float32), best first, ties by row (the
        same query always gets the same list); only documents sharing a term with the query
        (score > 0), so a query of stopwords or unknown words gets nothing.

        CPU-bound (a sparse column sum over each query's terms): callers on an event loop run it
        in a worker thread.
        """
        n = min(n, self.num_docs)
        if n <= 0 or not queries:
            return [(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)) for _ in queries]
        rows, scores = self.retriever.retrieve(tokenize_ids(queries, self.stemmer), k=n, show_progress=False, n_threads=0)
        out = []
        for r, s in zip(np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float32)):
            r, s = r[s > 0], s[s > 0]
            order = np.lexsort((r, -s))
            out.append((r[order], s[order]))
        return out

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`search_batch` of one query (the gateway's)."""
        return self.search_batch([query], n)[0]
