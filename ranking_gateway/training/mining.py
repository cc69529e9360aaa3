"""Candidate retrieval for negative mining and held-out evaluation.

Runs the gateway's own first stage (`core.first_stage`): the `SentenceEncoder` the build embeds
the corpus with, searched by exact inner product (what a flat build serves), BM25 with the
served tokenisation, or their reciprocal rank fusion. The reranker is thus trained on the
mistakes it will see when served, and offline evaluation measures what is served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ranking_gateway.core import first_stage
from ranking_gateway.core.config import RETRIEVAL_MODES
from ranking_gateway.core.corpus import Document
from ranking_gateway.core.lexical import STEMMER, LexicalIndex

log = logging.getLogger(__name__)

MINERS = RETRIEVAL_MODES
Candidates = dict[str, list[tuple[str, float]]]  # query id -> [(doc id, retrieval score)] best first


def embed(
    docs: Sequence[Document],
    queries: Sequence[str],
    *,
    encoder_path: str | Path | None = None,
    doc_max_length: int = 256,
    query_max_length: int = 64,
    progress: bool = True,
    bf16: bool = False,
    embeddings_cache: Path | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, query) embeddings, L2-normalised, with the bi-encoder at `encoder_path` (default
    the one `build` serves). `embeddings_cache` (an .npy path) skips re-embedding the corpus on
    repeated runs; it is only trusted when its row count matches the corpus."""
    from transformers import AutoTokenizer

    from ranking_build.models import SentenceEncoder, default_encoder_path, encode_texts

    encoder_path = encoder_path or default_encoder_path()
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
    q_emb = encode_texts(
        encoder, tokenizer, list(queries), max_length=query_max_length, bf16=bf16, device=device,
        progress="embed queries" if progress and len(queries) > 1000 else None,
    )
    return doc_emb, q_emb


def mine_candidates(
    miner: str,
    docs: Sequence[Document],
    queries: dict[str, str],
    k: int,
    *,
    encoder_path: str | Path | None = None,
    doc_max_length: int = 256,
    bf16: bool = False,
    embeddings_cache: Path | None = None,
    device: str = "cpu",
    bm25_stemmer: str | None = STEMMER,
) -> Candidates:
    """Each query's top-k documents by the first stage `miner` (dense, bm25 or hybrid); BM25
    stems with `bm25_stemmer` (default: what `build` indexes with, so mined negatives match
    the served first stage)."""
    if miner not in MINERS:
        raise ValueError(f"unknown miner {miner!r}; choose from {MINERS}")
    log.info("mining top-%d %s candidates for %d queries over %d documents", k, miner, len(queries), len(docs))
    qids = list(queries)
    texts = [queries[q] for q in qids]
    dense = q_emb = lexical = None
    if miner != "bm25":
        doc_emb, q_emb = embed(
            docs, texts, encoder_path=encoder_path, doc_max_length=doc_max_length, bf16=bf16,
            embeddings_cache=embeddings_cache, device=device,
        )
        dense = first_stage.flat_index(doc_emb)
    if miner != "dense":
        lexical = LexicalIndex.build([d.full_text for d in docs], stemmer=bm25_stemmer)
    hits = first_stage.search_batch(
        miner, k, dense=dense, query_embeddings=q_emb, lexical=lexical, query_texts=texts  # type: ignore[arg-type]
    )
    return {qid: [(docs[int(r)].id, float(s)) for r, s in zip(*h)] for qid, h in zip(qids, hits)}
