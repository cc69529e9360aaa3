"""Negative mining: the exact dense search, BM25 and their fusion agree with the serving code."""

from __future__ import annotations

import faiss
import numpy as np

from ranking_gateway.core.corpus import Document
from ranking_gateway.core.fusion import rrf
from ranking_gateway.core.lexical import LexicalIndex
from ranking_gateway.training.mining import bm25_candidates, exact_top_k, rrf_fuse


def test_exact_top_k_matches_a_faiss_flat_index() -> None:
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((300, 24)).astype(np.float32)
    queries = rng.standard_normal((41, 24)).astype(np.float32)
    scores, rows = exact_top_k(queries, docs, 12, block=8)  # several blocks, the last one partial
    index = faiss.IndexFlatIP(24)
    index.add(docs)
    f_scores, f_rows = index.search(queries, 12)
    assert (rows == f_rows).all() and np.allclose(scores, f_scores, atol=1e-4)
    scores, rows = exact_top_k(queries[:2], docs[:5], 12)  # k larger than the corpus
    assert rows.shape == (2, 5) and (np.diff(scores, axis=1) <= 0).all()


def test_bm25_candidates_are_what_the_served_lexical_index_returns() -> None:
    docs = [Document(f"d{i}", "", t) for i, t in enumerate([
        "statins lower cholesterol", "vitamin d and bone fractures", "statins and muscle pain", "sleep and memory",
    ])]
    cands = bm25_candidates(docs, {"q": "statins pain"}, 10)
    rows, scores = LexicalIndex.build([d.full_text for d in docs]).search("statins pain", 10)
    assert [d for d, _ in cands["q"]] == [docs[r].id for r in rows] == ["d2", "d0"]
    assert np.allclose([s for _, s in cands["q"]], scores)


def test_rrf_fuse_is_the_gateway_fusion_per_query() -> None:
    dense = {"q": [("a", 0.9), ("b", 0.8), ("c", 0.1)]}
    lexical = {"q": [("c", 7.0), ("a", 3.0)]}
    fused = rrf_fuse([dense, lexical], k=2)
    assert fused == {"q": rrf([["a", "b", "c"], ["c", "a"]], limit=2)}
    assert [d for d, _ in fused["q"]] == ["a", "c"]
