"""Candidate retrieval for negative mining and held-out evaluation.

Uses the project's own dense retriever (the same `SentenceEncoder` the build embeds the corpus
with, exact FAISS inner product), so the reranker is trained on the mistakes it will see when
served. BM25 (bm25s) and a reciprocal-rank-fused hybrid are options for a lexical view.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking_build.corpus import Document

log = logging.getLogger(__name__)

MINERS = ("dense", "bm25", "hybrid")
Candidates = dict[str, list[tuple[str, float]]]  # query id -> [(doc id, retrieval score)] best first


def dense_candidates(
    docs: Sequence[Document],
    queries: dict[str, str],
    k: int,
    *,
    encoder_path: str | Path,
    doc_max_length: int = 256,
    query_max_length: int = 64,
    progress: bool = True,
    bf16: bool = False,
    embeddings_cache: Path | None = None,
) -> Candidates:
    """Exact inner-product search over L2-normalised embeddings (what the served index does).

    `embeddings_cache` (an .npy path) skips re-embedding the corpus on repeated runs; it is only
    trusted when its row count matches the corpus.
    """
    import faiss
    from transformers import AutoTokenizer

    from ranking_gateway.models import SentenceEncoder, encode_texts

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    encoder = SentenceEncoder(encoder_path)
    doc_emb = None
    if embeddings_cache is not None and Path(embeddings_cache).is_file():
        doc_emb = np.load(embeddings_cache)
        if doc_emb.shape[0] != len(docs):
            doc_emb = None
    if doc_emb is None:
        doc_emb = encode_texts(
            encoder, tokenizer, [d.full_text for d in docs], max_length=doc_max_length,
            progress="embed corpus" if progress else None, bf16=bf16,
        )
        if embeddings_cache is not None:
            Path(embeddings_cache).parent.mkdir(parents=True, exist_ok=True)
            np.save(embeddings_cache, doc_emb)
    qids = list(queries)
    q_emb = encode_texts(encoder, tokenizer, [queries[q] for q in qids], max_length=query_max_length, bf16=bf16)
    index = faiss.IndexFlatIP(doc_emb.shape[1])
    index.add(doc_emb)
    scores, rows = index.search(q_emb, min(k, len(docs)))
    return {
        qid: [(docs[r].id, float(s)) for r, s in zip(rows[i], scores[i]) if r >= 0]
        for i, qid in enumerate(qids)
    }


def bm25_candidates(docs: Sequence[Document], queries: dict[str, str], k: int) -> Candidates:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([d.full_text for d in docs], stopwords="en", show_progress=False), show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", show_progress=False)
    rows, scores = retriever.retrieve(tokens, k=min(k, len(docs)), show_progress=False, n_threads=1)
    out: Candidates = {}
    for i, qid in enumerate(qids):
        out[qid] = [(docs[int(r)].id, float(s)) for r, s in zip(rows[i], scores[i]) if s > 0]
    return out


def rrf_fuse(runs: Sequence[Candidates], k: int, rrf_k: int = 60) -> Candidates:
    """Reciprocal rank fusion: robust to the incomparable score scales of BM25 and cosine."""
    out: Candidates = {}
    for qid in runs[0]:
        fused: dict[str, float] = {}
        for run in runs:
            for rank, (did, _) in enumerate(run.get(qid, [])):
                fused[did] = fused.get(did, 0.0) + 1.0 / (rrf_k + rank + 1)
        out[qid] = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)[:k]
    return out


def mine_candidates(
    miner: str,
    docs: Sequence[Document],
    queries: dict[str, str],
    k: int,
    *,
    encoder_path: str | Path,
    doc_max_length: int = 256,
    bf16: bool = False,
    embeddings_cache: Path | None = None,
) -> Candidates:
    if miner not in MINERS:
        raise ValueError(f"unknown miner {miner!r}; choose from {MINERS}")
    log.info("mining top-%d %s candidates for %d queries over %d documents", k, miner, len(queries), len(docs))
    runs: list[Candidates] = []
    if miner in ("dense", "hybrid"):
        runs.append(
            dense_candidates(
                docs, queries, k, encoder_path=encoder_path, doc_max_length=doc_max_length,
                bf16=bf16, embeddings_cache=embeddings_cache,
            )
        )
    if miner in ("bm25", "hybrid"):
        runs.append(bm25_candidates(docs, queries, k))
    return runs[0] if len(runs) == 1 else rrf_fuse(runs, k)


def candidate_ids(cands: Candidates) -> dict[str, list[str]]:
    return {q: [d for d, _ in c] for q, c in cands.items()}
