"""The loaded index (real FAISS, real bm25s): what the build wrote, searched by the shared first stage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ranking_gateway.core.artifacts import ArtifactPaths
from ranking_gateway.core.corpus import read_corpus
from ranking_gateway.core.lexical import LexicalIndex
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


def test_bm25_is_queried_with_the_stemmer_the_manifest_records(artifacts: ArtifactPaths, tmp_path: Path) -> None:
    index = DocumentIndex(artifacts)  # the session build: stemmed, as new builds are
    assert index.lexical is not None and index.lexical.stemmer == "english"
    assert [index.documents[r].id for r in index.lexical_search("eruptions", 5)[0]] == ["geology-1"]
    # an older build: an unstemmed index and a manifest without `stemmer`, served unstemmed as before
    root = tmp_path / "older"
    shutil.copytree(artifacts.root, root, ignore=shutil.ignore_patterns("model_repository", "onnx", "bm25"))
    older = ArtifactPaths(root)
    LexicalIndex.build([d.full_text for d in read_corpus(older.documents)], stemmer=None).save(older.bm25_index)
    manifest = json.loads(older.manifest.read_text())
    assert manifest["bm25"].pop("stemmer") == "english"
    older.manifest.write_text(json.dumps(manifest))
    legacy = DocumentIndex(older)
    assert legacy.lexical is not None and legacy.lexical.stemmer is None
    assert len(legacy.lexical_search("eruptions", 5)[0]) == 0
    assert [legacy.documents[r].id for r in legacy.lexical_search("volcanoes erupt", 5)[0]] == ["geology-1"]


def test_rows_are_the_corpus_order_and_dense_search_is_exact(artifacts: ArtifactPaths) -> None:
    index = DocumentIndex(artifacts)
    assert index.documents == read_corpus(CORPUS)  # row i = document i of the corpus, as built
    query = np.asarray(index.embeddings[7] + 0.5 * index.embeddings[12], dtype=np.float32)
    rows, scores = index.search(query, 5)
    exact = np.asarray(index.embeddings, dtype=np.float64) @ query
    assert rows.tolist() == np.argsort(-exact)[:5].tolist() and rows[0] == 7
    np.testing.assert_allclose(scores, exact[rows], atol=1e-5)
