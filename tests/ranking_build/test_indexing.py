import numpy as np
import pytest

from ranking_build.indexing import build_faiss_index


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_index_returns_inner_product_neighbours(index_type: str) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_faiss_index(vectors, index_type)
    queries = vectors[:20] + 0.05 * rng.normal(size=(20, 32)).astype(np.float32)
    scores, rows = index.search(queries, 5)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    assert (rows[:, 0] == np.arange(20)).all()
    recall = np.mean([len(set(r) & set(e)) / 5 for r, e in zip(rows, exact)])
    assert recall >= (1.0 if index_type == "flat" else 0.9)
    np.testing.assert_allclose(scores[:, 0], np.sum(queries * vectors[:20], axis=1), rtol=1e-4)
