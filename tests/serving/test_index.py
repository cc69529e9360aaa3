"""The loaded index (real FAISS, real bm25s): what the build wrote, searched by the shared first stage."""

import numpy as np
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.serving.index import DocumentIndex
from tests.conftest import CORPUS


def test_loads_bm25_when_the_build_made_one(artifacts: ArtifactPaths, legacy_artifacts: ArtifactPaths) -> None:
    index = DocumentIndex(artifacts)
    assert index.lexical is not None and len(index.lexical) == len(index) == 30
    rows, _ = index.lexical_search("arborio rice", 5)
    assert index.documents[rows[0]].id == "cooking-1"
    legacy = DocumentIndex(legacy_artifacts)  # older artifacts: dense only
    assert legacy.lexical is None and len(legacy) == 30
    with pytest.raises(ValueError):
        legacy.lexical_search("arborio", 5)


def test_rows_are_the_corpus_order_and_dense_search_is_exact(artifacts: ArtifactPaths) -> None:
    index = DocumentIndex(artifacts)
    assert index.documents == read_corpus(CORPUS)  # row i = document i of the corpus, as built
    query = np.asarray(index.embeddings[7] + 0.5 * index.embeddings[12], dtype=np.float32)
    rows, scores = index.search(query, 5)
    exact = np.asarray(index.embeddings, dtype=np.float64) @ query
    assert rows.tolist() == np.argsort(-exact)[:5].tolist() and rows[0] == 7
    np.testing.assert_allclose(scores, exact[rows], atol=1e-5)
