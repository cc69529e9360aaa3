"""The loaded index (real FAISS, real bm25s), its first-stage modes and their fusion."""

import numpy as np
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.serving.index import DocumentIndex, fuse, resolve_retrieval


def test_loads_bm25_when_the_build_made_one(artifacts: ArtifactPaths, legacy_artifacts: ArtifactPaths) -> None:
    index = DocumentIndex(artifacts)
    assert index.lexical is not None and len(index.lexical) == len(index) == 30
    rows, _ = index.lexical_search("arborio rice", 5)
    assert index.documents[rows[0]].id == "cooking-1"
    legacy = DocumentIndex(legacy_artifacts)  # older artifacts: dense only
    assert legacy.lexical is None and len(legacy) == 30
    with pytest.raises(ValueError):
        legacy.lexical_search("arborio", 5)


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


def test_fuse_keeps_dense_order_on_ties_and_cuts_to_n() -> None:
    dense = (np.array([5, 6, 7]), np.array([0.9, 0.8, 0.7], dtype=np.float32))
    lexical = (np.array([9, 7]), np.array([12.0, 3.0], dtype=np.float32))
    rows, scores = fuse(dense, lexical, 3, 60)
    assert rows.tolist() == [7, 5, 9]  # 7 is in both lists
    np.testing.assert_allclose(scores, [1 / 63 + 1 / 62, 1 / 61, 1 / 61])
    rows, _ = fuse(dense, (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)), 10, 60)
    assert rows.tolist() == [5, 6, 7]  # no lexical match: dense order
