"""The shared first stage against independent computations: exact integer inner products for
dense, hand-computed reciprocal ranks for the fusion."""

import faiss
import numpy as np
import pytest

from ranking_gateway.core.first_stage import dense_search_batch, flat_index, fuse, resolve_retrieval, search_batch
from ranking_gateway.core.lexical import LexicalIndex


def exact_scores(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    return queries.astype(np.int64) @ docs.astype(np.int64).T  # integer vectors: no rounding, exact ties


@pytest.mark.parametrize("n_queries", [3, 40])  # FAISS's per-query path and its BLAS path (>= 20 queries)
def test_dense_search_is_exact_inner_product_with_ties_by_row(n_queries: int) -> None:
    rng = np.random.default_rng(0)
    docs = rng.integers(-3, 4, size=(60, 8)).astype(np.float32)
    docs = np.concatenate([docs, docs[:20]])  # duplicates: exact ties, which FAISS orders by descending id
    queries = rng.integers(-3, 4, size=(n_queries, 8)).astype(np.float32)
    hits = dense_search_batch(flat_index(docs), queries, 15)
    for (rows, scores), exact in zip(hits, exact_scores(queries, docs), strict=True):
        assert rows.dtype == np.int64 and scores.tolist() == exact[rows].tolist()  # each score is the row's
        assert scores.tolist() == sorted(exact.tolist(), reverse=True)[:15]  # the best 15 scores...
        assert list(zip(rows.tolist(), scores.tolist())) == sorted(zip(rows.tolist(), scores.tolist()),
                                                                   key=lambda rs: (-rs[1], rs[0]))  # ...ties by row
        # which of the documents tied at the 15th score make the cut is FAISS's choice


def test_dense_search_caps_k_and_drops_what_an_approximate_index_did_not_fill() -> None:
    rng = np.random.default_rng(1)
    docs = rng.standard_normal((200, 8)).astype(np.float32)
    rows, _ = dense_search_batch(flat_index(docs[:5]), docs[5], 12)[0]
    assert rows.tolist() == np.argsort(-(docs[:5] @ docs[5])).tolist()  # all five, no padding
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(docs)
    ivf.add(docs)
    ivf.nprobe = 1  # one list of eight: fewer than k candidates, FAISS pads with -1
    rows, scores = dense_search_batch(ivf, docs[:1], 150)[0]
    assert 0 < len(rows) < 150 and (rows >= 0).all() and (np.diff(scores) <= 0).all()


def test_fuse_keeps_dense_order_on_ties_and_cuts_to_n() -> None:
    dense = (np.array([5, 6, 7]), np.array([0.9, 0.8, 0.7], dtype=np.float32))
    lexical = (np.array([9, 7]), np.array([12.0, 3.0], dtype=np.float32))
    rows, scores = fuse(dense, lexical, 3, 60)
    assert rows.tolist() == [7, 5, 9]  # 7 is in both lists
    np.testing.assert_allclose(scores, [1 / 63 + 1 / 62, 1 / 61, 1 / 61])
    rows, _ = fuse(dense, (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)), 10, 60)
    assert rows.tolist() == [5, 6, 7]  # no lexical match: dense order


def test_hybrid_batch_is_rrf_of_the_dense_and_bm25_lists() -> None:
    texts = ["statins lower cholesterol", "vitamin d and bone fractures", "statins and muscle pain", "sleep and memory"]
    embeddings = np.array([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]], dtype=np.float32)
    queries = np.array([[1, 0], [0, 1]], dtype=np.float32)
    kwargs = dict(dense=flat_index(embeddings), query_embeddings=queries, lexical=LexicalIndex.build(texts),
                  query_texts=["statins pain", "memory"])
    # dense: [0, 1, 3, 2] and [2, 3, 1, 0]; BM25: [2, 0] (both terms beat one) and [3]
    assert [r.tolist() for r, _ in search_batch("dense", 4, **kwargs)] == [[0, 1, 3, 2], [2, 3, 1, 0]]
    assert [r.tolist() for r, _ in search_batch("bm25", 4, **kwargs)] == [[2, 0], [3]]
    (rows0, scores0), (rows1, scores1) = search_batch("hybrid", 3, **kwargs)
    assert rows0.tolist() == [0, 2, 1] and rows1.tolist() == [3, 2, 1]
    np.testing.assert_allclose(scores0, [1 / 61 + 1 / 62, 1 / 61, 1 / 62])  # each list cut to k first
    np.testing.assert_allclose(scores1, [1 / 62 + 1 / 61, 1 / 61, 1 / 63])
    with pytest.raises(ValueError, match="BM25"):
        search_batch("hybrid", 3, **{**kwargs, "lexical": None})


@pytest.mark.parametrize(
    ("requested", "has_lexical", "expected"),
    [(None, True, "hybrid"), (None, False, "dense"), ("dense", False, "dense"), ("bm25", True, "bm25"),
     ("hybrid", True, "hybrid")],
)
def test_resolve_retrieval(requested: str | None, has_lexical: bool, expected: str) -> None:
    assert resolve_retrieval(requested, has_lexical) == expected


@pytest.mark.parametrize(("requested", "has_lexical"), [("hybrid", False), ("bm25", False), ("sparse", True)])
def test_resolve_retrieval_rejects(requested: str, has_lexical: bool) -> None:
    with pytest.raises(ValueError) as info:
        resolve_retrieval(requested, has_lexical)
    assert "\n" not in str(info.value)
