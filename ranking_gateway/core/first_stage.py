"""The first stage (dense, BM25, their reciprocal rank fusion) as thin functions over arrays.

One implementation for the gateway (one query at a time), negative mining and offline
evaluation (batches of queries) and the benches: the reranker is trained on, and evaluated
with, the candidates the gateway serves. Every list is `Hits`, rows and scores best first, ties
by row, so the same query always gets the same list (the cache and the miners rely on it).

No gateway imports: training and offline evaluation reuse this module.
"""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from ranking_gateway.core.config import RETRIEVAL_MODES, RetrievalMode
from ranking_gateway.core.fusion import RRF_K, rrf
from ranking_gateway.core.lexical import LexicalIndex

Hits = tuple[np.ndarray, np.ndarray]  # one query's rows (int64) and scores, best first


def resolve_retrieval(requested: str | None, has_lexical: bool) -> RetrievalMode:
    """The first stage to run: `requested`, or hybrid where a BM25 index exists, else dense.
    ValueError (a one-line message) for an unknown mode or a BM25 mode without a BM25 index."""
    if requested is None:
        return "hybrid" if has_lexical else "dense"
    if requested not in RETRIEVAL_MODES:
        raise ValueError(f"unknown retrieval mode {requested!r}; choose from {', '.join(RETRIEVAL_MODES)}")
    if requested != "dense" and not has_lexical:
        raise ValueError(
            f"retrieval {requested!r} needs a BM25 index, and these artifacts have none "
            "(built before hybrid retrieval): rebuild them, or use dense"
        )
    return requested  # type: ignore[return-value]


def flat_index(embeddings: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner product over `embeddings` (row i = document i): what a `flat` build serves."""
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def dense_search_batch(index: faiss.Index, queries: np.ndarray, k: int) -> list[Hits]:
    """Top-k inner products of each query row. FAISS orders ties by descending id; they are
    re-ordered by row here, like BM25's, and rows an approximate index could not fill are dropped."""
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.d)
    k = min(k, index.ntotal)
    if k <= 0:
        return [(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)) for _ in queries]
    scores, rows = index.search(queries, k)
    out = []
    for r, s in zip(rows, scores):
        r, s = r[r >= 0], s[r >= 0]
        order = np.lexsort((r, -s))
        out.append((r[order], s[order]))
    return out


def dense_search(index: faiss.Index, query: np.ndarray, k: int) -> Hits:
    """`dense_search_batch` of one query vector (the gateway's)."""
    return dense_search_batch(index, query, k)[0]


def fuse(dense: Hits, lexical: Hits, n: int, rrf_k: int = RRF_K) -> Hits:
    """Reciprocal rank fusion of one query's dense and BM25 hits, top n, scored by RRF. Dense
    first, so RRF ties keep dense's order."""
    fused = rrf([dense[0].tolist(), lexical[0].tolist()], k=rrf_k, limit=n)
    return np.array([r for r, _ in fused], dtype=np.int64), np.array([s for _, s in fused], dtype=np.float64)


def search_batch(
    mode: RetrievalMode,
    k: int,
    *,
    dense: faiss.Index | None = None,
    query_embeddings: np.ndarray | None = None,
    lexical: LexicalIndex | None = None,
    query_texts: Sequence[str] = (),
    rrf_k: int = RRF_K,
) -> list[Hits]:
    """The first stage `mode` for a batch of queries: dense needs `dense` and the query
    embeddings, bm25 `lexical` and the query texts, hybrid both (each list top k, fused to k)."""
    if mode not in RETRIEVAL_MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}; choose from {', '.join(RETRIEVAL_MODES)}")
    if mode != "bm25" and (dense is None or query_embeddings is None):
        raise ValueError(f"retrieval {mode!r} needs a dense index and query embeddings")
    if mode != "dense" and lexical is None:
        raise ValueError(f"retrieval {mode!r} needs a BM25 index")
    by_vector = dense_search_batch(dense, query_embeddings, k) if mode != "bm25" else []  # type: ignore[arg-type]
    by_terms = lexical.search_batch(query_texts, k) if mode != "dense" else []  # type: ignore[union-attr]
    if mode == "hybrid":
        return [fuse(d, t, k, rrf_k) for d, t in zip(by_vector, by_terms, strict=True)]
    return by_vector or by_terms
