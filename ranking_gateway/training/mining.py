"""Candidate retrieval for negative mining and held-out evaluation.

Uses the project's own dense retriever (the same `SentenceEncoder` the build embeds the corpus
with, exact inner product: what the served flat index computes), so the reranker is trained on
the mistakes it will see when served. BM25 (bm25s) and a reciprocal-rank-fused hybrid are
options for a lexical view. The exact search is a blocked matrix product in numpy rather than
FAISS, so training also runs where FAISS is not installed (a rented GPU box).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.fusion import RRF_K, rrf

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
    device: str = "cpu",
) -> Candidates:
    """Exact inner-product search over L2-normalised embeddings (what the served index does).

    `embeddings_cache` (an .npy path) skips re-embedding the corpus on repeated runs; it is only
    trusted when its row count matches the corpus.
    """
    from transformers import AutoTokenizer

    from ranking_build.models import SentenceEncoder, encode_texts

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
            progress="embed corpus" if progress else None, bf16=bf16, device=device,
        )
        if embeddings_cache is not None:
            Path(embeddings_cache).parent.mkdir(parents=True, exist_ok=True)
            np.save(embeddings_cache, doc_emb)
    qids = list(queries)
    q_emb = encode_texts(
        encoder, tokenizer, [queries[q] for q in qids], max_length=query_max_length, bf16=bf16, device=device,
        progress="embed queries" if progress and len(qids) > 1000 else None,
    )
    scores, rows = exact_top_k(q_emb, doc_emb, min(k, len(docs)))
    return {
        qid: [(docs[r].id, float(s)) for r, s in zip(rows[i], scores[i])]
        for i, qid in enumerate(qids)
    }


def exact_top_k(queries: np.ndarray, docs: np.ndarray, k: int, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products per query row, best first (ties by row), in blocks of queries."""
    k = min(k, docs.shape[0])
    all_scores = np.empty((queries.shape[0], k), dtype=np.float32)
    all_rows = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        sims = queries[start : start + block] @ docs.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < docs.shape[0] else np.tile(np.arange(k), (len(sims), 1))
        part_scores = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        all_rows[start : start + block] = np.take_along_axis(part, order, axis=1)
        all_scores[start : start + block] = np.take_along_axis(part_scores, order, axis=1)
    return all_scores, all_rows


def bm25_candidates(docs: Sequence[Document], queries: dict[str, str], k: int) -> Candidates:
    """BM25 over the corpus, the same index and tokenisation the gateway serves (`lexical`)."""
    from ranking_gateway.core.lexical import LexicalIndex

    index = LexicalIndex.build([d.full_text for d in docs])
    qids = list(queries)
    hits = index.search_batch([queries[q] for q in qids], k)
    return {qid: [(docs[int(r)].id, float(s)) for r, s in zip(*hits[i])] for i, qid in enumerate(qids)}


def rrf_fuse(runs: Sequence[Candidates], k: int, rrf_k: int = RRF_K) -> Candidates:
    """Reciprocal rank fusion per query (`fusion.rrf`, as the gateway's hybrid first stage)."""
    return {qid: rrf([[d for d, _ in run.get(qid, [])] for run in runs], k=rrf_k, limit=k) for qid in runs[0]}


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
    device: str = "cpu",
) -> Candidates:
    if miner not in MINERS:
        raise ValueError(f"unknown miner {miner!r}; choose from {MINERS}")
    log.info("mining top-%d %s candidates for %d queries over %d documents", k, miner, len(queries), len(docs))
    runs: list[Candidates] = []
    if miner in ("dense", "hybrid"):
        runs.append(
            dense_candidates(
                docs, queries, k, encoder_path=encoder_path, doc_max_length=doc_max_length,
                bf16=bf16, embeddings_cache=embeddings_cache, device=device,
            )
        )
    if miner in ("bm25", "hybrid"):
        runs.append(bm25_candidates(docs, queries, k))
    return runs[0] if len(runs) == 1 else rrf_fuse(runs, k)


def candidate_ids(cands: Candidates) -> dict[str, list[str]]:
    return {q: [d for d, _ in c] for q, c in cands.items()}
